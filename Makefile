# Two entry points (see README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

lint: $(STAMP)
	$(BIN)/ruff check station broker tests benchmarks main.py
	$(BIN)/ruff format --check station broker tests benchmarks main.py

bench: $(STAMP)
	$(BIN)/python benchmarks/broker_load.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
