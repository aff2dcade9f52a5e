"""NetworkManager backend (Linux desktops), through `nmcli`.

Where NetworkManager owns wpa_supplicant, going around it (pywifi) leaves the laptop with no
DHCP on the device's network (FIELD-NOTES), so here NetworkManager itself does the join:

    nmcli connection add save no type wifi ifname IF con-name esp32-station-tmp-XXXX ssid SSID ...
    nmcli --wait N connection up id esp32-station-tmp-XXXX
    nmcli connection delete id esp32-station-tmp-XXXX

`save no` keeps the profile in memory only (it would vanish with a NetworkManager restart
anyway), `connection.autoconnect no` stops NetworkManager from joining the device by
itself later. Every value is its own argv item (no shell), so SSIDs and passwords with
spaces, quotes, `<>&` or non-ASCII reach NetworkManager unchanged. Output is read in
`--terse --escape yes` form: fields split on unescaped ':'; '\\:' and '\\\\' unescaped.
nmcli runs with LC_ALL=C.UTF-8: English messages to classify, and UTF-8 so non-ASCII SSIDs
are not transliterated by the C locale.

The device AP's passphrase is briefly visible in nmcli's argv (/proc) to local users: it is
the device's setup password (printed in its manual), never the home password, which this
backend does not handle (home is an existing NetworkManager profile).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from station.wifi import _run, base
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
    NetworkNotFound,
    ReturnHomeError,
    WifiError,
    WifiUnavailable,
    WrongPassphrase,
)

log = logging.getLogger("station.wifi.nm")

TERSE = ("--terse", "--escape", "yes")
# nmcli exit codes (nmcli(1), "EXIT STATUS").
RC_TIMEOUT = 3
RC_ACTIVATION_FAILED = 4
RC_NOT_FOUND = 10


def split_terse(line: str) -> list[str]:
    """Split one line of `nmcli --terse --escape yes` output into its fields."""
    fields: list[str] = []
    cur: list[str] = []
    chars = iter(line)
    for ch in chars:
        if ch == "\\":
            cur.append(next(chars, "\\"))
        elif ch == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return fields


def terse_rows(text: str) -> list[list[str]]:
    return [split_terse(ln) for ln in text.splitlines() if ln.strip()]


def _security(nm_security: str) -> str:
    s = nm_security.strip()
    if s in ("", "--"):
        return "open"
    words = s.split()
    if "802.1X" in words:
        return "802.1X"
    wpa = [w for w in ("WPA1", "WPA2", "WPA3") if w in words]
    if wpa:
        return "/".join(w.replace("WPA1", "WPA") for w in wpa)
    return words[0]


class NetworkManagerBackend(WifiBackend):
    name = "networkmanager"
    can_pin_bssid = True

    def __init__(
        self,
        interface: str | None = None,
        *,
        command_timeout: float = 15.0,
    ):
        self._interface = interface
        self.command_timeout = command_timeout

    # -- plumbing ------------------------------------------------------------------------

    def _nmcli(
        self, *args: str, timeout: float | None = None, secrets: tuple[str, ...] = (), cancel=None
    ) -> _run.Result:
        return _run.run(
            ["nmcli", *args],
            timeout=timeout or self.command_timeout,
            secrets=secrets,
            cancel=cancel,
            env=_run.tool_env(LC_ALL="C.UTF-8", LANG="C.UTF-8", LANGUAGE=""),
        )

    def _checked(self, *args: str) -> str:
        r = self._nmcli(*args)
        if not r.ok:
            raise CommandError(
                f"NetworkManager refused 'nmcli {' '.join(r.argv[1:])}': "
                f"{_run.first_error_line(r.output)}",
                tool="nmcli",
                returncode=r.returncode,
            )
        return r.stdout

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        if system != "linux":
            return Availability(False, "NetworkManager is a Linux service")
        probe = cls.with_options(options)
        try:
            running = probe._checked(*TERSE, "--fields", "RUNNING", "general").strip()
            if running != "running":
                return Availability(
                    False, f"NetworkManager is not running ({running or 'no answer'})"
                )
            iface = probe.interface()
        except WifiError as exc:
            return Availability(False, str(exc))
        return Availability(True, f"NetworkManager is running and manages the WiFi adapter {iface}")

    def interface(self) -> str:
        if self._interface is None:
            rows = terse_rows(
                self._checked(
                    *TERSE, "--fields", "DEVICE,TYPE,STATE,CONNECTION", "device", "status"
                )
            )
            wifi = [r for r in rows if len(r) >= 2 and r[1] == "wifi"]
            if not wifi:
                raise WifiUnavailable("NetworkManager manages no WiFi adapter on this computer.")
            usable = [r for r in wifi if len(r) >= 3 and r[2] not in ("unavailable", "unmanaged")]
            self._interface = (usable or wifi)[0][0]
        return self._interface

    # -- reading -------------------------------------------------------------------------

    def current(self) -> Network | None:
        iface = self.interface()
        active = terse_rows(
            self._checked(
                *TERSE, "--fields", "NAME,UUID,TYPE,DEVICE", "connection", "show", "--active"
            )
        )
        row = next((r for r in active if len(r) >= 4 and r[3] == iface), None)
        if row is None:
            return None
        name, uuid = row[0], row[1]
        ssid = bssid = None
        for row in terse_rows(
            self._checked(
                *TERSE,
                "--fields",
                "ACTIVE,SSID,BSSID",
                "device",
                "wifi",
                "list",
                "--rescan",
                "no",
                "ifname",
                iface,
            )
        ):
            if len(row) >= 3 and row[0] == "yes":
                ssid, bssid = row[1] or None, row[2].lower() or None
                break
        return Network(ssid=ssid, bssid=bssid, profile=uuid, temporary=name.startswith(TEMP_PREFIX))

    def scan(self) -> list[ScanResult]:
        iface = self.interface()
        out = self._checked(
            *TERSE,
            "--fields",
            "SSID,BSSID,SIGNAL,SECURITY,FREQ",
            "device",
            "wifi",
            "list",
            "--rescan",
            "yes",
            "ifname",
            iface,
        )
        results = []
        for row in terse_rows(out):
            if len(row) < 5 or not row[0] or row[0] == "--":
                continue  # hidden network
            try:
                pct = int(row[2])
                freq = int(row[4].split()[0]) if row[4].strip() else None
            except ValueError:
                continue
            results.append(
                ScanResult(
                    ssid=row[0],
                    bssid=row[1].lower(),
                    signal_dbm=dbm_from_percent(pct),
                    security=_security(row[3]),
                    frequency_mhz=freq,
                )
            )
        return sorted(results, key=lambda r: r.signal_dbm, reverse=True)

    def _gateway(self) -> str | None:
        out = self._checked(*TERSE, "--fields", "IP4.GATEWAY", "device", "show", self.interface())
        for row in terse_rows(out):
            if len(row) >= 2 and row[0] == "IP4.GATEWAY" and row[1] and row[1] != "--":
                return row[1]
        return None

    # -- changing ------------------------------------------------------------------------

    def _join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> str:
        iface = self.interface()
        name = base.temp_name()
        on_profile(name)
        args = [
            "connection",
            "add",
            "save",
            "no",
            "type",
            "wifi",
            "ifname",
            iface,
            "con-name",
            name,
            "ssid",
            req.ssid,
            "connection.autoconnect",
            "no",
            "ipv6.method",
            "ignore",
        ]
        if req.bssid:
            args += ["802-11-wireless.bssid", req.bssid.upper()]
        if req.passphrase:
            args += ["wifi-sec.key-mgmt", "wpa-psk", "wifi-sec.psk", req.passphrase]
        r = self._nmcli(*args, secrets=(req.passphrase,), cancel=deadline.cancel)
        if not r.ok:
            raise JoinError(
                f"NetworkManager could not create a profile for '{req.ssid}': "
                f"{_run.first_error_line(r.output)}",
                ssid=req.ssid,
            )
        wait = max(1, math.ceil(deadline.remaining()))
        r = self._nmcli(
            "--wait",
            str(wait),
            "connection",
            "up",
            "id",
            name,
            timeout=wait + 10,
            cancel=deadline.cancel,
        )
        if not r.ok:
            raise _activation_error(req.ssid, r, wait)
        return name

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        iface = self.interface()
        wait = str(max(1, math.ceil(timeout)))
        if home is not None and home.profile:
            r = self._nmcli(
                "--wait",
                wait,
                "connection",
                "up",
                "uuid",
                home.profile,
                "ifname",
                iface,
                timeout=timeout + 10,
            )
        else:  # no known home profile: let NetworkManager pick its usual network
            r = self._nmcli("--wait", wait, "device", "connect", iface, timeout=timeout + 10)
        if not r.ok:
            where = home.describe() if home else "its usual network"
            raise ReturnHomeError(
                f"NetworkManager could not reconnect to {where}: {_run.first_error_line(r.output)}"
            )

    def remove_profile(self, profile: str) -> None:
        r = self._nmcli("connection", "delete", "id", profile)
        if not r.ok and r.returncode != RC_NOT_FOUND:
            raise CommandError(
                f"NetworkManager could not delete the temporary profile {profile}: "
                f"{_run.first_error_line(r.output)}",
                tool="nmcli",
                returncode=r.returncode,
            )

    def sweep_profiles(self) -> list[str]:
        removed = []
        for row in terse_rows(self._checked(*TERSE, "--fields", "NAME,UUID", "connection", "show")):
            if len(row) >= 2 and row[0].startswith(TEMP_PREFIX):
                r = self._nmcli("connection", "delete", "uuid", row[1])
                if r.ok or r.returncode == RC_NOT_FOUND:
                    removed.append(row[0])
                else:
                    log.warning("could not delete leftover profile %s: %s", row[0], r.output)
        return removed


def _activation_error(ssid: str, r: _run.Result, wait: int) -> JoinError:
    text = r.output
    line = _run.first_error_line(text)
    low = text.lower()
    if "(7)" in text or "secrets were required" in low or "password" in low:
        return WrongPassphrase(
            f"The device network '{ssid}' rejected the WiFi password. Check the device's "
            "setup password and try again.",
            ssid=ssid,
        )
    if "(53)" in text or "could not be found" in low or "not found" in low or "not visible" in low:
        return NetworkNotFound(
            f"The network '{ssid}' was not found. Make sure the device is powered, in setup "
            "mode and near this computer, then scan again.",
            ssid=ssid,
        )
    if "supplicant" in low:
        return JoinError(
            f"Authentication with '{ssid}' did not complete ({line}); this is often a wrong "
            "password or a weak signal.",
            ssid=ssid,
        )
    if r.returncode == RC_TIMEOUT or "timeout expired" in low:
        return JoinTimeout(
            f"Joining '{ssid}' did not finish within {wait} s. "
            "Move closer to the device and retry.",
            ssid=ssid,
        )
    return JoinError(f"NetworkManager could not join '{ssid}': {line}", ssid=ssid)
