"""The firmware checked against the ESP32's MicroPython API as its stubs declare it
(issue 12; station/sim/firmware_types.py): clean as shipped, and a deliberately wrong
ESP32 call fails the check, so a misspelt or removed API fails `make test`."""

from __future__ import annotations

import shutil

import pytest

from station.sim.firmware import FIRMWARE_DIR
from station.sim.firmware_types import check


def test_the_firmware_type_checks_clean_against_the_esp32_stubs():
    result = check()
    assert result.ok, result.output
    assert "Success: no issues found" in result.output


@pytest.mark.parametrize(
    ("wrong", "right", "finding"),
    [
        # a misspelt constant
        ("network.AUTH_WPA2_PSK", "network.AUTH_WPA2_PSX", 'has no attribute "AUTH_WPA2_PSX"'),
        # a method the ESP32's WLAN does not have
        ("self._sta.status()", "self._sta.state()", 'has no attribute "state"'),
        # a wrong argument
        ("machine.unique_id()", "machine.unique_id(1)", "Too many arguments"),
        # a removed module
        ("import dht", "import dht22", "dht22"),
    ],
)
def test_a_wrong_esp32_call_fails_the_check(tmp_path, wrong, right, finding):
    copy = tmp_path / "firmware"
    shutil.copytree(FIRMWARE_DIR, copy)
    board = copy / "board" / "esp32.py"
    text = board.read_text()
    assert wrong in text  # the call this test breaks is still there
    board.write_text(text.replace(wrong, right, 1))
    result = check(copy)
    assert not result.ok
    assert "board/esp32.py" in result.output and finding in result.output, result.output
