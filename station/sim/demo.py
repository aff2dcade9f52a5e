"""A whole simulated site: home WiFi, N sensors running the real firmware, a laptop.

Used by `station provision --demo N`, the GUI's demo mode and the end-to-end tests.
Devices are told the seed's broker address (192.168.29.91:1883); the home network
in the air maps it to the station's broker on loopback, so every byte stays on
127.0.0.1 while the flow is exactly the real one.

`STATION_DEMO_TIMING=fast` runs the demo's firmware with FAST_TIMING (every wait
shrunk): for tests and the screenshot script that start the station through its
real entry point and cannot pass timings in. Anything else, or unset, is DEMO_TIMING.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from station.sim import firmware
from station.sim.air import Air
from station.sim.fleet import Fleet, fleet_chip_ids
from station.sim.wifi import SimulatedBackend

log = logging.getLogger(__name__)

HOME_SSID = "DemoHomeWiFi"
HOME_PASSWORD = "demo-home-pass"
BROKER_HOST = "192.168.29.91"  # the seed's example address
BROKER_PORT = 1883

# Firmware timings for a demo that feels like real hardware but does not make a
# person wait through minute-long retries.
DEMO_TIMING: dict[str, int] = {"assoc_ms": 1500, "restart_delay_ms": 1000}

# Every waiting time shrunk, so a test of the whole flow takes seconds.
FAST_TIMING: dict[str, int] = {
    "assoc_ms": 100,
    "trial_s": 3,
    "fallback_s": 20,
    "retry_s": 5,
    "probe_ms": 1000,
    "restart_delay_ms": 200,
    "interval_s": 1,
    "backoff_min_ms": 200,
    "backoff_max_ms": 1000,
    "unproven_retry_ms": 500,
    "button_window_ms": 0,
}


TIMING_ENV = "STATION_DEMO_TIMING"


def default_timing() -> dict[str, int]:
    """The demo's firmware timings: DEMO_TIMING, or FAST_TIMING if the env asks."""
    return dict(FAST_TIMING if os.environ.get(TIMING_ENV) == "fast" else DEMO_TIMING)


class DemoWorld:
    def __init__(
        self,
        devices: int,
        station_broker_port: int,
        *,
        root: str | Path | None = None,
        switch_delay: float = 0.0,
        timing: Mapping[str, int] | None = None,
        seed: str = "demo",
        reach: Iterable[str] = (),
    ) -> None:
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="station-demo-"))
        self.count = devices
        self.station_broker_port = station_broker_port
        self.switch_delay = switch_delay
        self.timing = default_timing() if timing is None else dict(timing)
        self.chip_ids = fleet_chip_ids(devices, seed)
        self.air = Air(self.root / "air")
        self.fleet: Fleet | None = None
        # More "host:port" the home network reaches, as they are (a broker of the
        # home's own, e.g. a Mosquitto on loopback standing in for one on the LAN).
        self.reach = list(reach)

    @property
    def home_ssid(self) -> str:
        return HOME_SSID

    @property
    def home_password(self) -> str:
        return HOME_PASSWORD

    @property
    def broker_address(self) -> tuple[str, int]:
        """What devices are told (the laptop's address on the home LAN)."""
        return BROKER_HOST, BROKER_PORT

    def start(self, wait: float = 30.0) -> None:
        build_dir = self.root / "firmware"
        firmware.build(build_dir, board="host")
        target = f"127.0.0.1:{self.station_broker_port}"
        broker = f"{BROKER_HOST}:{BROKER_PORT}"
        # The broker is on the laptop: devices reach it only while the laptop is home.
        reach = {broker: target, **{a: a for a in self.reach}}
        self.air.add_home_network(HOME_SSID, HOME_PASSWORD, reach=reach, laptop=[broker])
        self.air.place_laptop(HOME_SSID)
        self.fleet = Fleet(self.air, build_dir, self.chip_ids, timing=self.timing)
        self.fleet.start()
        for chip in self.chip_ids:
            self.air.wait_for_setup_ap(chip, wait)
        log.info("demo: %d simulated devices in setup mode (air %s)", self.count, self.air.root)

    def wifi(self) -> SimulatedBackend:
        return SimulatedBackend(self.air, switch_delay=self.switch_delay)

    def stop(self) -> None:
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DemoWorld:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
