"""Backends by name. Classes are imported only when asked for, so listing names never
imports pywifi (which configures logging and fails on macOS at import).

Adding a backend is one line, e.g. for the simulated air:

    register("simulated", "station.sim.wifi:SimulatedBackend")
"""

from __future__ import annotations

import importlib

from station.wifi.base import WifiBackend
from station.wifi.errors import WifiError

_BACKENDS: dict[str, str | type[WifiBackend]] = {
    "networkmanager": "station.wifi.nm:NetworkManagerBackend",
    "pywifi": "station.wifi.pywifi_backend:PywifiBackend",
    "netsh": "station.wifi.netsh:NetshBackend",
    "macos": "station.wifi.macos:MacOSBackend",
    "manual": "station.wifi.manual:ManualBackend",
    "simulated": "station.sim.wifi:SimulatedBackend",
}


def register(name: str, target: str | type[WifiBackend]) -> None:
    """Add (or replace) a backend: a class, or "package.module:ClassName"."""
    _BACKENDS[name] = target


def names() -> list[str]:
    return list(_BACKENDS)


def backend_class(name: str) -> type[WifiBackend]:
    try:
        target = _BACKENDS[name]
    except KeyError:
        raise WifiError(
            f"Unknown WiFi backend '{name}'. Choose one of: {', '.join(_BACKENDS)}."
        ) from None
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target
