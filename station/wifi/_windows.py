"""Windows bits shared by the netsh and pywifi backends: the gateway of the WiFi adapter and
the profile XML.

The gateway comes from PowerShell's Get-NetRoute rather than from `ipconfig`/`netsh
interface` text, whose labels are translated ("Default Gateway", "Standardgateway", ...).
The adapter name travels in an environment variable, so no quoting of it into a command
string is ever needed.
"""

from __future__ import annotations

import ipaddress
import sys
from xml.sax.saxutils import escape

from station.wifi import _run

# Console tools on Windows write in the OEM code page; elsewhere (tests) UTF-8.
CONSOLE_ENCODING = "oem" if sys.platform == "win32" else "utf-8"

_GATEWAY_BY_ALIAS = (
    "$r = Get-NetRoute -AddressFamily IPv4 -DestinationPrefix '0.0.0.0/0' "
    "-InterfaceAlias $env:STATION_WIFI_IFACE -ErrorAction SilentlyContinue | "
    "Sort-Object RouteMetric | Select-Object -First 1; if ($r) { $r.NextHop }"
)
_GATEWAY_BY_DESCRIPTION = (
    "$a = Get-NetAdapter -InterfaceDescription $env:STATION_WIFI_IFACE "
    "-ErrorAction SilentlyContinue; "
    "if ($a) { $r = Get-NetRoute -AddressFamily IPv4 -DestinationPrefix '0.0.0.0/0' "
    "-InterfaceIndex $a.ifIndex -ErrorAction SilentlyContinue | "
    "Sort-Object RouteMetric | Select-Object -First 1; if ($r) { $r.NextHop } }"
)


def powershell_gateway_argv(by_description: bool = False) -> list[str]:
    script = _GATEWAY_BY_DESCRIPTION if by_description else _GATEWAY_BY_ALIAS
    return ["powershell", "-NoProfile", "-NonInteractive", "-Command", script]


def default_gateway(
    interface: str, *, by_description: bool = False, timeout: float = 15.0
) -> str | None:
    """IPv4 gateway of the default route through the adapter named `interface` (its alias,
    e.g. "Wi-Fi", or with by_description its description, which is what pywifi names it)."""
    r = _run.run(
        powershell_gateway_argv(by_description),
        timeout=timeout,
        env=_run.tool_env(STATION_WIFI_IFACE=interface),
        encoding=CONSOLE_ENCODING,
    )
    text = r.stdout.strip()
    if not r.ok or not text:
        return None
    try:
        gw = ipaddress.IPv4Address(text.splitlines()[0].strip())
    except ValueError:
        return None
    return None if gw.is_unspecified else str(gw)


def profile_xml(profile_name: str, ssid: str, passphrase: str) -> str:
    """A WLAN profile (WLAN_profile schema v1). The SSID goes in as <hex> (exact bytes, any
    characters) and as an escaped <name>; the passphrase is XML-escaped, so `<>&"'` work."""
    if passphrase:
        security = (
            "<authEncryption><authentication>WPA2PSK</authentication>"
            "<encryption>AES</encryption><useOneX>false</useOneX></authEncryption>"
            "<sharedKey><keyType>passPhrase</keyType><protected>false</protected>"
            f"<keyMaterial>{escape(passphrase)}</keyMaterial></sharedKey>"
        )
    else:
        security = (
            "<authEncryption><authentication>open</authentication>"
            "<encryption>none</encryption><useOneX>false</useOneX></authEncryption>"
        )
    return (
        '<?xml version="1.0"?>\n'
        '<WLANProfile xmlns="http://www.microsoft.com/networking/WLAN/profile/v1">'
        f"<name>{escape(profile_name)}</name>"
        f"<SSIDConfig><SSID><hex>{ssid.encode('utf-8').hex().upper()}</hex>"
        f"<name>{escape(ssid)}</name></SSID></SSIDConfig>"
        "<connectionType>ESS</connectionType><connectionMode>manual</connectionMode>"
        f"<MSM><security>{security}</security></MSM>"
        "</WLANProfile>\n"
    )
