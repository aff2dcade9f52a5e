"""`station firmware probe` (station/sim/board_probe.py): the script that measures a
real ESP32 over mpremote, run here on the MicroPython unix port against the same fake
ESP32 modules as test_build.py (with an RTC memory of the ESP32's 2048 bytes), so the
script that will meet the first real board has run, and its figures parse."""

from __future__ import annotations

import subprocess

import pytest
from test_build import FAKE_HARDWARE

from station.errors import StationError
from station.sim import board_probe, firmware
from station.sim.device import find_micropython

RTC_LIMIT = """
class RTC:
    def memory(self, data=None):
        if data is None:
            return _rtc[0]
        if len(data) > 2048:  # ports/esp32: MICROPY_HW_RTC_USER_MEM_MAX
            raise ValueError("buffer too long")
        _rtc[0] = bytes(data)
"""


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    out = root / "out"
    firmware.build(out, board="host")
    fakes = root / "fakes"
    fakes.mkdir()
    for name, text in FAKE_HARDWARE.items():
        if name == "machine.py":
            start = text.index("class RTC:")
            end = text.index("def unique_id")
            text = text[:start] + RTC_LIMIT.strip() + "\n" + text[end:]
        (fakes / name).write_text(text)
    return {"MICROPYPATH": f".frozen:{fakes}:{out}"}


def probe(board, *args: str) -> dict[str, str]:
    proc = subprocess.run(
        [find_micropython(), "-X", "heapsize=96k", "-c", board_probe.script(*args)],
        env=board,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return board_probe.parse(proc.stdout)


def test_a_trial_that_joins_reports_the_figures_and_the_status_codes(board):
    found = probe(board, "MyHomeWiFi", "mypassword")
    assert int(found["heap_free"]) > 20_000  # every firmware module in, at 96 KB
    assert int(found["start_ms"]) >= 0
    assert found["chip_id"] == "A4CF12EF5678"
    assert found["rtc_bytes"] == "2048"
    assert found["trial"].split()[0] == "connected"
    assert found["trial_ip"] == "192.168.29.57"
    assert found["status_sequence"].split()[-1].startswith("1010:connected@")
    text = board_probe.report(found)
    assert "trial: connected after" in text and "RTC memory: holds 2048 B" in text


def test_a_wrong_password_shows_the_raw_reason_the_board_gave(board):
    found = probe(board, "MyHomeWiFi", "not-the-password")
    assert found["trial"].split()[0] == "wrong_password"
    steps = found["status_sequence"].split()
    assert steps[0].startswith("1001:connecting@") and steps[-1].startswith("15:wrong_password@")


def test_without_a_network_only_the_board_figures(board):
    found = probe(board)
    assert "trial" not in found and int(found["heap_free_end"]) > 0


def test_a_probe_that_did_not_finish_is_a_clear_error():
    with pytest.raises(StationError, match="did not finish on the board"):
        board_probe.parse("PROBE start_ms 12\nTraceback (most recent call last):\nMemoryError")


def test_the_command_without_a_board_is_one_clear_line(tmp_path):
    import os
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "station", "firmware", "probe", "--port", str(tmp_path / "tty")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "STATION_DATA_DIR": str(tmp_path / "data")},
    )
    assert proc.returncode == 2
    assert "mpremote could not run the probe on" in proc.stderr
    assert "Traceback" not in proc.stderr
