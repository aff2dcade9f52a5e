"""The laptop's network facts: its address on the home LAN (what devices are told to use as
broker) and its default gateway (where a device in setup mode answers)."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path

from station.errors import StationError

log = logging.getLogger(__name__)


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


# -- the default gateway: where a device in setup mode answers ------------------------------

# PROTOCOL.md section 1 / the seed: a device in setup mode is its network's gateway.
SEED_DEVICE_HOST = "192.168.4.1"

_IPV4 = re.compile(r"^(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}$")


def _ipv4(text: str) -> str | None:
    text = text.strip()
    if not _IPV4.match(text) or text in ("0.0.0.0", "255.255.255.255"):
        return None
    return text


def parse_proc_net_route(text: str) -> str | None:
    """Linux /proc/net/route: the default route's gateway (little-endian hex)."""
    best: tuple[int, str] | None = None
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            dest, gw, flags, metric = (
                int(cols[1], 16),
                int(cols[2], 16),
                int(cols[3], 16),
                int(cols[6]),
            )
        except ValueError:
            continue
        up, gateway = flags & 0x1, flags & 0x2
        if dest != 0 or not up or not gateway or gw == 0:
            continue
        addr = socket.inet_ntoa(struct.pack("<I", gw & 0xFFFFFFFF))
        if best is None or metric < best[0]:
            best = (metric, addr)
    return _ipv4(best[1]) if best else None


def parse_ip_route(text: str) -> str | None:
    """`ip route show default` (or `ip -4 route`): "default via 192.168.4.1 dev wlan0 ..."."""
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["default"] and "via" in words:
            i = words.index("via")
            if i + 1 < len(words) and (addr := _ipv4(words[i + 1])):
                return addr
    return None


def parse_macos_route(text: str) -> str | None:
    """macOS `route -n get default`: "    gateway: 192.168.4.1"."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "gateway" and (addr := _ipv4(value)):
            return addr
    return None


def parse_windows_route_print(text: str) -> str | None:
    """Windows `route print -4`: the row "0.0.0.0  0.0.0.0  <gateway>  <interface>  <metric>"
    with the lowest metric ("On-link" rows have no gateway)."""
    best: tuple[int, str] | None = None
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 5 or cols[0] != "0.0.0.0" or cols[1] != "0.0.0.0":
            continue
        addr = _ipv4(cols[2])
        if addr is None:
            continue
        try:
            metric = int(cols[4])
        except ValueError:
            metric = 1 << 30
        if best is None or metric < best[0]:
            best = (metric, addr)
    return best[1] if best else None


def parse_ipconfig(text: str) -> str | None:
    """Windows `ipconfig`: the first "Default Gateway . . . : a.b.c.d" with an IPv4 address.
    An adapter with an IPv6 gateway lists the IPv4 one on the next, indented line."""
    labels = ("gateway", "passerelle", "puerta de enlace")  # en/de, fr, es
    lines = text.splitlines()
    for i, line in enumerate(lines):
        label, sep, value = line.partition(":")
        if not sep or not any(word in label.lower() for word in labels):
            continue
        candidates = [value] + [ln for ln in lines[i + 1 : i + 3] if ln[:1].isspace()]
        for candidate in candidates:
            if addr := _ipv4(candidate.split("%")[0]):
                return addr
    return None


def _run(argv: list[str], timeout: float = 3.0) -> str | None:
    """A command's stdout, or None if it is missing, fails or hangs (never raises)."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def default_gateway(system: str | None = None) -> str | None:
    """The IPv4 gateway of this computer's default route, asked of the OS; None if there is
    none or the OS cannot tell. Never raises."""
    system = system or sys.platform
    try:
        if system.startswith("linux"):
            try:
                text = Path("/proc/net/route").read_text(encoding="ascii", errors="replace")
            except OSError:
                text = ""
            found = parse_proc_net_route(text)
            if found is None and (out := _run(["ip", "-4", "route", "show", "default"])):
                found = parse_ip_route(out)
            return found
        if system == "darwin":
            out = _run(["route", "-n", "get", "default"])
            return parse_macos_route(out) if out else None
        if system == "win32":
            out = _run(["route", "print", "-4"])
            found = parse_windows_route_print(out) if out else None
            if found is None and (out := _run(["ipconfig"])):
                found = parse_ipconfig(out)
            return found
    except Exception:  # a lookup must never take the station down
        log.debug("gateway lookup failed", exc_info=True)
    return None
