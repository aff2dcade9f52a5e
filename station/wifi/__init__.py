"""WiFi control behind one small interface (base.WifiBackend); one module per backend.

Importing this package imports no backend (pywifi in particular is imported only when its
backend is created). Typical use:

    from station.wifi import Excursion, Journal, recover, select_backend

    sel = select_backend(settings.wifi_backend)          # None: pick for this OS
    backend = sel.create(interface=..., confirm=ask_user, device_address=...)
    recover(backend, Journal(state_dir / "wifi-journal.json"))   # at startup
    with Excursion(backend, journal, cancel=cancel_event) as trip:
        link = trip.connect(ssid, "12345678", probe=http_json_probe())

In the station every caller goes through the adapter's owner (station.wifi.radio): use
`Radio(backend).wifi`, never the raw backend from two threads.
"""

from station.wifi.base import (
    TEMP_PREFIX,
    Availability,
    DeviceAddress,
    HomeNetwork,
    Link,
    Network,
    Probe,
    ScanResult,
    WifiBackend,
)
from station.wifi.errors import (
    Cancelled,
    DeviceUnreachable,
    JoinError,
    JoinTimeout,
    NetworkNotFound,
    NoAddress,
    ReturnHomeError,
    WifiError,
    WifiUnavailable,
    WrongPassphrase,
)
from station.wifi.guard import Excursion, RecoveryReport, recover
from station.wifi.journal import Journal
from station.wifi.probe import http_json_probe, tcp_probe
from station.wifi.radio import OwnedBackend, Radio, Radios, RadioState
from station.wifi.registry import backend_class, register
from station.wifi.select import Selection, select_backend

__all__ = [
    "TEMP_PREFIX",
    "Availability",
    "Cancelled",
    "DeviceAddress",
    "DeviceUnreachable",
    "Excursion",
    "HomeNetwork",
    "JoinError",
    "JoinTimeout",
    "Journal",
    "Link",
    "Network",
    "NetworkNotFound",
    "NoAddress",
    "OwnedBackend",
    "Probe",
    "Radio",
    "RadioState",
    "Radios",
    "RecoveryReport",
    "ReturnHomeError",
    "ScanResult",
    "Selection",
    "WifiBackend",
    "WifiError",
    "WifiUnavailable",
    "WrongPassphrase",
    "backend_class",
    "http_json_probe",
    "recover",
    "register",
    "select_backend",
    "tcp_probe",
]
