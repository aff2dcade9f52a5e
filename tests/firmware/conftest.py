"""Fixtures for running the real firmware (.mpy) on the MicroPython unix port.

Helpers and the MQTT broker live in fw_helpers.py (see its docstring).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fw_helpers import (
    FAST,
    HOME_PASSWORD,
    HOME_SSID,
    SEED_BROKER,
    Api,
    MqttBroker,
    Observer,
    api_for,
    seed_mqtt_body,
)

from station.sim.air import Air
from station.sim.device import SimDevice
from station.sim.fleet import Fleet


@pytest.fixture
def air(tmp_path) -> Air:
    return Air(tmp_path / "air")


@pytest.fixture
def fleet(air, firmware_dir) -> Iterator[Fleet]:
    """An empty supervised fleet (reboots restart the process); `devices` adds to it."""
    f = Fleet(air, firmware_dir, [], timing=FAST)
    f.start()
    yield f
    f.stop()
    for d in f.devices:
        # The firmware never ends on its own except to reboot (3); the fixture and
        # power cuts end it with SIGTERM / SIGKILL. Anything else is a crash.
        unexpected = [c for c in d.exit_codes if c not in (3, -15, -9)]
        assert not unexpected, f"{d.chip_id} exited with {unexpected}:\n{d.log_text()[-3000:]}"
        assert "MemoryError" not in d.log_text(), d.log_text()[-3000:]


@pytest.fixture
def devices(fleet) -> Callable[..., SimDevice]:
    """devices(chip_id, **timing) -> a started SimDevice (96 KB heap, FAST timings)."""

    def make(chip_id: str = "A4CF12EF5678", **timing: int) -> SimDevice:
        return fleet.add(chip_id, timing={**FAST, **timing})

    return make


@pytest.fixture
def device(devices) -> SimDevice:
    return devices()


@pytest.fixture
def api(device) -> Api:
    return api_for(device)


@pytest.fixture
def mqtt_broker() -> Iterator[MqttBroker]:
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    b = MqttBroker()
    b.start()
    yield b
    b.close()


@pytest.fixture
def observer(mqtt_broker) -> Iterator[Observer]:
    o = Observer(mqtt_broker)
    yield o
    o.close()


@pytest.fixture
def home(air, mqtt_broker) -> Air:
    """The seed's home network on the air, reaching the broker at the seed's address."""
    target = f"127.0.0.1:{mqtt_broker.port}"
    air.add_home_network(
        HOME_SSID, HOME_PASSWORD, reach={f"{SEED_BROKER}:1883": target, target: target}
    )
    return air


SEED_WIFI = {"ssid": HOME_SSID, "password": HOME_PASSWORD}


@pytest.fixture
def configured(device, api) -> tuple[Api, dict]:
    """A device in setup mode with a stored config, to check that bad requests leave
    it alone: (api, the stored config)."""
    body = {**seed_mqtt_body(), "username": "esp32_dht11_001", "password": "tok"}
    assert api.post("/api/wifi", SEED_WIFI).json() == {"ok": True}
    assert api.post("/api/mqtt", body).json() == {"ok": True}
    return api, device.config()
