"""pywifi backend: Linux with a plain wpa_supplicant (no NetworkManager), and Windows (wlanapi).

pywifi 1.1.12 (2019) needs care (FIELD-NOTES.md):

* Import: `import pywifi` calls logging.basicConfig() and raises NotImplementedError on
  macOS, so it is imported lazily, here only, with a temporary handler on the root logger
  so basicConfig() finds one and leaves the application's logging alone.
* Linux, silent daemon: pywifi's control socket has no timeout and reads each reply with a
  blocking recv(), so a wpa_supplicant that stops answering would hang the station forever
  (even in pywifi's PING at interfaces()). We give *pywifi's own* sockets a timeout by
  replacing the name `socket` inside `pywifi._wifiutil_linux` only (not the global module,
  not socket.setdefaulttimeout, which would change every socket in the process) with a
  shim whose `socket()` returns sockets that have a timeout. After a timeout the connection
  is dropped and reopened, so a late reply can never be read as the answer to a later
  command.
* Linux, profiles: pywifi's add_network_profile() returns no network id and only logs
  errors (and logs the whole command, psk included, when a psk command fails), and its
  connect() picks the first network with a matching (escaped) SSID. So the network
  commands (ADD_NETWORK / SET_NETWORK / SELECT_NETWORK / REMOVE_NETWORK) go through pywifi's
  socket with replies checked here. The SSID is sent as hex (exact bytes: quotes, spaces,
  non-ASCII), the passphrase as the derived 64-hex PSK (it never crosses the socket in
  clear), and each temporary network carries an `id_str` tag so a sweep after a crash finds
  ours only. SCAN_RESULTS is parsed here too: pywifi drops the flags and reports WPA3 and
  WEP networks as open.
* Linux, DHCP: wpa_supplicant runs none. See _linux.SystemDhcp: wait for a DHCP daemon,
  else run dhcpcd/dhclient/udhcpc once, else say what to install.
* Linux, other networks: SELECT_NETWORK disables every other network; going home
  re-enables exactly those that were enabled before we left.
* Windows: profiles need cipher CCMP ("AES") or wlanapi silently rejects them; pywifi builds
  the profile XML without escaping, so the passphrase is XML-escaped here and SSIDs with
  XML-special characters are refused (the profile name is the raw SSID); pywifi names the
  profile after the SSID and overwrites a saved one of the same name. Never
  remove_all_network_profiles(): it deletes every profile of the user. pywifi cannot read
  the current SSID on Windows, so home must be given by the station's settings. The netsh
  backend is preferred on Windows (see docs/WIFI.md); this path is not tested on a real
  Windows machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket as _socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from station.wifi import _linux, _windows, base
from station.wifi.base import (
    TEMP_PREFIX,
    Availability,
    Deadline,
    HomeNetwork,
    JoinRequest,
    Network,
    ProfileCallback,
    ScanResult,
    WifiBackend,
)
from station.wifi.errors import (
    CommandError,
    DaemonTimeout,
    JoinError,
    JoinTimeout,
    NetworkNotFound,
    ReturnHomeError,
    WifiError,
    WifiUnavailable,
    WrongPassphrase,
)

log = logging.getLogger("station.wifi.pywifi")

DEFAULT_CTRL_DIR = "/var/run/wpa_supplicant"
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

# pywifi sends a command and reads "the next" datagram on a socket shared by every caller
# of that interface (WifiUtil._connections is class-level), so two threads read each
# other's replies. The radio owner (station.wifi.radio) serialises whole operations; this
# lock pairs each command with its reply even for a caller that goes around the owner.
# One lock for all interfaces: PyWiFi().interfaces() pings every socket in the directory.
_CTRL_LOCK = threading.RLock()


class _RedactPsk(logging.Filter):
    """Belt and braces: pywifi logs failed commands verbatim; never let a psk through."""

    _psk = re.compile(r"(psk|password)\s+\S+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if self._psk.search(msg):
            record.msg, record.args = self._psk.sub(r"\1 ***", msg), None
        return True


def import_pywifi() -> ModuleType:
    root = logging.getLogger()
    placeholder = None
    if not root.handlers:
        placeholder = logging.NullHandler()
        root.addHandler(placeholder)  # so pywifi's basicConfig() is a no-op
    try:
        import pywifi
    except NotImplementedError:
        raise WifiUnavailable("pywifi does not support this operating system.") from None
    except ImportError as exc:
        raise WifiUnavailable(f"pywifi cannot be loaded here: {exc}") from None
    finally:
        if placeholder is not None:
            root.removeHandler(placeholder)
    pylog = logging.getLogger("pywifi")
    if not any(isinstance(f, _RedactPsk) for f in pylog.filters):
        pylog.addFilter(_RedactPsk())
    return pywifi


class _TimeoutSocketModule:
    """Stands in for the `socket` module inside pywifi._wifiutil_linux only: identical,
    except that sockets it creates time out instead of blocking forever."""

    def __init__(self, real: ModuleType, timeout: float):
        self._real = real
        self.timeout = timeout

    def socket(self, *args: Any, **kwargs: Any) -> _socket.socket:
        sock = self._real.socket(*args, **kwargs)
        sock.settimeout(self.timeout)
        return sock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install_socket_timeout(wifiutil: ModuleType, timeout: float) -> None:
    current = wifiutil.socket
    if isinstance(current, _TimeoutSocketModule):
        current.timeout = timeout  # one value per process: the last backend's
    else:
        # The module attribute is the seam: pywifi looks `socket` up in its own globals.
        wifiutil.__dict__["socket"] = _TimeoutSocketModule(current, timeout)


def _security_from_flags(flags: str) -> str:
    kinds = []
    if "WPA-" in flags:
        kinds.append("WPA")
    if "WPA2-" in flags or "RSN-" in flags:
        kinds.append("WPA2")
    if "SAE" in flags:
        kinds.append("WPA3")
    if "EAP" in flags:
        return "802.1X"
    if kinds:
        return "/".join(dict.fromkeys(kinds))
    return "WEP" if "WEP" in flags else "open"


class PywifiBackend(WifiBackend):
    name = "pywifi"

    def __init__(
        self,
        interface: str | None = None,
        *,
        system: str | None = None,
        ctrl_dir: str | os.PathLike[str] | None = None,
        reply_timeout: float = 3.0,
        scan_wait: float = 3.0,
        dhcp: _linux.Dhcp | None = None,
        route_path: str | os.PathLike[str] = _linux.PROC_ROUTE,
        poll_interval: float = 0.25,
    ):
        self.system = system or sys.platform
        self.poll_interval = poll_interval
        pywifi = import_pywifi()
        if self.system.startswith("linux"):
            self._drv: _WpaDriver | _WlanDriver = _WpaDriver(
                pywifi,
                interface,
                ctrl_dir,
                reply_timeout,
                scan_wait,
                dhcp or _linux.SystemDhcp(route_path=Path(route_path)),
                route_path,
                poll_interval,
            )
        elif self.system == "win32":
            self._drv = _WlanDriver(pywifi, interface, scan_wait, poll_interval)
        else:
            raise WifiUnavailable("pywifi works on Linux and Windows only.")

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        from importlib.util import find_spec

        if system.startswith("linux"):
            if find_spec("pywifi") is None:
                return Availability(False, "pywifi is not installed")
            ctrl = Path(options.get("ctrl_dir") or DEFAULT_CTRL_DIR)
            try:
                socks = [p for p in sorted(ctrl.iterdir()) if p.is_socket()]
            except OSError:
                return Availability(False, f"no wpa_supplicant control sockets in {ctrl}")
            if not socks:
                return Availability(False, f"no wpa_supplicant control sockets in {ctrl}")
            if not os.access(socks[0], os.W_OK):
                return Availability(
                    False,
                    f"wpa_supplicant runs ({socks[0].name}) but this user may not control it "
                    "(run as root or join its ctrl_interface group, often 'netdev')",
                )
            return Availability(
                True, f"wpa_supplicant runs without NetworkManager ({socks[0].name})"
            )
        if system == "win32":
            missing = [m for m in ("pywifi", "comtypes") if find_spec(m) is None]
            if missing:
                return Availability(False, f"{' and '.join(missing)} not installed")
            return Availability(True, "pywifi can drive the WLAN service (wlanapi)")
        return Availability(False, "pywifi works on Linux and Windows only")

    def current(self) -> Network | None:
        return self._drv.current()

    def remember_home(self) -> HomeNetwork | None:
        return self._drv.remember_home()

    def scan(self) -> list[ScanResult]:
        return sorted(self._drv.scan(), key=lambda r: r.signal_dbm, reverse=True)

    def _join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> str:
        return self._drv.join(req, deadline, on_profile)

    def _gateway(self) -> str | None:
        return self._drv.gateway()

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        try:
            self._drv.return_home(home, Deadline(timeout))
        except ReturnHomeError:
            raise
        except WifiError as exc:
            where = home.describe() if home else "the home network"
            raise ReturnHomeError(f"Could not reconnect to {where}: {exc}") from exc

    def remove_profile(self, profile: str) -> None:
        self._drv.remove_profile(profile)

    def sweep_profiles(self) -> list[str]:
        return self._drv.sweep_profiles()

    def close(self) -> None:
        self._drv.close()


class _WpaDriver:
    """wpa_supplicant's control interface, through pywifi's Linux socket code."""

    def __init__(
        self,
        pywifi: ModuleType,
        interface: str | None,
        ctrl_dir: Any,
        reply_timeout: float,
        scan_wait: float,
        dhcp: _linux.Dhcp,
        route_path: Any,
        poll: float,
    ):
        from pywifi import _wifiutil_linux as wl

        if ctrl_dir is not None:
            wl.CTRL_IFACE_DIR = str(ctrl_dir)  # module global: pywifi has no other way
        install_socket_timeout(wl, reply_timeout)
        self._pywifi, self._wl = pywifi, wl
        self.reply_timeout = reply_timeout
        self.scan_wait = scan_wait
        self.dhcp = dhcp
        self.route_path = route_path
        self.poll = poll
        self.name = interface or ""
        self._iface = self._open()

    # -- transport -----------------------------------------------------------------------

    def _open(self) -> Any:
        ctrl = self._wl.CTRL_IFACE_DIR
        try:
            with _CTRL_LOCK, self._translate("PING"):
                ifaces = self._pywifi.PyWiFi().interfaces()
        except FileNotFoundError:
            raise WifiUnavailable(
                f"wpa_supplicant is not running with a control interface in {ctrl}."
            ) from None
        chosen = [i for i in ifaces if not self.name or i.name() == self.name]
        if not chosen:
            what = f"interface '{self.name}'" if self.name else "control socket"
            raise WifiUnavailable(f"wpa_supplicant has no {what} in {ctrl}.")
        iface = chosen[0]
        self.name = iface.name()
        if self.name not in self._wl.WifiUtil._connections:
            raise WifiUnavailable(f"wpa_supplicant on {self.name} did not answer PING.")
        return iface

    @contextlib.contextmanager
    def _translate(self, verb: str) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            self._drop()
            raise DaemonTimeout(
                f"wpa_supplicant did not answer '{verb}' on {self.name or 'its control socket'} "
                f"within {self.reply_timeout:g} s. Is it running? (e.g. 'sudo systemctl restart "
                "wpa_supplicant')"
            ) from None
        except PermissionError:
            raise WifiUnavailable(
                "This user may not control wpa_supplicant: run the station as root or add "
                "the user to wpa_supplicant's ctrl_interface group (often 'netdev')."
            ) from None
        except ConnectionError as exc:
            self._drop()
            raise WifiUnavailable(f"Lost contact with wpa_supplicant: {exc}") from None

    def _drop(self) -> None:
        with _CTRL_LOCK:
            conn = self._wl.WifiUtil._connections.pop(self.name, None) if self.name else None
        if conn:
            with contextlib.suppress(OSError):
                conn["sock"].close()
            with contextlib.suppress(OSError):
                os.remove(conn["sock_file"])

    def cmd(self, text: str) -> str:
        verb = text.split(" ", 1)[0]
        with _CTRL_LOCK:
            if self.name not in self._wl.WifiUtil._connections:
                self._iface = self._open()  # dropped after an earlier timeout
            with self._translate(verb):
                # get_reply=True: pywifi then returns the reply instead of logging it.
                return self._iface._wifi_ctrl._send_cmd_to_wpas(self.name, text, True)

    def ok(self, text: str) -> None:
        reply = self.cmd(text).strip()
        if reply != "OK":
            shown = " ".join(text.split()[:3])  # verb, id, field: never the value
            raise CommandError(
                f"wpa_supplicant refused '{shown}': {reply or '(empty)'}", tool="wpa_supplicant"
            )

    def status(self) -> dict[str, str]:
        lines = self.cmd("STATUS").splitlines()
        return dict(ln.split("=", 1) for ln in lines if "=" in ln)

    def networks(self) -> list[tuple[str, str, str, str]]:
        """(id, ssid, bssid, flags) from LIST_NETWORKS."""
        rows = []
        for line in self.cmd("LIST_NETWORKS").splitlines()[1:]:
            f = line.split("\t")
            if len(f) >= 3 and f[0].isdigit():
                rows.append((f[0], _linux.wpa_unescape(f[1]), f[2], f[3] if len(f) > 3 else ""))
        return rows

    # -- interface -----------------------------------------------------------------------

    def current(self) -> Network | None:
        st = self.status()
        if st.get("wpa_state") != "COMPLETED":
            return None
        return Network(
            ssid=_linux.wpa_unescape(st.get("ssid", "")) or None,
            bssid=st.get("bssid"),
            profile=st.get("id"),
            temporary=st.get("id_str", "").startswith(TEMP_PREFIX),
        )

    def remember_home(self) -> HomeNetwork:
        cur = self.current()
        leftover = None
        if cur is not None and cur.temporary:
            log.warning("the adapter is on a leftover temporary network, not on home")
            leftover, cur = cur.profile, None
        enabled = [
            n for n, _s, _b, flags in self.networks() if "[DISABLED]" not in flags and n != leftover
        ]
        return HomeNetwork(
            ssid=cur.ssid if cur else None,
            profile=cur.profile if cur else None,
            details={"enabled": " ".join(enabled)},
        )

    def scan(self) -> list[ScanResult]:
        with _CTRL_LOCK, self._translate("SCAN"):
            self._iface.scan()  # pywifi's SCAN; FAIL-BUSY (already scanning) is fine
        time.sleep(self.scan_wait)  # no ATTACH in pywifi, so no scan-done event to wait for
        results = []
        for line in self.cmd("SCAN_RESULTS").splitlines()[1:]:
            f = line.split("\t")
            if len(f) < 5 or not f[4]:
                continue
            try:
                results.append(
                    ScanResult(
                        ssid=_linux.wpa_unescape(f[4]),
                        bssid=f[0].lower(),
                        signal_dbm=int(f[2]),
                        security=_security_from_flags(f[3]),
                        frequency_mhz=int(f[1]),
                    )
                )
            except ValueError:
                continue
        return results

    def gateway(self) -> str | None:
        return _linux.default_gateway(self.name, self.route_path)

    def join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> str:
        nid = self.cmd("ADD_NETWORK").strip()
        if not nid.isdigit():
            raise CommandError(
                f"wpa_supplicant refused ADD_NETWORK: {nid or '(empty)'}", tool="wpa_supplicant"
            )
        tag = base.temp_name()
        handle = f"{nid}/{tag}"
        on_profile(handle)
        self.ok(f'SET_NETWORK {nid} id_str "{tag}"')
        self.ok(f"SET_NETWORK {nid} ssid {req.ssid.encode('utf-8').hex()}")
        if req.passphrase:
            psk = (
                req.passphrase.lower()
                if _HEX64.fullmatch(req.passphrase)
                else hashlib.pbkdf2_hmac(
                    "sha1", req.passphrase.encode("utf-8"), req.ssid.encode("utf-8"), 4096, 32
                ).hex()
            )
            self.ok(f"SET_NETWORK {nid} key_mgmt WPA-PSK")
            self.ok(f"SET_NETWORK {nid} psk {psk}")
        else:
            self.ok(f"SET_NETWORK {nid} key_mgmt NONE")
        if req.bssid:
            self.ok(f"SET_NETWORK {nid} bssid {req.bssid}")
        stale = self.gateway()
        self.ok(f"SELECT_NETWORK {nid}")
        self._wait_completed(nid, req.ssid, deadline)
        self.dhcp(self.name, deadline, stale)
        return handle

    def _wait_completed(self, nid: str, ssid: str, deadline: Deadline) -> None:
        seen: set[str] = set()
        while True:
            deadline.check()
            st = self.status()
            state = st.get("wpa_state", "")
            seen.add(state)
            if state == "COMPLETED" and st.get("id") == nid:
                return
            flags = next((f for n, _s, _b, f in self.networks() if n == nid), "")
            if "TEMP-DISABLED" in flags:
                if "4WAY_HANDSHAKE" in seen:
                    raise WrongPassphrase(
                        f"The device network '{ssid}' rejected the WiFi password. Check the "
                        "device's setup password and try again.",
                        ssid=ssid,
                    )
                raise JoinError(
                    f"wpa_supplicant gave up joining '{ssid}' (it failed to connect).", ssid=ssid
                )
            if deadline.expired:
                break
            deadline.sleep(self.poll)
        visible = any(
            _linux.wpa_unescape(ln.split("\t")[4]) == ssid
            for ln in self.cmd("SCAN_RESULTS").splitlines()[1:]
            if ln.count("\t") >= 4
        )
        if not visible:
            raise NetworkNotFound(
                f"The network '{ssid}' was not found. Make sure the device is powered, in setup "
                "mode and near this computer, then scan again.",
                ssid=ssid,
            )
        hint = (
            " The handshake never completed, which often means a wrong password."
            if "4WAY_HANDSHAKE" in seen
            else ""
        )
        raise JoinTimeout(
            f"Joining '{ssid}' did not finish within {deadline.timeout:.0f} s.{hint}", ssid=ssid
        )

    def return_home(self, home: HomeNetwork | None, deadline: Deadline) -> None:
        stale = self.gateway()
        nets = self.networks()
        ids = {n for n, _s, _b, _f in nets}
        hid = None
        if home is not None:
            by_id = next((n for n, s, _b, _f in nets if n == home.profile and s == home.ssid), None)
            by_ssid = next((n for n, s, _b, _f in nets if home.ssid and s == home.ssid), None)
            hid = by_id or by_ssid
            if hid is None and (home.profile or home.ssid):
                raise ReturnHomeError(
                    f"wpa_supplicant has no saved network {home.describe()} any more."
                )
        if hid is not None:
            self.ok(f"SELECT_NETWORK {hid}")
            while True:
                st = self.status()
                if st.get("wpa_state") == "COMPLETED" and st.get("id") == hid:
                    break
                if deadline.expired:
                    raise ReturnHomeError(
                        f"wpa_supplicant did not reconnect to {home.describe() if home else hid} "
                        f"within {deadline.timeout:.0f} s (state {st.get('wpa_state', '?')})."
                    )
                deadline.sleep(self.poll)
        enabled = (home.details.get("enabled", "") if home else "").split()
        for nid in enabled:
            if nid in ids and nid != hid:
                self.cmd(f"ENABLE_NETWORK {nid}")  # SELECT_NETWORK disabled it; put it back
        if hid is not None:
            self.dhcp(self.name, deadline, stale)

    def remove_profile(self, profile: str) -> None:
        nid, _, tag = profile.partition("/")
        reply = self.cmd(f"GET_NETWORK {nid} id_str").strip()
        if reply != f'"{tag}"':
            log.debug("temporary network %s is already gone", profile)
            return  # the id now belongs to another network (or none): not ours to remove
        self.ok(f"REMOVE_NETWORK {nid}")

    def sweep_profiles(self) -> list[str]:
        removed = []
        for nid, _s, _b, _f in self.networks():
            tag = self.cmd(f"GET_NETWORK {nid} id_str").strip().strip('"')
            if tag.startswith(TEMP_PREFIX):
                self.ok(f"REMOVE_NETWORK {nid}")
                removed.append(f"{nid}/{tag}")
        return removed

    def close(self) -> None:
        self._drop()


class _WlanDriver:
    """Windows wlanapi through pywifi. `iface` may be injected (tests: a fake interface)."""

    def __init__(
        self,
        pywifi: ModuleType,
        interface: str | None,
        scan_wait: float,
        poll: float,
        iface: Any = None,
    ):
        from pywifi import const

        self.const = const
        self.Profile = pywifi.Profile
        self.scan_wait = scan_wait
        self.poll = poll
        if iface is None:
            try:
                ifaces = pywifi.PyWiFi().interfaces()
            except OSError as exc:
                raise WifiUnavailable(f"The WLAN service did not answer: {exc}") from None
            chosen = [i for i in ifaces if not interface or i.name() == interface]
            if not chosen:
                raise WifiUnavailable("Windows reports no WiFi adapter.")
            iface = chosen[0]
        self.iface = iface

    def current(self) -> Network | None:
        # pywifi has no way to read the SSID on Windows: connected or not is all we learn.
        return Network(ssid=None) if self.iface.status() == self.const.IFACE_CONNECTED else None

    def remember_home(self) -> HomeNetwork | None:
        return None  # unknown: the station must pass home (its settings) to the Excursion

    def scan(self) -> list[ScanResult]:
        self.iface.scan()
        time.sleep(self.scan_wait)  # Windows finishes a scan within about 4 s
        out = []
        for b in self.iface.scan_results():
            # pywifi builds the SSID byte by byte with "%c": undo that to get UTF-8 back.
            try:
                ssid = b.ssid.encode("latin-1").decode("utf-8")
            except (UnicodeEncodeError, UnicodeDecodeError):
                ssid = b.ssid
            akm = set(b.akm)
            sec = (
                "WPA2"
                if self.const.AKM_TYPE_WPA2PSK in akm
                else "WPA"
                if self.const.AKM_TYPE_WPAPSK in akm
                else "open"
                if not akm or self.const.AKM_TYPE_NONE in akm
                else "unknown"
            )
            out.append(
                ScanResult(
                    ssid=ssid,
                    bssid=b.bssid.rstrip(":").lower(),
                    signal_dbm=int(b.signal),
                    security=sec,
                    frequency_mhz=int(b.freq) // 1000 or None,
                )
            )
        return out

    def gateway(self) -> str | None:
        return _windows.default_gateway(self.iface.name(), by_description=True)

    def _profile(self, name: str, passphrase: str = "") -> Any:
        c = self.const
        p = self.Profile()
        p.ssid = name
        p.auth = c.AUTH_ALG_OPEN
        if passphrase:
            p.akm = [c.AKM_TYPE_WPA2PSK]
            p.cipher = c.CIPHER_TYPE_CCMP  # without it wlanapi silently rejects the profile
            p.key = _xml_escape(passphrase)  # pywifi pastes it into XML unescaped
        else:
            p.akm = [c.AKM_TYPE_NONE]
            p.cipher = c.CIPHER_TYPE_NONE
        return p

    def join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> str:
        if any(ch in req.ssid for ch in "<>&\"'"):
            raise JoinError(
                f"pywifi cannot join '{req.ssid}' on Windows: its profile XML breaks on the "
                "characters < > & \" '. Use the netsh backend.",
                ssid=req.ssid,
            )
        profile = self._profile(req.ssid, req.passphrase)
        on_profile(req.ssid)  # pywifi names the profile after the SSID
        self.iface.add_network_profile(profile)
        if not any(p.ssid == req.ssid for p in self.iface.network_profiles()):
            raise JoinError(f"Windows rejected the WiFi profile for '{req.ssid}'.", ssid=req.ssid)
        self.iface.connect(profile)
        self._wait_connected(deadline, req.ssid)
        return req.ssid

    def _wait_connected(self, deadline: Deadline, ssid: str) -> None:
        while self.iface.status() != self.const.IFACE_CONNECTED:
            if deadline.expired:
                raise JoinTimeout(
                    f"Windows did not connect to '{ssid}' within {deadline.timeout:.0f} s (wrong "
                    "password, or the device is out of range).",
                    ssid=ssid,
                )
            deadline.sleep(self.poll)

    def return_home(self, home: HomeNetwork | None, deadline: Deadline) -> None:
        name = (home.profile or home.ssid) if home else None
        if not name:
            raise ReturnHomeError(
                "pywifi cannot tell which network is home on Windows: set the home network "
                "in the station's settings."
            )
        self.iface.connect(self._profile(name))
        try:
            self._wait_connected(deadline, name)
        except JoinTimeout as exc:
            raise ReturnHomeError(str(exc)) from None

    def remove_profile(self, profile: str) -> None:
        # Exactly one profile, by name. Never remove_all_network_profiles().
        self.iface.remove_network_profile(self._profile(profile))

    def sweep_profiles(self) -> list[str]:
        return []  # profiles are named after SSIDs: only the journal knows which are ours

    def close(self) -> None:
        pass


def _xml_escape(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text, {'"': "&quot;", "'": "&apos;"})
