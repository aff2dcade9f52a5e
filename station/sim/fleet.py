"""A fleet of simulated devices with distinct chip ids, supervised from one thread.

The supervisor restarts devices that reboot; the processes themselves are forked by
station.sim.device's process-wide spawner thread, so a device lives as long as this
process (or until the fleet stops it), whichever thread started or rebooted it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from station.sim.air import Air
from station.sim.device import SimDevice, check_chip_id

log = logging.getLogger(__name__)

ESPRESSIF_OUI = "A4CF12"  # a real Espressif prefix, so ids look like the labels on modules


def fleet_chip_ids(count: int, seed: str = "sim") -> list[str]:
    """`count` chip ids, stable for a seed (a restarted fleet finds its flash again),
    distinct in their last 6 digits (those name the setup AP)."""
    ids: list[str] = []
    suffixes: set[str] = set()
    i = 0
    while len(ids) < count:
        suffix = hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()[:6].upper()
        i += 1
        if suffix not in suffixes:
            suffixes.add(suffix)
            ids.append(ESPRESSIF_OUI + suffix)
    return ids


class Fleet:
    def __init__(
        self,
        air: Air,
        firmware_dir: str | os.PathLike[str],
        chip_ids: Iterable[str],
        **device_options: Any,
    ) -> None:
        self.air = air
        self.firmware_dir = Path(firmware_dir)
        self.options = device_options
        self.devices: list[SimDevice] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for chip in chip_ids:
            self._new(chip, {})

    def _new(self, chip_id: str, options: dict[str, Any]) -> SimDevice:
        chip = check_chip_id(chip_id)
        if any(d.chip_id[-6:] == chip[-6:] for d in self.devices):
            raise ValueError(
                f"{chip}: chip ids must differ in their last 6 digits (they name the setup APs)"
            )
        device = SimDevice(self.air, chip, self.firmware_dir, **{**self.options, **options})
        self.devices = [*self.devices, device]  # a new list: the supervisor iterates the old one
        return device

    def add(self, chip_id: str, **options: Any) -> SimDevice:
        """One more device (options override the fleet's); started if the fleet runs."""
        device = self._new(chip_id, options)
        if self._thread is not None:
            device.start()
        return device

    def __enter__(self) -> Fleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __getitem__(self, i: int) -> SimDevice:
        return self.devices[i]

    def device(self, chip_id: str) -> SimDevice:
        return next(d for d in self.devices if d.chip_id == chip_id.upper())

    def start(self) -> None:
        for d in self.devices:
            d.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._supervise, name="sim-fleet", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.05):
            for d in self.devices:
                d.poll()  # restarts a device that rebooted

    def stop(self) -> None:
        """Stop every device: all are asked at once, then each is waited for."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for d in self.devices:
            d.terminate()
        for d in self.devices:
            d.stop()
