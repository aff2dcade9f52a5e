"""macOS backend, through `networksetup` and `ipconfig`.

* Join: `networksetup -setairportnetwork <if> <ssid> [<password>]`. It may print an error and
  still exit 0, and on macOS 14+ the SSID it would report back can be redacted without
  Location permission, so the switch is confirmed by reaching the device at the gateway
  (`ipconfig getoption <if> router`), never by reading the SSID.
* macOS adds every joined network to the "preferred networks" list (the keychain keeps the
  password). If the device network was not in that list before, it is removed afterwards
  (`-removepreferredwirelessnetwork`), so nothing outlives the run. On some macOS versions
  that needs an administrator; a failure is reported, not hidden.
* networksetup takes the password on its command line (visible to local `ps` for a moment);
  there is no other way with this tool. It is the device's setup password.
* No BSSID pinning: networksetup joins by name only (PROTOCOL gives every unit its own name).
* Home: the SSID read before leaving, or the one given by the station's settings when macOS
  hides it. Going home uses the keychain's saved password unless a lookup gives one.
* Scan: `system_profiler -json SPAirPortDataType` (the `airport` tool is gone since 14.4);
  names macOS redacts are skipped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from station.wifi import _run
from station.wifi.base import (
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
    JoinError,
    NetworkNotFound,
    ReturnHomeError,
    WifiError,
    WifiUnavailable,
)

log = logging.getLogger("station.wifi.macos")

_REDACTED = ("<redacted>", "")


class MacOSBackend(WifiBackend):
    name = "macos"

    def __init__(
        self,
        interface: str | None = None,
        *,
        home_passphrase: Callable[[str], str | None] | None = None,
        command_timeout: float = 20.0,
        poll_interval: float = 0.5,
    ):
        self._interface = interface
        self.home_passphrase = home_passphrase
        self.command_timeout = command_timeout
        self.poll_interval = poll_interval

    def _tool(
        self, *argv: str, timeout: float | None = None, secrets: tuple[str, ...] = (), cancel=None
    ) -> _run.Result:
        return _run.run(
            list(argv), timeout=timeout or self.command_timeout, secrets=secrets, cancel=cancel
        )

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        if system != "darwin":
            return Availability(False, "networksetup exists on macOS only")
        try:
            iface = cls.with_options(options).interface()
        except WifiError as exc:
            return Availability(False, str(exc))
        return Availability(True, f"networksetup can switch the Wi-Fi adapter {iface}")

    def interface(self) -> str:
        if self._interface is None:
            r = self._tool("networksetup", "-listallhardwareports")
            port = None
            for line in r.stdout.splitlines():
                if line.startswith("Hardware Port:"):
                    port = line.split(":", 1)[1].strip()
                elif line.startswith("Device:") and port in ("Wi-Fi", "AirPort"):
                    self._interface = line.split(":", 1)[1].strip()
                    break
            if self._interface is None:
                raise WifiUnavailable("This Mac has no Wi-Fi hardware port (networksetup).")
        return self._interface

    def current(self) -> Network | None:
        iface = self.interface()
        r = self._tool("networksetup", "-getairportnetwork", iface)
        m = re.search(r"Current (?:Wi-Fi|AirPort) Network: (.*)", r.stdout)
        if m and m.group(1).strip() not in _REDACTED:
            return Network(ssid=m.group(1).strip())
        # "You are not associated..." is also what macOS 15 says when it hides the name.
        addr = self._tool("ipconfig", "getifaddr", iface)
        return Network(ssid=None) if addr.ok and addr.stdout.strip() else None

    def remember_home(self) -> HomeNetwork | None:
        cur = self.current()
        if cur is None:
            return None
        if cur.ssid is None:
            raise WifiError(
                "macOS hides the name of the current WiFi network from this app (Location "
                "permission). Enter your home network's name in the station's settings."
            )
        return HomeNetwork(ssid=cur.ssid, profile=cur.ssid)

    def scan(self) -> list[ScanResult]:
        r = self._tool("system_profiler", "-json", "SPAirPortDataType", timeout=60)
        if not r.ok:
            raise CommandError(
                f"system_profiler failed: {_run.first_error_line(r.output)}",
                tool="system_profiler",
                returncode=r.returncode,
            )
        try:
            data = json.loads(r.stdout)
        except ValueError as exc:
            raise CommandError(f"system_profiler gave unreadable output: {exc}") from None
        out: list[ScanResult] = []
        for item in data.get("SPAirPortDataType", []):
            for card in item.get("spairport_airport_interfaces", []):
                for net in card.get("spairport_airport_other_local_wireless_networks", []):
                    ssid = str(net.get("_name", ""))
                    if ssid in _REDACTED:
                        continue
                    m = re.match(r"\s*(-?\d+)", str(net.get("spairport_signal_noise", "")))
                    sec = str(net.get("spairport_security_mode", ""))
                    out.append(
                        ScanResult(
                            ssid=ssid,
                            bssid="",
                            signal_dbm=int(m.group(1)) if m else -100,
                            security=_security(sec),
                            frequency_mhz=None,
                        )
                    )
        return sorted(out, key=lambda s: s.signal_dbm, reverse=True)

    def _preferred(self, iface: str) -> list[str]:
        r = self._tool("networksetup", "-listpreferredwirelessnetworks", iface)
        return [ln.strip() for ln in r.stdout.splitlines()[1:] if ln.strip()] if r.ok else []

    def _gateway(self) -> str | None:
        r = self._tool("ipconfig", "getoption", self.interface(), "router")
        gw = r.stdout.strip()
        return gw if r.ok and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", gw) else None

    def _set_network(self, ssid: str, passphrase: str | None, timeout: float, cancel=None) -> None:
        argv = ["networksetup", "-setairportnetwork", self.interface(), ssid]
        if passphrase:
            argv.append(passphrase)
        r = self._tool(*argv, timeout=timeout, secrets=(passphrase or "",), cancel=cancel)
        text = r.output
        if "Could not find network" in text:
            raise NetworkNotFound(
                f"The network '{ssid}' was not found. Make sure the device is powered, in setup "
                "mode and near this computer, then scan again.",
                ssid=ssid,
            )
        if not r.ok or "Failed to join" in text or "Error" in text:
            raise JoinError(
                f"macOS could not join '{ssid}' (wrong password, or the device "
                f"went away): {_run.first_error_line(text)}",
                ssid=ssid,
            )

    def _join(
        self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback
    ) -> str | None:
        iface = self.interface()
        # Only a preferred-network entry that *we* add is ours to remove afterwards.
        profile = None if req.ssid in self._preferred(iface) else req.ssid
        if profile is not None:
            on_profile(profile)
        self._set_network(
            req.ssid, req.passphrase, max(5.0, deadline.remaining() + 5), cancel=deadline.cancel
        )
        return profile

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        if home is None or not home.ssid:
            raise ReturnHomeError(
                "The home network's name is unknown (macOS hides it): set it in the station's "
                "settings."
            )
        password = self.home_passphrase(home.ssid) if self.home_passphrase else None
        deadline = Deadline(timeout)
        try:
            self._set_network(home.ssid, password, timeout + 5)
        except WifiError as exc:
            raise ReturnHomeError(f"macOS could not rejoin {home.describe()}: {exc}") from exc
        if self._wait_for_gateway(deadline) is None:
            raise ReturnHomeError(
                f"Rejoined {home.describe()} but got no address there within {timeout:.0f} s."
            )

    def remove_profile(self, profile: str) -> None:
        r = self._tool("networksetup", "-removepreferredwirelessnetwork", self.interface(), profile)
        text = r.output
        if (r.ok and "Error" not in text) or "not found" in text.lower():
            return
        raise CommandError(
            f"macOS could not remove '{profile}' from the preferred WiFi networks "
            f"({_run.first_error_line(text)}). Remove it in System Settings > Wi-Fi.",
            tool="networksetup",
            returncode=r.returncode,
        )


def _security(mode: str) -> str:
    m = mode.lower()
    if "none" in m or not m:
        return "open"
    if "wpa3" in m and "wpa2" in m:
        return "WPA2/WPA3"
    if "wpa3" in m:
        return "WPA3"
    if "wpa2" in m:
        return "WPA2"
    if "wpa" in m:
        return "WPA"
    if "wep" in m:
        return "WEP"
    return mode
