"""Ready-made probes for `connect(probe=...)`: "does the device answer at this address?"

Prefer `http_json_probe`: right after a switch the old network's gateway can linger for a
moment, and a home router answers TCP on port 80 too; only the device answers its setup
API with its chip id.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable

from station.wifi.base import DeviceAddress, Probe


def tcp_probe(port: int, timeout: float = 1.0) -> Probe:
    """True when something accepts a TCP connection at the device address."""

    def probe(addr: DeviceAddress) -> bool:
        with socket.create_connection((addr.host, addr.port or port), timeout=timeout):
            return True

    return probe


def http_json_probe(
    path: str = "/api/info",
    *,
    port: int = 80,  # PROTOCOL.md section 1; a DeviceAddress with its own port wins
    timeout: float = 2.0,
    check: Callable[[object], bool] = lambda body: isinstance(body, dict) and "chip_id" in body,
) -> Probe:
    """True when GET `path` answers 200 with JSON that `check` accepts."""

    def probe(addr: DeviceAddress) -> bool:
        conn = http.client.HTTPConnection(addr.host, addr.port or port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read(4096)
            if resp.status != 200:
                return False
            return check(json.loads(body.decode("utf-8")))
        except ValueError:
            return False
        finally:
            conn.close()

    return probe
