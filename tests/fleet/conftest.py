"""A demo station with provisioned devices (real firmware on the unix port, the real
embedded broker) and a real Mosquitto with dynamic security, for the fleet tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mosquitto import Mosquitto

from station.provisioning import BulkQueue
from station.runtime import StationRuntime
from station.settings import Settings
from station.sim.demo import FAST_TIMING

ADMIN = ("admin", "admin-secret")


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[StationRuntime]:
    """A demo station with 2 devices provisioned to its embedded broker, online; a trial
    firmware has 20 s to reach its broker before it rolls back."""
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    rt = StationRuntime.start(
        Settings(), demo_devices=2, demo_timing={**FAST_TIMING, "ota_confirm_s": 20}
    )
    try:
        home = rt.registry.homes()[0]
        password = rt.secrets.home_password(home.id)
        assert password is not None
        queue = BulkQueue(rt.provisioning_station())
        queue.add(queue.scan(), home)
        assert queue.run(home, password).ok
        yield rt
    finally:
        rt.stop()


@pytest.fixture
def mosq(tmp_path) -> Iterator[Mosquitto]:
    """The customer's permanent broker: Mosquitto 2.0 with its dynamic-security plugin."""
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN) as m:
        yield m
