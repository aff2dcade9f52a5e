"""Windows backend through `netsh wlan` (preferred over pywifi on Windows; docs/WIFI.md says why).

* Join: a WLAN profile XML written by us (SSID as exact <hex>, passphrase XML-escaped, cipher
  AES/CCMP), under our own profile name `esp32-station-tmp-XXXX` so a profile of the user's
  is never overwritten or deleted; `netsh wlan add profile filename=... user=current`, then
  `netsh wlan connect name=...`. The XML file holds the passphrase only for the moment of
  the add and is deleted right after.
* netsh's connect returns at once: we poll `show interfaces` until the adapter reports the
  SSID (and BSSID when asked: the profile cannot pin one, so a mismatch is an error), then
  the gateway (PowerShell Get-NetRoute, see _windows.py) and the device.
* Output labels are translated on non-English Windows; only "SSID", "BSSID" and the values
  are relied on where possible, and the output is decoded from the OEM code page.
* netsh cannot trigger a scan: `show networks` lists what Windows saw in its last periodic
  scan. Windows 11 24H2 refuses WLAN listings without Location permission: that error is
  turned into an instruction.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from typing import Any

from station.wifi import _run, _windows, base
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
    dbm_from_percent,
)
from station.wifi.errors import (
    CommandError,
    JoinError,
    JoinTimeout,
    ReturnHomeError,
    WifiError,
    WifiUnavailable,
)

log = logging.getLogger("station.wifi.netsh")

_LOCATION_HELP = (
    "Windows needs Location permission before this app may list or join WiFi networks: turn "
    "on Settings > Privacy & security > Location, and 'Let desktop apps access your "
    "location', then try again."
)


def _pairs(block: str) -> list[tuple[str, str]]:
    out = []
    for line in block.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out.append((key.strip(), value.strip()))
    return out


def _interface_blocks(text: str) -> list[dict[str, str]]:
    """`show interfaces` → one dict per adapter (first key of each block is its name)."""
    blocks: list[dict[str, str]] = []
    for chunk in re.split(r"\n\s*\n", text):
        pairs = _pairs(chunk)
        if len(pairs) < 3:
            continue
        d = {"_name": pairs[0][1]}
        for k, v in pairs:
            d.setdefault(k, v)
        blocks.append(d)
    return blocks


class NetshBackend(WifiBackend):
    name = "netsh"

    def __init__(
        self,
        interface: str | None = None,
        *,
        command_timeout: float = 20.0,
        poll_interval: float = 0.5,
    ):
        self._interface = interface
        self.command_timeout = command_timeout
        self.poll_interval = poll_interval

    def _netsh(self, *args: str, timeout: float | None = None, cancel=None) -> _run.Result:
        r = _run.run(
            ["netsh", *args],
            timeout=timeout or self.command_timeout,
            cancel=cancel,
            encoding=_windows.CONSOLE_ENCODING,
        )
        if "location permission" in r.output.lower():
            raise WifiUnavailable(_LOCATION_HELP)
        if "wlansvc" in r.output.lower() and not r.ok:
            raise WifiUnavailable(
                "The Windows WLAN service (WLAN AutoConfig, wlansvc) is not "
                "running: start it in Services, or check the WiFi adapter."
            )
        return r

    def _checked(self, *args: str) -> str:
        r = self._netsh(*args)
        if not r.ok:
            raise CommandError(
                f"'netsh {' '.join(args[:3])}' failed: {_run.first_error_line(r.output)}",
                tool="netsh",
                returncode=r.returncode,
            )
        return r.stdout

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        if system != "win32":
            return Availability(False, "netsh wlan exists on Windows only")
        try:
            iface = cls.with_options(options).interface()
        except WifiError as exc:
            return Availability(False, str(exc))
        return Availability(True, f"netsh can switch the WiFi adapter '{iface}'")

    def _blocks(self) -> list[dict[str, str]]:
        return _interface_blocks(self._checked("wlan", "show", "interfaces"))

    def interface(self) -> str:
        if self._interface is None:
            blocks = self._blocks()
            if not blocks:
                raise WifiUnavailable(
                    "Windows reports no WiFi adapter (netsh wlan show interfaces)."
                )
            self._interface = blocks[0]["_name"]
        return self._interface

    def current(self) -> Network | None:
        iface = self.interface()
        block = next((b for b in self._blocks() if b["_name"] == iface), None)
        if block is None or "SSID" not in block:
            return None
        bssid = block.get("AP BSSID") or block.get("BSSID")
        # "Profile" is translated on some systems; the SSID is the usual profile name.
        profile = block.get("Profile") or block.get("Profil") or block["SSID"]
        return Network(
            ssid=block["SSID"],
            bssid=bssid.lower() if bssid else None,
            profile=profile,
            temporary=profile.startswith(TEMP_PREFIX),
        )

    def scan(self) -> list[ScanResult]:
        out = self._checked(
            "wlan", "show", "networks", "mode=bssid", f"interface={self.interface()}"
        )
        results: list[ScanResult] = []
        ssid, security = "", "open"
        bssid = ""
        for key, value in _pairs(out):
            if re.fullmatch(r"SSID \d+", key):
                ssid, security = value, "open"
            elif key.startswith("Authentication") or key.startswith("Authentifizierung"):
                security = _security(value)
            elif re.fullmatch(r"BSSID \d+", key):
                bssid = value.lower()
            elif re.match(r"Signal", key) and bssid:
                m = re.match(r"(\d+)\s*%", value)
                if ssid and m:
                    results.append(
                        ScanResult(
                            ssid=ssid,
                            bssid=bssid,
                            signal_dbm=dbm_from_percent(int(m.group(1))),
                            security=security,
                        )
                    )
                bssid = ""
        return sorted(results, key=lambda r: r.signal_dbm, reverse=True)

    def _gateway(self) -> str | None:
        return _windows.default_gateway(self.interface(), timeout=self.command_timeout)

    def _join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> str:
        iface = self.interface()
        name = base.temp_name()
        on_profile(name)
        fd, path = tempfile.mkstemp(prefix="station-wlan-", suffix=".xml")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_windows.profile_xml(name, req.ssid, req.passphrase))
            r = self._netsh(
                "wlan",
                "add",
                "profile",
                f"filename={path}",
                f"interface={iface}",
                "user=current",
                cancel=deadline.cancel,
            )
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)
        if not r.ok:
            raise JoinError(
                f"Windows did not accept the WiFi profile for '{req.ssid}': "
                f"{_run.first_error_line(r.output)}",
                ssid=req.ssid,
            )
        r = self._netsh(
            "wlan", "connect", f"name={name}", f"interface={iface}", cancel=deadline.cancel
        )
        if not r.ok:
            raise JoinError(
                f"Windows could not start joining '{req.ssid}': {_run.first_error_line(r.output)}",
                ssid=req.ssid,
            )
        self._wait_on(req.ssid, req.bssid, deadline)
        return name

    def _wait_on(self, ssid: str, bssid: str | None, deadline: Deadline) -> None:
        while True:
            deadline.check()
            cur = self.current()
            if cur is not None and cur.ssid == ssid:
                if bssid and cur.bssid and cur.bssid != bssid:
                    raise JoinError(
                        f"Joined a different unit named '{ssid}' ({cur.bssid}, not {bssid}). "
                        "Switch the other units off or give them distinct names.",
                        ssid=ssid,
                    )
                return
            if deadline.expired:
                raise JoinTimeout(
                    f"Windows did not connect to '{ssid}' within {deadline.timeout:.0f} s "
                    "(wrong password, or the device is out of range).",
                    ssid=ssid,
                )
            deadline.sleep(self.poll_interval)

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        iface = self.interface()
        if home is None or not (home.profile or home.ssid):
            raise ReturnHomeError("The home network is unknown: set it in the station's settings.")
        r = self._netsh(
            "wlan", "connect", f"name={home.profile or home.ssid}", f"interface={iface}"
        )
        if not r.ok:
            raise ReturnHomeError(
                f"Windows could not reconnect to {home.describe()}: "
                f"{_run.first_error_line(r.output)}"
            )
        deadline = Deadline(timeout)
        try:
            if home.ssid:
                self._wait_on(home.ssid, None, deadline)
        except JoinTimeout:
            raise ReturnHomeError(
                f"Windows did not reconnect to {home.describe()} within {timeout:.0f} s."
            ) from None
        if self._wait_for_gateway(deadline) is None:
            raise ReturnHomeError(
                f"Back on {home.describe()} but got no address within {timeout:.0f} s."
            )

    def remove_profile(self, profile: str) -> None:
        r = self._netsh(
            "wlan", "delete", "profile", f"name={profile}", f"interface={self.interface()}"
        )
        if r.ok or "not found" in r.output.lower():
            return
        raise CommandError(
            f"Windows could not delete the temporary WiFi profile {profile}: "
            f"{_run.first_error_line(r.output)}",
            tool="netsh",
            returncode=r.returncode,
        )

    def sweep_profiles(self) -> list[str]:
        out = self._checked("wlan", "show", "profiles", f"interface={self.interface()}")
        removed = []
        for _key, value in _pairs(out):
            if value.startswith(TEMP_PREFIX):
                self.remove_profile(value)
                removed.append(value)
        return removed


def _security(auth: str) -> str:
    a = auth.lower()
    if a.startswith("open"):
        return "open"
    if "wpa3" in a and "wpa2" in a:
        return "WPA2/WPA3"
    for name in ("WPA3", "WPA2", "WPA"):
        if name.lower() in a:
            return "802.1X" if "enterprise" in a else name
    return "WEP" if "wep" in a else auth
