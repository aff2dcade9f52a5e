"""Linux bits the plain-wpa_supplicant (pywifi) backend needs beyond wpa_supplicant itself:
the gateway from the kernel's route table, DHCP, and wpa_supplicant's text escaping."""

from __future__ import annotations

import logging
import shutil
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

from station.wifi import _run
from station.wifi.base import Deadline
from station.wifi.errors import NoAddress

log = logging.getLogger("station.wifi.linux")

PROC_ROUTE = "/proc/net/route"
RTF_UP, RTF_GATEWAY = 0x1, 0x2


def default_gateway(iface: str, route_path: str | Path = PROC_ROUTE) -> str | None:
    """The gateway of the default route through `iface` (lowest metric), from /proc/net/route."""
    try:
        lines = Path(route_path).read_text().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        f = line.split()
        if len(f) < 8 or f[0] != iface or f[1] != "00000000":
            continue
        flags = int(f[3], 16)
        if not (flags & RTF_UP and flags & RTF_GATEWAY):
            continue
        gw = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
        metric = int(f[6])
        if best is None or metric < best[0]:
            best = (metric, gw)
    return best[1] if best else None


# A DHCP step: make sure `iface` has an address and a gateway other than `stale` (the one
# of the network we just left). Raises NoAddress.
Dhcp = Callable[[str, Deadline, "str | None"], None]


class SystemDhcp:
    """wpa_supplicant only associates; it runs no DHCP. Many systems run a DHCP daemon that
    notices the new association by itself (dhcpcd on Raspberry Pi OS, systemd-networkd,
    ifupdown hooks), so first wait `grace` seconds for a fresh default route. If none comes,
    run one of the usual one-shot clients that is installed, else explain what is missing.
    """

    CLIENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("dhcpcd", ("dhcpcd", "-1", "-4", "{iface}")),  # --oneshot --ipv4only
        ("dhclient", ("dhclient", "-1", "-4", "{iface}")),  # try once
        ("udhcpc", ("udhcpc", "-n", "-q", "-i", "{iface}")),  # quit after lease / on failure
    )

    def __init__(
        self, *, grace: float = 3.0, route_path: str | Path = PROC_ROUTE, poll: float = 0.25
    ):
        self.grace = grace
        self.route_path = route_path
        self.poll = poll

    def _fresh(self, iface: str, stale: str | None) -> bool:
        gw = default_gateway(iface, self.route_path)
        return gw is not None and gw != stale

    def __call__(self, iface: str, deadline: Deadline, stale: str | None) -> None:
        until = time.monotonic() + min(self.grace, deadline.remaining())
        while time.monotonic() < until:
            if self._fresh(iface, stale):
                return
            deadline.sleep(self.poll)
        if self._fresh(iface, stale):
            return
        for name, argv in self.CLIENTS:
            if shutil.which(name) is None:
                continue
            cmd = [a.format(iface=iface) for a in argv]
            log.info("no DHCP daemon answered on %s; running %s", iface, " ".join(cmd))
            r = _run.run(cmd, timeout=max(1.0, deadline.remaining()), cancel=deadline.cancel)
            if r.ok and self._fresh(iface, stale):
                return
            raise NoAddress(
                f"Joined the network but '{name}' got no address on {iface}: "
                f"{_run.first_error_line(r.output)}"
            )
        raise NoAddress(
            f"Joined the network but this computer got no IP address on {iface}: no DHCP "
            "daemon handled it and none of dhcpcd, dhclient or udhcpc is installed. Install "
            "one (e.g. 'sudo apt install dhcpcd'), or use the NetworkManager backend."
        )


_ESCAPES = {"\\": b"\\", '"': b'"', "e": b"\x1b", "n": b"\n", "r": b"\r", "t": b"\t"}


def wpa_unescape(text: str) -> str:
    """Undo wpa_supplicant's printf_encode() (used for SSIDs in SCAN_RESULTS, STATUS,
    LIST_NETWORKS): non-printable and non-ASCII bytes come as \\xNN."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and _is_hex(text[i + 2 : i + 4]):
                out.append(int(text[i + 2 : i + 4], 16))
                i += 4
                continue
            if nxt in _ESCAPES:
                out += _ESCAPES[nxt]
                i += 2
                continue
        out += ch.encode("utf-8")
        i += 1
    return out.decode("utf-8", errors="replace")


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)
