"""The one small interface every WiFi backend implements, and the data it speaks.

A backend knows how to read the current network, scan, join a network with a temporary
profile, tell the address of the joined network's gateway (where a device in setup mode
serves its API), go back to the home network, and delete the temporary profiles it made.

The waiting that is the same everywhere (deadline, cancel token, "does the device answer at
the gateway yet?") lives here in `WifiBackend.connect`, so each backend only says how to
join (`_join`) and how to read the gateway (`_gateway`).

Use `connect` through `station.wifi.guard.Excursion`: it journals the temporary profiles and
guarantees the return home; a bare `connect` cleans up nothing.
"""

from __future__ import annotations

import inspect
import logging
import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from station.wifi.errors import (
    Cancelled,
    DeviceUnreachable,
    InvalidNetworkSettings,
    NoAddress,
)

log = logging.getLogger("station.wifi")

# Temporary profiles we create carry this prefix, so a sweep after a crash can find
# exactly ours and nothing of the user's.
TEMP_PREFIX = "esp32-station-tmp-"


def temp_name() -> str:
    """A fresh temporary profile name (tests patch this to get a known one)."""
    return TEMP_PREFIX + secrets.token_hex(4)


@dataclass(frozen=True)
class ScanResult:
    ssid: str
    bssid: str  # lower-case aa:bb:cc:dd:ee:ff, "" when the OS does not tell
    signal_dbm: int  # approximate when the OS reports a percentage (NetworkManager, netsh)
    security: str  # "open", "WEP", "WPA", "WPA2", "WPA3", "WPA2/WPA3", "802.1X", ...
    frequency_mhz: int | None = None

    @property
    def secure(self) -> bool:
        return self.security != "open"

    @property
    def signal_percent(self) -> int:
        return percent_from_dbm(self.signal_dbm)


@dataclass(frozen=True)
class Network:
    """The network the adapter is on now. `ssid` is None when the OS hides it (macOS 14+)."""

    ssid: str | None
    bssid: str | None = None
    profile: str | None = None  # backend's handle for it: NM uuid, wpa network id, profile name
    temporary: bool = False  # one of our temporary profiles (left over from a crashed run)


@dataclass(frozen=True)
class HomeNetwork:
    """Where to go back to. JSON-serialisable (it is written to the journal); never a secret."""

    ssid: str | None
    profile: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"ssid": self.ssid, "profile": self.profile, "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HomeNetwork:
        return cls(
            ssid=data.get("ssid"),
            profile=data.get("profile"),
            details={str(k): str(v) for k, v in (data.get("details") or {}).items()},
        )

    def describe(self) -> str:
        return f"'{self.ssid}'" if self.ssid else "your home WiFi network"


@dataclass(frozen=True)
class DeviceAddress:
    """Where the device answers on the joined network: the gateway address. `port` is None
    for the protocol's default; only a backend that knows better (simulated air) sets it."""

    host: str
    port: int | None = None


@dataclass(frozen=True)
class Link:
    """The result of a successful connect."""

    ssid: str
    device: DeviceAddress
    bssid: str | None = None
    profile: str | None = None  # the temporary profile this join created, if any
    seconds: float = 0.0


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str  # one human sentence, e.g. "NetworkManager is running and manages wlan0"


# A probe answers "does the device answer at this address?" It must return quickly (a
# second or two); exceptions count as "not yet".
Probe = Callable[[DeviceAddress], bool]
# Called with a temporary profile's handle *before* the profile is created, so a crash at
# any moment leaves a journal entry naming it.
ProfileCallback = Callable[[str], None]


