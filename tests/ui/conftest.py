"""GUI tests: offscreen Qt (pytest-qt's qtbot), and a station runtime in demo mode
(real broker, registry, and simulated devices running the real firmware)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from station.runtime import StationRuntime
from station.settings import Settings
from station.sim.demo import FAST_TIMING


@pytest.fixture
def demo_runtime(tmp_path, monkeypatch) -> Iterator[StationRuntime]:
    """A demo station with 3 simulated devices in setup mode (fast firmware timings)."""
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STATION_CONFIG", str(tmp_path / "settings.json"))
    settings = Settings()
    settings.provisioning.online_timeout_s = 20
    settings.provisioning.wifi_connect_timeout_s = 10
    rt = StationRuntime.start(settings, demo_devices=3, demo_timing=FAST_TIMING)
    yield rt
    rt.stop()


@pytest.fixture
def empty_runtime(tmp_path, monkeypatch) -> Iterator[StationRuntime]:
    """A station with no simulated site: broker on loopback, an empty registry file."""
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STATION_CONFIG", str(tmp_path / "settings.json"))
    settings = Settings()
    settings.broker.bind_host, settings.broker.port = "127.0.0.1", 0
    rt = StationRuntime.start(settings, db=str(tmp_path / "registry.sqlite3"))
    yield rt
    rt.stop()


@pytest.fixture
def user_env(tmp_path) -> dict[str, str]:
    """A throwaway user for the station started through its own entry point: HOME, XDG
    dirs, data, settings and TMPDIR under tmp_path, and the demo's firmware on FAST
    timings (STATION_DEMO_TIMING, station/sim/demo.py). As tests/e2e/conftest.py's."""
    dirs = {
        "HOME": "home",
        "XDG_CONFIG_HOME": "home/.config",
        "XDG_DATA_HOME": "home/.local/share",
        "XDG_CACHE_HOME": "home/.cache",
        "XDG_STATE_HOME": "home/.local/state",
        "STATION_DATA_DIR": "data",
        "TMPDIR": "tmp",
    }
    env = {k: str(tmp_path / v) for k, v in dirs.items()}
    for path in env.values():
        os.makedirs(path, exist_ok=True)
    env["STATION_CONFIG"] = str(tmp_path / "settings.json")
    env["STATION_DEMO_TIMING"] = "fast"
    return env
