"""The laptop's address on its home LAN: what devices are told to use as broker."""

from __future__ import annotations

import socket

from station.errors import StationError


def lan_address() -> str:
    """The source address the OS would use for the default route.

    Connecting a UDP socket sends nothing; it only asks the routing table. The
    target is TEST-NET-1 (RFC 5737), which no real host uses.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError as exc:
            raise StationError(
                "cannot tell this computer's address on the home network (no network "
                "route?). Set broker.advertise_host in Settings."
            ) from exc
    if addr.startswith("127.") or addr == "0.0.0.0":
        raise StationError(
            "this computer has no home-network address; connect to the home "
            "WiFi or set broker.advertise_host in Settings"
        )
    return addr