class Deadline:
    """A timeout and a cancel token checked together."""

    def __init__(self, timeout: float, cancel: threading.Event | None = None):
        self.timeout = timeout
        self.start = time.monotonic()
        self.end = self.start + timeout
        self.cancel = cancel

    def restart(self) -> None:
        """Start the timeout again from now (after a wait on a person, not on the radio)."""
        self.start = time.monotonic()
        self.end = self.start + self.timeout

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("Cancelled.")

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once (with Cancelled) when the cancel token is set."""
        seconds = min(seconds, self.remaining())
        if self.cancel is not None:
            if self.cancel.wait(seconds):
                raise Cancelled("Cancelled.")
        elif seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True)
class JoinRequest:
    ssid: str
    passphrase: str
    bssid: str | None = None


_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_BSSID = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


def validate(ssid: str, passphrase: str, bssid: str | None) -> str | None:
    """Check what an access point could accept at all; returns the normalised BSSID."""
    n = len(ssid.encode("utf-8"))
    if not 1 <= n <= 32:
        raise InvalidNetworkSettings(
            f"The network name '{ssid}' is {n} bytes long; WiFi names are 1 to 32 bytes."
        )
    if passphrase:
        size = len(passphrase.encode("utf-8"))
        if not (8 <= size <= 63 or _HEX64.fullmatch(passphrase)):
            raise InvalidNetworkSettings(
                f"The WiFi password for '{ssid}' has {len(passphrase)} characters; "
                "WPA passwords have 8 to 63 characters (or exactly 64 hex digits)."
            )
    if bssid is None:
        return None
    if not _BSSID.fullmatch(bssid):
        raise InvalidNetworkSettings(
            f"'{bssid}' is not an access point address (aa:bb:cc:dd:ee:ff)."
        )
    return bssid.lower()


def percent_from_dbm(dbm: int) -> int:
    return max(0, min(100, 2 * (dbm + 100)))


def dbm_from_percent(pct: int) -> int:
    return pct // 2 - 100


class WifiBackend(ABC):
    """One way of controlling the laptop's WiFi. Not thread-safe: the station serialises
    all radio work through one owner ("one radio, one queue")."""

    name: ClassVar[str]
    can_scan: ClassVar[bool] = True
    can_pin_bssid: ClassVar[bool] = False  # True: connect(bssid=...) joins exactly that AP
    poll_interval: float = 0.25  # FIELD-NOTES: poll every 0.25-0.5 s

    @classmethod
    def with_options(cls, options: Mapping[str, object]) -> Self:
        """An instance given the station's one set of options (station.wifi.select's
        BackendOptions): each backend declares the ones it takes, and gets only those."""
        params = inspect.signature(cls.__init__).parameters
        return cls(**{k: v for k, v in options.items() if k in params})

    @classmethod
    @abstractmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        """Could this backend work here? Cheap, no side effects."""

    @abstractmethod
    def current(self) -> Network | None:
        """The network the adapter is on, or None when it is on none."""

    @abstractmethod
    def scan(self) -> list[ScanResult]:
        """Networks in range, strongest first."""

    def remember_home(self) -> HomeNetwork | None:
        """What to come back to, read before leaving. None: not on any network now."""
        cur = self.current()
        if cur is None:
            return None
        if cur.temporary:
            # Still on a device network from a crashed run (recover() not run yet): that is
            # not home; let the OS pick its usual network when we are done.
            log.warning("the adapter is on a leftover temporary profile, not on home")
            return None
        return HomeNetwork(ssid=cur.ssid, profile=cur.profile)

    def connect(
        self,
        ssid: str,
        passphrase: str,
        *,
        bssid: str | None = None,
        timeout: float = 30.0,
        probe: Probe | None = None,
        cancel: threading.Event | None = None,
        on_profile: ProfileCallback | None = None,
    ) -> Link:
        """Join `ssid` and wait until the device answers at the gateway (per `probe`), or
        raise a JoinError subclass / Cancelled. `passphrase` "" means an open network."""
        bssid = validate(ssid, passphrase, bssid)
        if bssid and not self.can_pin_bssid:
            log.warning("%s cannot pin a BSSID; joining '%s' by name only", self.name, ssid)
        deadline = Deadline(timeout, cancel)
        deadline.check()
        log.info("joining '%s'%s via %s", ssid, f" ({bssid})" if bssid else "", self.name)
        req = JoinRequest(ssid=ssid, passphrase=passphrase, bssid=bssid)
        profile = self._join(req, deadline, on_profile or (lambda _p: None))
        device = self._wait_for_device(ssid, deadline, probe)
        link = Link(
            ssid=ssid, bssid=bssid, device=device, profile=profile, seconds=deadline.elapsed()
        )
        log.info("on '%s' after %.1f s; device address %s", ssid, link.seconds, device.host)
        return link

    @abstractmethod
    def _join(
        self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback
    ) -> str | None:
        """Associate with req.ssid (and get an address); return the temporary profile handle.
        Call on_profile(handle) before creating the profile."""

    @abstractmethod
    def _gateway(self) -> str | None:
        """The IPv4 gateway of the network the adapter is on now, or None if it has none yet."""

    def _device_address(self) -> DeviceAddress | None:
        gw = self._gateway()
        return DeviceAddress(gw) if gw else None

    def _wait_for_device(self, ssid: str, deadline: Deadline, probe: Probe | None) -> DeviceAddress:
        last: DeviceAddress | None = None
        problem = ""
        while True:
            deadline.check()
            addr = self._device_address()
            if addr is not None:
                last = addr
                if probe is None:
                    return addr
                try:
                    if probe(addr):
                        return addr
                    problem = "it did not answer"
                except Exception as exc:  # a probe error means "not yet"; keep the reason
                    problem = f"{type(exc).__name__}: {exc}"
            if deadline.expired:
                break
            deadline.sleep(self.poll_interval)
        if last is None:
            raise NoAddress(
                f"Joined '{ssid}' but this computer got no IP address there within "
                f"{deadline.timeout:.0f} s (DHCP). Move closer to the device and retry.",
                ssid=ssid,
            )
        raise DeviceUnreachable(
            f"Cannot reach device. Make sure you're connected to {ssid} "
            f"(nothing answered at {last.host}: {problem}).",
            ssid=ssid,
        )

    def _wait_for_gateway(self, deadline: Deadline) -> str | None:
        """Poll until the adapter has a gateway (after a join or a return home)."""
        while True:
            gw = self._gateway()
            if gw or deadline.expired:
                return gw
            time.sleep(min(self.poll_interval, deadline.remaining()))

    @abstractmethod
    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        """Put the adapter back on `home` (None: let the OS pick its usual network).
        Never cancellable: the home network always comes back. Raises ReturnHomeError."""

    @abstractmethod
    def remove_profile(self, profile: str) -> None:
        """Delete one temporary profile this backend made. Missing already = fine."""

    def sweep_profiles(self) -> list[str]:
        """Delete every leftover temporary profile of ours (by TEMP_PREFIX); return them."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release sockets and handles."""

    def __enter__(self) -> WifiBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
