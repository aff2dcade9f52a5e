"""A simulated site (real firmware on the MicroPython unix port, simulated WiFi) and the
station's real broker and registry, for end-to-end provisioning tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from support import FAST

from broker import EmbeddedBroker
from station import control
from station.provisioning import BulkQueue, Station
from station.registry import Registry
from station.settings import BrokerSettings, ProvisioningSettings
from station.sim.demo import DemoWorld
from station.wifi.journal import Journal


@pytest.fixture
def site(tmp_path) -> Iterator[dict]:
    """Registry + broker + a world factory; worlds are stopped at the end."""
    registry = Registry(str(tmp_path / "registry.sqlite3"))
    broker = EmbeddedBroker(
        registry, BrokerSettings(bind_host="127.0.0.1", port=0), flush_interval_s=0.01
    )
    broker.start()
    worlds: list[DemoWorld] = []

    def world(n: int, **kw) -> DemoWorld:
        w = DemoWorld(
            n,
            broker.port,
            root=tmp_path / f"site{len(worlds)}",
            timing=kw.pop("timing", FAST),
            **kw,
        )
        worlds.append(w)
        w.start()
        return w

    def station(w: DemoWorld, **settings) -> Station:
        prov = ProvisioningSettings(
            online_timeout_s=settings.pop("online_timeout_s", 20),
            wifi_connect_timeout_s=10,
            **settings,
        )
        host, port = w.broker_address
        return Station(
            registry, broker, w.wifi(), prov, host, port, Journal(tmp_path / "journal.json")
        )

    yield {
        "registry": registry,
        "broker": broker,
        "world": world,
        "station": station,
        "tmp": tmp_path,
    }
    for w in worlds:
        w.stop()
    broker.stop()
    registry.close()


@pytest.fixture
def running(site, tmp_path, monkeypatch):
    """A provisioned simulated device (real firmware) on a station that announces itself
    as a running one does (station/control.py), for the `station` CLI in a subprocess."""
    data = tmp_path / "data"
    monkeypatch.setenv("STATION_DATA_DIR", str(data))
    world = site["world"](1)
    station = site["station"](world)
    registry, broker = site["registry"], site["broker"]
    home = registry.add_home("Smith", world.home_ssid)
    queue = BulkQueue(station)
    queue.add(queue.scan(), home)
    assert queue.run(home, world.home_password).ok
    path = control.announce(broker, registry.location)
    env = {
        **os.environ,
        "STATION_DATA_DIR": str(data),
        "STATION_CONFIG": str(tmp_path / "settings.json"),
        "HOME": str(tmp_path),
    }
    db = str(tmp_path / "registry.sqlite3")
    yield env, db, registry, broker, world, registry.devices()[0]
    control.withdraw(path)


# --- the station as a user starts it (tests/e2e/test_entry_*.py) ----------------------


@pytest.fixture
def user_env(tmp_path) -> dict[str, str]:
    """A throwaway user: HOME, XDG dirs, data, settings and TMPDIR all under tmp_path, and
    the demo's firmware on FAST timings (STATION_DEMO_TIMING, station/sim/demo.py)."""
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
