"""Fixtures for the simulated air, device launcher, fleet and their CLI (the firmware
build is the session's `firmware_dir`, tests/conftest.py)."""

from __future__ import annotations

import pytest
from support import FAST

from station.sim.air import Air


@pytest.fixture
def air(tmp_path) -> Air:
    return Air(tmp_path / "air")


@pytest.fixture
def fast() -> dict[str, int]:
    return dict(FAST)
