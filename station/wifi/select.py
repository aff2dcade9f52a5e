"""Pick the WiFi backend for this computer, and say why in words an installer understands.

Order of preference per OS (first that is available wins; "manual" always is):
- Linux:   networkmanager (desktops), pywifi (plain wpa_supplicant), manual
- Windows: netsh, pywifi, manual
- macOS:   macos, manual
The user may name a backend instead ("--wifi pywifi"); then it is used if it can work,
or a clear error says why not. Nothing falls back silently.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from station.wifi import registry
from station.wifi.base import Availability, WifiBackend
from station.wifi.errors import WifiError, WifiUnavailable

if TYPE_CHECKING:
    from station.wifi.manual import Confirm, GatewayLookup

log = logging.getLogger("station.wifi.select")

PREFERENCE: dict[str, tuple[str, ...]] = {
    "linux": ("networkmanager", "pywifi", "manual"),
    "win32": ("netsh", "pywifi", "manual"),
    "darwin": ("macos", "manual"),
}


class BackendOptions(TypedDict, total=False):
    """Everything the station may hand a backend's constructor. Each backend declares the
    ones it takes as typed keyword parameters; `Selection.create` passes it only those."""

    interface: str | None  # the adapter (wlan0, "Wi-Fi", en0); None = the first one
    confirm: Confirm | None  # manual: asks the person to switch networks
    gateway_lookup: GatewayLookup | None  # manual: where the device answers
    home_passphrase: Callable[[str], str | None] | None  # macOS: the home WiFi's password
    ctrl_dir: str | None  # pywifi: wpa_supplicant's control sockets


@dataclass
class Selection:
    name: str
    cls: type[WifiBackend]
    reason: str  # why this one, and why not the ones before it
    considered: list[tuple[str, Availability]] = field(default_factory=list)

    def create(self, **options: Unpack[BackendOptions]) -> WifiBackend:
        """Instantiate with the options this backend's constructor declares (the station
        passes one set; each backend takes its own)."""
        return self.cls.with_options(options)


def _system(system: str | None) -> str:
    s = system or sys.platform
    return "linux" if s.startswith("linux") else s


def _check(
    name: str, system: str, options: dict[str, Any]
) -> tuple[type[WifiBackend], Availability]:
    try:
        cls = registry.backend_class(name)
    except ImportError as exc:
        return WifiBackend, Availability(False, f"cannot be loaded ({exc})")
    try:
        return cls, cls.availability(system, **options)
    except WifiError as exc:
        return cls, Availability(False, str(exc))


def select_backend(
    preferred: str | None = None,
    *,
    system: str | None = None,
    options: dict[str, Any] | None = None,
) -> Selection:
    """The backend to use. `options` go to the availability checks (interface=, ctrl_dir=)."""
    system = _system(system)
    options = dict(options or {})
    if preferred:
        cls, av = _check(preferred, system, options)  # unknown name → WifiError listing names
        if not av.ok:
            raise WifiUnavailable(f"The WiFi backend '{preferred}' cannot work here: {av.reason}.")
        return Selection(
            preferred, cls, f"Using '{preferred}' as chosen: {av.reason}.", [(preferred, av)]
        )
    considered: list[tuple[str, Availability]] = []
    for name in PREFERENCE.get(system, ("manual",)):
        cls, av = _check(name, system, options)
        considered.append((name, av))
        if av.ok:
            skipped = "; ".join(f"not {n}: {a.reason}" for n, a in considered[:-1])
            reason = f"Using '{name}': {av.reason}." + (f" ({skipped}.)" if skipped else "")
            log.info("WiFi backend: %s", reason)
            return Selection(name, cls, reason, considered)
    raise WifiUnavailable("No WiFi backend can work on this computer.")  # manual always can
