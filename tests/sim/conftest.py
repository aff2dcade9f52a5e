"""Fixtures for the simulated air, device launcher, fleet and their CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.sim import firmware
from station.sim.air import Air

# Fast firmware timings (defaults in firmware/factory.py).
FAST = {"assoc_ms": 100, "button_window_ms": 0, "restart_delay_ms": 200, "interval_s": 1}


@pytest.fixture(scope="session")
def sim_firmware(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim-firmware") / "build"
    firmware.build(out, board="host")
    return out


@pytest.fixture
def air(tmp_path) -> Air:
    return Air(tmp_path / "air")


@pytest.fixture
def fast() -> dict[str, int]:
    return dict(FAST)
