"""Fixtures for the station core: simulated devices running the real firmware (as in
tests/firmware), the embedded broker on a real SQLite registry, and a small fake HTTP
server for answers no real device gives. Everything listens on 127.0.0.1."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "firmware"))
sys.path.insert(0, str(Path(__file__).parent))

from core_helpers import AP_SSID, CHIP, FakeDevice, fake_handler
from fw_helpers import FAST, HOME_PASSWORD, HOME_SSID, SEED_BROKER

from broker import EmbeddedBroker
from station.device_client import DeviceClient
from station.settings import BrokerSettings
from station.sim.air import Air
from station.sim.device import SimDevice
from station.sim.fleet import Fleet


@pytest.fixture
def air(tmp_path) -> Air:
    return Air(tmp_path / "air")


@pytest.fixture
def fleet(air, firmware_dir) -> Iterator[Fleet]:
    f = Fleet(air, firmware_dir, [], timing=FAST)
    f.start()
    yield f
    f.stop()
    for d in f.devices:
        unexpected = [c for c in d.exit_codes if c not in (3, -15, -9)]
        assert not unexpected, f"{d.chip_id} exited with {unexpected}:\n{d.log_text()[-3000:]}"


@pytest.fixture
def device(fleet) -> SimDevice:
    dev = fleet.add(CHIP, timing=FAST)
    dev.wait_for_setup_ap()
    return dev


@pytest.fixture
def client(device) -> Iterator[DeviceClient]:
    """A client as the flow makes one: base URL from the (simulated) WiFi side, AP known."""
    ap = device.wait_for_setup_ap()
    c = DeviceClient(ap.api_url, ap_ssid=ap.ssid, timeout=2.0)
    yield c
    c.close()


@pytest.fixture
def station_broker(registry) -> Iterator[EmbeddedBroker]:
    """The embedded broker on the shared `registry` fixture (a SQLite file), one loop."""
    logging.getLogger("amqtt").setLevel(logging.WARNING)
    b = EmbeddedBroker(
        registry,
        BrokerSettings(bind_host="127.0.0.1", port=0, gc_tuning=False),
        reading_min_interval_s=0,
        flush_interval_s=0.01,
    )
    b.start()
    yield b
    b.stop()


@pytest.fixture
def home(air, station_broker) -> Air:
    """The seed's home network; from it the seed's broker address and the loopback
    address both reach the station's broker."""
    target = f"127.0.0.1:{station_broker.port}"
    air.add_home_network(
        HOME_SSID, HOME_PASSWORD, reach={f"{SEED_BROKER}:1883": target, target: target}
    )
    return air


@pytest.fixture
def fake_device() -> Iterator[FakeDevice]:
    ref: list[FakeDevice] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake_handler(ref))
    server.daemon_threads = True
    fake = FakeDevice(server)
    ref.append(fake)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield fake
    if thread.is_alive():
        fake.close()
    thread.join(5)


@pytest.fixture
def fake_client(fake_device) -> Callable[..., DeviceClient]:
    def make(**kw: Any) -> DeviceClient:
        return DeviceClient(fake_device.url, **{"ap_ssid": AP_SSID, "timeout": 1.0, **kw})

    return make
