"""The simulated radio ("air"): a folder of small JSON files shared by processes.

Simulated devices (the real firmware on the MicroPython unix port, host board
`firmware/board/host_board.py`) announce their setup APs here and look up home
networks here; the station side (tests, the demo, a simulated WiFi backend)
creates home networks, finds setup APs and flips per-device controls.

Layout (all names relative to the air folder)::

    networks/<hex of the SSID's UTF-8 bytes>.json   one home network (station side writes)
        {"ssid": "MyHomeWiFi",            # 1-32 bytes
         "password": "mypassword",        # "" = open network
         "bssid": "02:00:00:8A:1B:2C",
         "rssi": -51,                     # what a device's scan reports
         "ip_prefix": "192.168.29.",      # devices get ip_prefix + 100..249
         "reach": {"192.168.29.91:1883": "127.0.0.1:41883"},
            # TCP destinations reachable from this network, as "host:port" the
            # device dials -> the loopback "host:port" that really answers. A
            # destination not listed is unreachable from this network.
         "laptop": ["192.168.29.91:1883"]}
            # Optional: destinations served by the station's laptop, reachable
            # only while laptop.json says the laptop is on this network.

    aps/<CHIP_ID>.json                              a device's setup AP (the device writes)
        {"ssid": "esp32-dht11-Setup-EF5678", "bssid": "A4:CF:12:EF:56:79",
         "security": "WPA2-PSK", "passphrase": "12345678",
         "chip_id": "A4CF12EF5678",
         "api": "127.0.0.1:43121"}       # where this device's 192.168.4.1:80 is served
        Present exactly while the AP is up. The launcher also removes it when the
        device process ends, whatever the reason.

    devices/<CHIP_ID>/control.json                  per-device controls (station side writes)
        {"dht_fail": false,               # the DHT11 stops answering (sensor_timeout)
         "button_held": false}            # the BOOT button is held (read at power-on)
    devices/<CHIP_ID>/led.json                      the LED (the device writes)
        {"on": true, "changes": 7}
    devices/<CHIP_ID>/flash/                        the device's flash (config.json)
    devices/<CHIP_ID>/rtc_memory                    survives a reboot, cleared at power-on
    devices/<CHIP_ID>/device.log                    the device's console (launcher)

    laptop.json                                     the station laptop's WiFi (the
                                                    simulated WiFi backend writes;
                                                    place_laptop() sets the start)
        {"ssid": "MyHomeWiFi",            # the network it is on; null = on none (mid-switch,
                                          # after a failed join, or a deleted active profile)
         "bssid": "02:00:00:4d:79:48",    # lower-case; null with ssid null
         "profile": null,                 # the profile it is on: "esp32-station-tmp-..." =
                                          # a temporary one; null = a home network
         "usual": "MyHomeWiFi",           # the home network it was last on: where the
                                          # "OS" goes when told to pick its usual network
         "profiles": {"esp32-station-tmp-1a2b3c4d":
                        {"ssid": "esp32-dht11-Setup-EF5678", "bssid": ""}},
                                          # temporary profiles that exist now (no passwords)
         "switches": 4}                   # completed joins and returns, for benchmarks
        With the manual WiFi backend the person moves the laptop instead
        (Air.move_laptop: a home network or a setup AP, as picked in the OS's WiFi
        settings), and Air.laptop_gateway() is its gateway, as the OS would tell.
        Absent: the laptop is on no network and holds no temporary profile. It
        outlives the station process, so a restarted station (recover()) finds the
        laptop where a crashed one left it.

Every file is replaced atomically (temp file + rename), so readers in other
processes see the old content or the new, never half. Each file has one writer.
Readers skip files that vanish or do not parse.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_IP_PREFIX = "192.168.29."


@dataclass(frozen=True)
class HomeNetwork:
    ssid: str
    password: str = ""
    bssid: str = ""
    rssi: int = -55
    ip_prefix: str = DEFAULT_IP_PREFIX
    reach: dict[str, str] = field(default_factory=dict)

    @property
    def secure(self) -> bool:
        return bool(self.password)


@dataclass(frozen=True)
class SetupAP:
    ssid: str
    bssid: str
    passphrase: str
    chip_id: str
    api: str | None  # "127.0.0.1:43121", None while the API is not served yet
    security: str = "WPA2-PSK"

    @property
    def rssi(self) -> int:
        """A made-up but stable signal strength (the host board's scan uses the same)."""
        return -45 - int(self.chip_id[-2:], 16) % 35

    @property
    def api_url(self) -> str:
        """Base URL standing in for http://192.168.4.1 of this device."""
        if not self.api:
            raise LookupError(f"{self.ssid} announces no API address")
        return f"http://{self.api}"


@dataclass(frozen=True)
class Laptop:
    """The station laptop's WiFi as the simulated backend leaves it (laptop.json)."""

    ssid: str | None = None
    bssid: str | None = None
    profile: str | None = None
    usual: str | None = None
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)
    switches: int = 0


