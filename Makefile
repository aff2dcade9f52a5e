# Two entry points (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run demo test lint bench clean

$(STAMP): pyproject.toml firmware/typings.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# MicroPython's ESP32 and stdlib stubs for the firmware's type check: loose .pyi
	# files, so in a folder of their own (station/sim/firmware_types.py).
	rm -rf $(VENV)/mpy-typings
	$(BIN)/python -m pip install --quiet --no-user --target $(VENV)/mpy-typings -r firmware/typings.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Starts the station GUI. On a machine without WiFi control it opens demo mode
# (simulated air + fleet running the real firmware).
run: $(STAMP)
	$(BIN)/station $(ARGS)

# pytest exits 5 when a selection (PYTEST_ARGS) matches no test: report it, do not fail.
test: $(STAMP)
	.ci/os-packages
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc
	$(BIN)/ruff check station broker tests benchmarks main.py
	$(BIN)/mypy
	$(BIN)/python -m station.sim.firmware_types

lint: $(STAMP)
	$(BIN)/ruff check station broker tests benchmarks main.py
	$(BIN)/ruff format --check station broker tests benchmarks main.py

bench: $(STAMP)
	$(BIN)/python benchmarks/broker_load.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
