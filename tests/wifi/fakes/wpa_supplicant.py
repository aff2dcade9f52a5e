"""A fake wpa_supplicant control interface for tests: an AF_UNIX datagram server bound in a
temporary directory (pywifi's CTRL_IFACE_DIR points there), replying as the real daemon
does (wpa_supplicant 2.x ctrl_iface.c), including its SSID escaping (printf_encode), the
network list flags, and association states that advance one step per STATUS query:

  right passphrase  SCANNING, ASSOCIATING, 4WAY_HANDSHAKE, COMPLETED
  wrong passphrase  SCANNING, ASSOCIATING, 4WAY_HANDSHAKE, DISCONNECTED + [TEMP-DISABLED]
  AP not in range   SCANNING, DISCONNECTED, SCANNING, ... forever

`silent = True` (or a verb in `silent_on`) makes it stop answering, like a hung daemon.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from dataclasses import dataclass, field


def printf_encode(data: bytes) -> str:
    out = []
    for c in data:
        ch = chr(c)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif c == 0x1B:
            out.append("\\e")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif 32 <= c <= 126:
            out.append(ch)
        else:
            out.append(f"\\x{c:02x}")
    return "".join(out)


def parse_string(value: str) -> bytes | None:
    """wpa_config_parse_string: "quoted" (up to the *last* quote) or hex."""
    if value.startswith('"'):
        end = value.rfind('"')
        if end <= 0 or end != len(value) - 1:
            return None
        return value[1:end].encode("utf-8")
    try:
        return bytes.fromhex(value) if len(value) % 2 == 0 else None
    except ValueError:
        return None


def psk_of(passphrase: str, ssid: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid, 4096, 32).hex()


@dataclass
class AP:
    ssid: str
    bssid: str
    passphrase: str | None  # None: open
    signal: int = -42
    freq: int = 2437
    flags: str = "[WPA2-PSK-CCMP][ESS]"
    gateway: str = "127.0.0.1"


@dataclass
class Net:
    ssid: bytes | None = None
    psk: str | None = None  # 64 hex
    key_mgmt: str = "WPA-PSK"
    bssid: str | None = None
    id_str: str | None = None
    disabled: bool = True
    temp_disabled: bool = False


@dataclass
class FakeWpaSupplicant:
    ctrl_dir: str
    iface: str
    aps: list[AP] = field(default_factory=list)
    silent: bool = False
    silent_on: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.networks: dict[int, Net] = {}
        self.next_id = 0
        self.current: int | None = None
        self.state = "DISCONNECTED"
        self.plan: list[str] = []
        self.loop_states: list[str] = []
        self.commands: list[str] = []
        self.path = os.path.join(self.ctrl_dir, self.iface)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- test helpers --------------------------------------------------------------------

    def add_saved(self, ssid: str, passphrase: str | None, *, enabled: bool = True) -> int:
        """A network from wpa_supplicant.conf."""
        nid = self._new()
        n = self.networks[nid]
        n.ssid = ssid.encode()
        n.psk = psk_of(passphrase, n.ssid) if passphrase else None
        n.key_mgmt = "WPA-PSK" if passphrase else "NONE"
        n.disabled = not enabled
        return nid

    def associate_now(self, nid: int) -> None:
        self.current, self.state, self.plan = nid, "COMPLETED", []

    def ap(self) -> AP | None:
        """The AP we are associated with, if any."""
        if self.state != "COMPLETED" or self.current is None:
            return None
        return self._ap_for(self.networks[self.current])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if os.path.exists(self.path):
            os.remove(self.path)

    # -- daemon --------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            cmd = data.decode("utf-8", errors="replace")
            self.commands.append(cmd)
            verb = cmd.split(" ", 1)[0]
            if verb in self.silent_on:
                self.silent = True
            if self.silent:
                continue
            reply = self._handle(cmd)
            with contextlib.suppress(OSError):  # the client went away
                self.sock.sendto(reply.encode("utf-8"), addr)

    def _new(self) -> int:
        nid = self.next_id
        self.next_id += 1
        self.networks[nid] = Net()
        return nid

    def _ap_for(self, n: Net) -> AP | None:
        for ap in self.aps:
            if ap.ssid.encode() == n.ssid and (not n.bssid or n.bssid == ap.bssid.lower()):
                return ap
        return None

    def _handle(self, cmd: str) -> str:
        parts = cmd.split(" ", 3)
        verb = parts[0]
        if verb == "PING":
            return "PONG\n"
        if verb == "SCAN":
            return "OK\n"
        if verb == "SCAN_RESULTS":
            lines = ["bssid / frequency / signal level / flags / ssid"]
            lines += [
                f"{a.bssid}\t{a.freq}\t{a.signal}\t{a.flags}\t{printf_encode(a.ssid.encode())}"
                for a in self.aps
            ]
            return "\n".join(lines) + "\n"
        if verb == "ADD_NETWORK":
            return f"{self._new()}\n"
        if verb == "LIST_NETWORKS":
            lines = ["network id / ssid / bssid / flags"]
            for nid, n in self.networks.items():
                flags = ""
                if nid == self.current:
                    flags += "[CURRENT]"
                if n.disabled:
                    flags += "[DISABLED]"
                if n.temp_disabled:
                    flags += "[TEMP-DISABLED]"
                lines.append(f"{nid}\t{printf_encode(n.ssid or b'')}\t{n.bssid or 'any'}\t{flags}")
            return "\n".join(lines) + "\n"
        if verb == "STATUS":
            return self._status()
        if verb in (
            "SET_NETWORK",
            "GET_NETWORK",
            "SELECT_NETWORK",
            "ENABLE_NETWORK",
            "DISABLE_NETWORK",
            "REMOVE_NETWORK",
        ):
            if len(parts) < 2:
                return "FAIL\n"
            if verb == "REMOVE_NETWORK" and parts[1] == "all":
                self.networks.clear()
                self.current, self.state = None, "DISCONNECTED"
                return "OK\n"
            if not parts[1].isdigit() or int(parts[1]) not in self.networks:
                return "FAIL\n"
            nid = int(parts[1])
            n = self.networks[nid]
            if verb == "SET_NETWORK":
                return self._set(
                    n, parts[2] if len(parts) > 2 else "", parts[3] if len(parts) > 3 else ""
                )
            if verb == "GET_NETWORK":
                return self._get(n, parts[2] if len(parts) > 2 else "")
            if verb == "SELECT_NETWORK":
                return self._select(nid)
            if verb in ("ENABLE_NETWORK", "DISABLE_NETWORK"):
                n.disabled = verb == "DISABLE_NETWORK"
                n.temp_disabled = False
                return "OK\n"
            del self.networks[nid]
            if self.current == nid:
                self.current, self.state, self.plan = None, "DISCONNECTED", []
            return "OK\n"
        if verb == "DISCONNECT":
            self.current, self.state, self.plan = None, "DISCONNECTED", []
            return "OK\n"
        return "UNKNOWN COMMAND\n"

    def _set(self, n: Net, name: str, value: str) -> str:
        if name == "ssid":
            ssid = parse_string(value)
            if not ssid or len(ssid) > 32:
                return "FAIL\n"
            n.ssid = ssid
        elif name == "psk":
            if value.startswith('"'):
                raw = parse_string(value)
                if raw is None or not 8 <= len(raw) <= 63 or n.ssid is None:
                    return "FAIL\n"
                n.psk = psk_of(raw.decode(), n.ssid)
            elif len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower()):
                n.psk = value.lower()
            else:
                return "FAIL\n"
        elif name == "key_mgmt":
            if value not in ("WPA-PSK", "NONE", "WPA-EAP", "SAE"):
                return "FAIL\n"
            n.key_mgmt = value
        elif name == "bssid":
            n.bssid = value.lower()
        elif name == "id_str":
            raw = parse_string(value)
            if raw is None or not value.startswith('"'):
                return "FAIL\n"
            n.id_str = raw.decode()
        elif name == "proto":
            pass
        else:
            return "FAIL\n"
        return "OK\n"

    def _get(self, n: Net, name: str) -> str:
        if name == "ssid" and n.ssid is not None:
            return f'"{n.ssid.decode()}"'
        if name == "id_str" and n.id_str is not None:
            return f'"{n.id_str}"'
        if name == "key_mgmt":
            return n.key_mgmt
        return "FAIL\n"

    def _select(self, nid: int) -> str:
        for other_id, other in self.networks.items():
            other.disabled = other_id != nid
        n = self.networks[nid]
        n.temp_disabled = False
        self.current, self.state = None, "SCANNING"
        ap = self._ap_for(n)
        if ap is None:
            self.plan, self.loop_states = [], ["SCANNING", "DISCONNECTED"]
            self._target = nid
            return "OK\n"
        right = (ap.passphrase is None and n.key_mgmt == "NONE") or (
            ap.passphrase is not None and n.psk == psk_of(ap.passphrase, ap.ssid.encode())
        )
        end = "COMPLETED" if right else "WRONG_KEY"
        self.plan, self.loop_states = ["ASSOCIATING", "4WAY_HANDSHAKE", end], []
        self._target = nid
        return "OK\n"

    def _status(self) -> str:
        if self.plan:
            step = self.plan.pop(0)
            if step == "COMPLETED":
                self.current, self.state = self._target, "COMPLETED"
            elif step == "WRONG_KEY":
                self.networks[self._target].temp_disabled = True
                self.state, self.loop_states = "DISCONNECTED", ["DISCONNECTED"]
            else:
                self.state = step
        elif self.loop_states:
            self.state = self.loop_states[0]
            self.loop_states = self.loop_states[1:] + self.loop_states[:1]
        lines = []
        if self.state == "COMPLETED" and self.current is not None:
            n = self.networks[self.current]
            ap = self._ap_for(n)
            lines += [
                f"bssid={ap.bssid}",
                f"freq={ap.freq}",
                f"ssid={printf_encode(n.ssid)}",
                f"id={self.current}",
                "mode=station",
                "pairwise_cipher=CCMP",
                "group_cipher=CCMP",
                "key_mgmt=WPA2-PSK" if ap.passphrase else "key_mgmt=NONE",
            ]
            if n.id_str:
                lines.append(f"id_str={n.id_str}")
        lines += [
            f"wpa_state={self.state}",
            "address=02:00:00:00:01:00",
            "uuid=12345678-9abc-def0-1234-56789abcdef0",
        ]
        return "\n".join(lines) + "\n"