def ssid_key(ssid: str) -> str:
    """File name stem of a home network: SSIDs may hold any byte, file names may not."""
    return ssid.encode("utf-8").hex()


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    """Replace `path` atomically with `obj` as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _reach_map(reach: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    # A plain list means "reachable at the same address" (loopback brokers in tests).
    pairs = reach.items() if isinstance(reach, Mapping) else ((r, r) for r in reach)
    out: dict[str, str] = {}
    for dest, target in pairs:
        for addr in (dest, target):
            host, sep, port = addr.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{addr!r} is not host:port")
        out[dest] = target
    return out


class Air:
    """One air folder. Cheap to create; holds no open files."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        for sub in ("networks", "aps", "devices"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # --- home networks (station side) ---------------------------------------------

    def add_home_network(
        self,
        ssid: str,
        password: str = "",
        *,
        reach: Mapping[str, str] | Iterable[str] = (),
        rssi: int = -55,
        bssid: str | None = None,
        ip_prefix: str = DEFAULT_IP_PREFIX,
        laptop: Iterable[str] = (),
    ) -> HomeNetwork:
        """Create or replace a home network. `reach`, `laptop`: see the module docstring."""
        if not 1 <= len(ssid.encode("utf-8")) <= 32:
            raise ValueError("an SSID is 1-32 bytes")
        if password and not (8 <= len(password) <= 63 and len(password.encode("utf-8")) <= 63):
            raise ValueError("a WPA2 password is 8-63 characters, at most 63 bytes (or empty)")
        key = ssid_key(ssid)
        net = HomeNetwork(
            ssid=ssid,
            password=password,
            bssid=bssid
            or "02:00:00:" + ":".join(key.upper().ljust(6, "0")[i : i + 2] for i in (0, 2, 4)),
            rssi=rssi,
            ip_prefix=ip_prefix,
            reach=_reach_map(reach),
        )
        served = sorted(laptop)
        unknown = [d for d in served if d not in net.reach]
        if unknown:
            raise ValueError(f"laptop destinations must also be in reach: {unknown}")
        write_json(self._network_path(ssid), {**net.__dict__, "laptop": served})
        return net

    def extend_reach(
        self, ssid: str, reach: Mapping[str, str], *, laptop: Iterable[str] = ()
    ) -> HomeNetwork:
        """More destinations for a home network, keeping all it has (its laptop-served
        ones too); `laptop`: those of them served from the laptop (see add_home_network)."""
        obj = read_json(self._network_path(ssid))
        net = _home(obj) if obj else None
        if obj is None or net is None:
            raise ValueError(f"no home network {ssid!r}")
        served = {str(d) for d in obj.get("laptop") or ()} | set(laptop)
        return self.add_home_network(
            net.ssid,
            net.password,
            reach={**net.reach, **reach},
            rssi=net.rssi,
            bssid=net.bssid,
            ip_prefix=net.ip_prefix,
            laptop=served,
        )

    def remove_home_network(self, ssid: str) -> None:
        """The network goes off the air: devices on it lose their link."""
        self._network_path(ssid).unlink(missing_ok=True)

    def home_network(self, ssid: str) -> HomeNetwork | None:
        obj = read_json(self._network_path(ssid))
        return _home(obj) if obj else None

    def home_networks(self) -> list[HomeNetwork]:
        nets = (_home(o) for o in self._read_all("networks"))
        return sorted((n for n in nets if n), key=lambda n: n.ssid)

    def _network_path(self, ssid: str) -> Path:
        return self.root / "networks" / f"{ssid_key(ssid)}.json"

    # --- setup APs (device side writes, station side reads) ----------------------

    def setup_aps(self) -> list[SetupAP]:
        """Setup APs on the air now, by chip id."""
        aps = (_ap(o) for o in self._read_all("aps"))
        return sorted((a for a in aps if a), key=lambda a: a.chip_id)

    def setup_ap(self, chip_id: str) -> SetupAP | None:
        obj = read_json(self.root / "aps" / f"{chip_id.upper()}.json")
        return _ap(obj) if obj else None

    def find_setup_ap(self, *, ssid: str | None = None, bssid: str | None = None) -> SetupAP | None:
        """The AP a WiFi backend would join for this SSID and/or BSSID."""
        for ap in self.setup_aps():
            if (ssid is None or ap.ssid == ssid) and (
                bssid is None or ap.bssid.upper() == bssid.upper()
            ):
                return ap
        return None

    def join_setup_ap(self, ssid: str, passphrase: str, *, bssid: str | None = None) -> SetupAP:
        """Check credentials like a WPA2 join would; raise LookupError / PermissionError."""
        ap = self.find_setup_ap(ssid=ssid, bssid=bssid)
        if ap is None:
            raise LookupError(f"no AP {ssid!r} on the air")
        if ap.passphrase != passphrase:
            raise PermissionError(f"wrong passphrase for {ssid!r}")
        return ap

    def wait_for_setup_ap(
        self, chip_id: str, timeout: float = 10.0, *, live: bool = True
    ) -> SetupAP:
        """Wait until the device's AP is up (and, if live, its API accepts TCP)."""
        deadline = time.monotonic() + timeout
        while True:
            ap = self.setup_ap(chip_id)
            if ap and ap.api and (not live or _accepts(ap.api)):
                return ap
            if time.monotonic() > deadline:
                raise TimeoutError(f"no setup AP from {chip_id} within {timeout:g} s")
            time.sleep(0.05)

    def wait_for_no_setup_ap(self, chip_id: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.setup_ap(chip_id) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"setup AP of {chip_id} still up after {timeout:g} s")
            time.sleep(0.05)

    def clear_setup_ap(self, chip_id: str) -> None:
        """Launcher only: the device process is gone, so is its AP."""
        (self.root / "aps" / f"{chip_id.upper()}.json").unlink(missing_ok=True)

    # --- the station laptop (simulated WiFi backend writes) ---------------------------

    def laptop(self) -> Laptop:
        """Where the laptop is; a fresh Laptop() (on no network) before the first write."""
        obj = read_json(self.root / "laptop.json")
        return (_laptop(obj) if obj else None) or Laptop()

    def set_laptop(self, laptop: Laptop) -> None:
        write_json(self.root / "laptop.json", laptop.__dict__)

    def place_laptop(self, ssid: str) -> Laptop:
        """Put the laptop on a home network, as a person would before starting the station
        (the demo's and tests' starting point). Temporary profiles are kept."""
        net = self.home_network(ssid)
        if net is None:
            raise LookupError(f"no home network {ssid!r} on the air")
        lap = replace(
            self.laptop(), ssid=net.ssid, bssid=net.bssid.lower(), profile=None, usual=net.ssid
        )
        self.set_laptop(lap)
        return lap

    def move_laptop(self, ssid: str, passphrase: str | None = None) -> Laptop:
        """The person joins `ssid` in the OS's WiFi settings (the manual flow on the
        simulated air): a device's setup AP or a home network. A setup AP checks the
        passphrase when one is given, as its WPA2 join would; home networks are saved
        in the OS (no password asked). Raises LookupError / PermissionError."""
        ap = self.find_setup_ap(ssid=ssid)
        if ap is None:
            return self.place_laptop(ssid)
        if passphrase is not None and passphrase != ap.passphrase:
            raise PermissionError(f"wrong passphrase for {ssid!r}")
        lap = replace(self.laptop(), ssid=ap.ssid, bssid=ap.bssid.lower(), profile=None)
        self.set_laptop(lap)
        return lap

    def laptop_gateway(self) -> tuple[str, int | None] | None:
        """Where the laptop's default gateway answers, as (host, port): on a setup AP the
        device's loopback API (its 192.168.4.1:80); on a home network its router
        (`ip_prefix` + "1", port None: no device answers there); None on no network."""
        lap = self.laptop()
        if lap.ssid is None:
            return None
        ap = self.find_setup_ap(ssid=lap.ssid, bssid=lap.bssid)
        if ap is not None:
            if not ap.api:
                return None  # the AP is up, its DHCP/API not yet
            host, _, port = ap.api.rpartition(":")
            return host, int(port)
        net = self.home_network(lap.ssid)
        if net is not None:
            return net.ip_prefix + "1", None
        return None  # the network went off the air (a device that rebooted)

    # --- per-device controls and observations -------------------------------------

    def device_dir(self, chip_id: str) -> Path:
        return self.root / "devices" / chip_id.upper()

    def flash_dir(self, chip_id: str) -> Path:
        return self.device_dir(chip_id) / "flash"

    def control(self, chip_id: str) -> dict[str, Any]:
        return read_json(self.device_dir(chip_id) / "control.json") or {}

    def set_control(self, chip_id: str, **values: bool) -> None:
        known = {"dht_fail", "button_held"}
        if unknown := set(values) - known:
            raise ValueError(f"unknown control(s): {', '.join(sorted(unknown))}")
        write_json(self.device_dir(chip_id) / "control.json", {**self.control(chip_id), **values})

    def set_dht_fail(self, chip_id: str, fail: bool = True) -> None:
        self.set_control(chip_id, dht_fail=fail)

    def set_button_held(self, chip_id: str, held: bool = True) -> None:
        self.set_control(chip_id, button_held=held)

    def led(self, chip_id: str) -> dict[str, Any]:
        """{"on": bool, "changes": int}; {} before the device first set its LED."""
        return read_json(self.device_dir(chip_id) / "led.json") or {}

    def _read_all(self, sub: str) -> Iterable[dict[str, Any]]:
        for path in (self.root / sub).glob("*.json"):
            obj = read_json(path)
            if obj is not None:
                yield obj


