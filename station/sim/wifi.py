"""Simulated WiFi backend: the laptop "joins" the setup APs of a `station sim` air folder.

It lets `--demo`, the end-to-end tests and the benchmark run the real provisioning flow on
loopback: joining checks the passphrase against the air, waits `switch_delay` seconds (0 in
tests, about 4 s to model a real switch), and hands back the device's loopback API address
(`aps/<CHIP>.json` "api") as `Link.device`, where a real backend gives the gateway
192.168.4.1.

The laptop's side is persisted in the air folder (`laptop.json`, format in
station/sim/air.py): the network it is on, the home network it last was on, and the
temporary profiles that exist. A crashed station leaves the laptop there, exactly like a
real adapter, so `recover()` at the next start has something real to undo, and tests can
assert that no temporary profile outlives a run.

Modelled as NetworkManager behaves: a join creates a temporary profile first, leaves the
current network at once (on no network while switching), and on failure stays on none;
deleting the active profile disconnects. The home networks' passwords are not checked on
the way back (the OS has them saved). Not modelled: losing a setup AP does not move the
laptop anywhere by itself; `current()` then reports no network, since that AP is gone.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from station.sim.air import Air, Laptop
from station.wifi import base
from station.wifi.base import (
    TEMP_PREFIX,
    Availability,
    Deadline,
    DeviceAddress,
    HomeNetwork,
    JoinRequest,
    Network,
    ProfileCallback,
    ScanResult,
    WifiBackend,
)
from station.wifi.errors import (
    DeviceUnreachable,
    JoinTimeout,
    NetworkNotFound,
    ReturnHomeError,
    WifiUnavailable,
    WrongPassphrase,
)

log = logging.getLogger("station.wifi.simulated")

SETUP_AP_MHZ = 2412  # an ESP32 soft AP starts on channel 1
HOME_MHZ = 2437


def _security(air_security: str) -> str:
    # The air says "WPA2-PSK" as the device announces it; scans say "WPA2".
    return air_security.split("-")[0] or "open"


class SimulatedBackend(WifiBackend):
    name = "simulated"
    can_pin_bssid = True

    def __init__(
        self,
        air: Air | str | os.PathLike[str] | None = None,
        *,
        switch_delay: float = 0.0,
        poll_interval: float = 0.05,
    ):
        if air is None:
            raise WifiUnavailable("The simulated WiFi needs an air folder (station sim --air).")
        self.air = air if isinstance(air, Air) else Air(air)
        self.switch_delay = switch_delay  # seconds per join and per return home
        self.poll_interval = poll_interval
        self._address: DeviceAddress | None = None  # last device address seen on this join

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        # Only with an air folder passed in: a real station must never "join" files by
        # accident, and the air is what --demo / `station sim --air` set up. Any OS works.
        air = options.get("air")
        if air is None:
            return Availability(
                False, "no simulated air folder is configured (it comes with --demo)"
            )
        root = air.root if isinstance(air, Air) else Path(air)
        if not (root / "aps").is_dir():
            return Availability(False, f"{root} is not a simulated air folder (no aps/ in it)")
        return Availability(True, f"the simulated air in {root} is configured")

    # -- reading -------------------------------------------------------------------------

    def current(self) -> Network | None:
        lap = self.air.laptop()
        if lap.ssid is None or not self._on_air(lap.ssid, lap.bssid):
            return None
        temporary = bool(lap.profile and lap.profile.startswith(TEMP_PREFIX))
        return Network(ssid=lap.ssid, bssid=lap.bssid, profile=lap.profile, temporary=temporary)

    def scan(self) -> list[ScanResult]:
        found = [
            ScanResult(n.ssid, n.bssid.lower(), n.rssi, "WPA2" if n.secure else "open", HOME_MHZ)
            for n in self.air.home_networks()
        ]
        found += [
            ScanResult(a.ssid, a.bssid.lower(), a.rssi, _security(a.security), SETUP_AP_MHZ)
            for a in self.air.setup_aps()
        ]
        return sorted(found, key=lambda r: r.signal_dbm, reverse=True)

    def _on_air(self, ssid: str, bssid: str | None) -> bool:
        if self.air.find_setup_ap(ssid=ssid, bssid=bssid):
            return True
        net = self.air.home_network(ssid)
        return net is not None and (bssid is None or net.bssid.lower() == bssid.lower())

    def _device_address(self) -> DeviceAddress | None:
        lap = self.air.laptop()
        if lap.ssid is None:
            return None
        ap = self.air.find_setup_ap(ssid=lap.ssid, bssid=lap.bssid)
        if ap is None:
            if self.air.home_network(lap.ssid) is not None:
                raise DeviceUnreachable(
                    f"'{lap.ssid}' is a home network on the simulated air: no device "
                    "serves its setup API there.",
                    ssid=lap.ssid,
                )
            # The AP went away (the device rebooted): the last address stops answering,
            # so the probe reports the seed's "Cannot reach device" as on real WiFi.
            return self._address
        if ap.api:
            host, _, port = ap.api.rpartition(":")
            self._address = DeviceAddress(host, int(port))
        return self._address  # None while the device announces its AP but no API yet

    def _gateway(self) -> str | None:
        addr = self._device_address()
        return addr.host if addr else None

    # -- changing ------------------------------------------------------------------------

    def _join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> str:
        name = base.temp_name()
        on_profile(name)
        self._address = None
        lap = self.air.laptop()
        profiles = {**lap.profiles, name: {"ssid": req.ssid, "bssid": req.bssid or ""}}
        # The profile exists, and the laptop has left its network, before the join completes.
        self._save(lap, ssid=None, bssid=None, profile=name, profiles=profiles)
        self._switch_wait(deadline, req.ssid)
        bssid = self._associate(req)
        lap = self.air.laptop()
        self._save(lap, ssid=req.ssid, bssid=bssid, switches=lap.switches + 1)
        return name

    def _switch_wait(self, deadline: Deadline, ssid: str) -> None:
        end = time.monotonic() + self.switch_delay
        while (left := end - time.monotonic()) > 0:
            if deadline.expired:
                raise JoinTimeout(
                    f"Joining '{ssid}' did not finish within {deadline.timeout:g} s. "
                    "Move closer to the device and retry.",
                    ssid=ssid,
                )
            deadline.sleep(left)  # wakes at once with Cancelled when the cancel token is set
        deadline.check()

    def _associate(self, req: JoinRequest) -> str:
        """Check the credentials as the AP would; returns the joined BSSID (lower-case)."""
        try:
            return self.air.join_setup_ap(req.ssid, req.passphrase, bssid=req.bssid).bssid.lower()
        except LookupError:
            pass
        except PermissionError:
            raise _wrong(req.ssid) from None
        net = self.air.home_network(req.ssid)
        if net is None or (req.bssid and net.bssid.lower() != req.bssid):
            raise NetworkNotFound(
                f"The network '{req.ssid}' was not found. Make sure the device is powered, "
                "in setup mode and near this computer, then scan again.",
                ssid=req.ssid,
            )
        if net.password != req.passphrase:
            raise _wrong(req.ssid)
        return net.bssid.lower()

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        lap = self.air.laptop()
        ssid = home.ssid if home is not None and home.ssid else lap.usual
        if ssid is None:
            raise ReturnHomeError(
                "No home network is known for the simulated laptop (it was never on one)."
            )
        net = self.air.home_network(ssid)
        if net is None:
            raise ReturnHomeError(
                f"The home network '{ssid}' is not on the simulated air ({self.air.root}); "
                "it was removed or never created."
            )
        if lap.ssid == net.ssid and lap.profile is None:
            return  # already home: nothing to switch
        self._save(lap, ssid=None, bssid=None, profile=None)
        # Never cancellable (the interface promises home comes back), but bounded.
        time.sleep(min(self.switch_delay, timeout))
        if self.switch_delay > timeout:
            raise ReturnHomeError(f"Rejoining '{ssid}' did not finish within {timeout:g} s.")
        lap = self.air.laptop()
        self._save(
            lap,
            ssid=net.ssid,
            bssid=net.bssid.lower(),
            profile=None,
            usual=net.ssid,
            switches=lap.switches + 1,
        )

    def remove_profile(self, profile: str) -> None:
        lap = self.air.laptop()
        if profile in lap.profiles:
            self._drop(lap, [profile])

    def sweep_profiles(self) -> list[str]:
        lap = self.air.laptop()
        ours = [p for p in lap.profiles if p.startswith(TEMP_PREFIX)]
        if ours:
            self._drop(lap, ours)
        return ours

    def _drop(self, lap: Laptop, profiles: list[str]) -> None:
        keep = {k: v for k, v in lap.profiles.items() if k not in profiles}
        if lap.profile in profiles:  # deleting the active profile disconnects, as in NM
            self._save(lap, ssid=None, bssid=None, profile=None, profiles=keep)
        else:
            self._save(lap, profiles=keep)

    def _save(self, lap: Laptop, **changes: Any) -> None:
        self.air.set_laptop(replace(lap, **changes))


# A home network's router on the simulated air stands in as this loopback address: port 9
# (discard) is privileged, so no test process listens there and a probe is refused at
# once. Traffic never leaves 127.0.0.1, and no device answers there, as on a real router.
ROUTER_STAND_IN = DeviceAddress("127.0.0.1", 9)


class AirGatewayLookup:
    """The manual backend's gateway lookup on a simulated site: where the simulated laptop
    is (`laptop.json`, moved by the person with `Air.move_laptop`) says what its gateway
    is, as the OS's routing table does on a real laptop."""

    def __init__(self, air: Air | str | os.PathLike[str]) -> None:
        self.air = air if isinstance(air, Air) else Air(air)

    def __call__(self) -> DeviceAddress | None:
        gw = self.air.laptop_gateway()
        if gw is None or gw[1] is None:
            # A home network's router, or no network: no device API. Never None, which
            # would send the manual backend to the real 192.168.4.1.
            return ROUTER_STAND_IN
        return DeviceAddress(gw[0], gw[1])


def _wrong(ssid: str) -> WrongPassphrase:
    return WrongPassphrase(
        f"The device network '{ssid}' rejected the WiFi password. Check the device's "
        "setup password and try again.",
        ssid=ssid,
    )