def _home(obj: dict[str, Any]) -> HomeNetwork | None:
    try:
        return HomeNetwork(
            ssid=str(obj["ssid"]),
            password=str(obj.get("password", "")),
            bssid=str(obj.get("bssid", "")),
            rssi=int(obj.get("rssi", -55)),
            ip_prefix=str(obj.get("ip_prefix", DEFAULT_IP_PREFIX)),
            reach=dict(obj.get("reach") or {}),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _ap(obj: dict[str, Any]) -> SetupAP | None:
    try:
        return SetupAP(
            ssid=str(obj["ssid"]),
            bssid=str(obj["bssid"]),
            passphrase=str(obj["passphrase"]),
            chip_id=str(obj["chip_id"]),
            api=obj.get("api"),
            security=str(obj.get("security", "WPA2-PSK")),
        )
    except (KeyError, TypeError):
        return None


def _laptop(obj: dict[str, Any]) -> Laptop | None:
    try:
        profiles = {
            str(name): {str(k): str(v) for k, v in info.items()}
            for name, info in (obj.get("profiles") or {}).items()
        }
        opt = {
            k: (None if obj.get(k) is None else str(obj[k]))
            for k in ("ssid", "bssid", "profile", "usual")
        }
        return Laptop(**opt, profiles=profiles, switches=int(obj.get("switches", 0)))
    except (AttributeError, TypeError, ValueError):
        return None


def _accepts(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False
