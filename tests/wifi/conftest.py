"""Fixtures for the WiFi tests: fake system tools first (and alone) on PATH, a stateful fake
nmcli, and a fake wpa_supplicant control socket for the real pywifi code.

PATH holds only the fake bin directory, so a real nmcli/netsh/dhclient on the test machine
can never be reached. Every address used is in 127.0.0.0/8.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FAKES = Path(__file__).parent / "fakes"


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"wifi_fakes_{name}", FAKES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


wpa_fake = _load("wpa_supplicant")


class FakeBin:
    """A directory of fake executables that is the whole PATH."""

    def __init__(self, path: Path):
        self.path = path

    def _install(self, tool: str, source: Path) -> None:
        exe = self.path / tool
        # -S: no site import, faster start; the fakes need only the standard library.
        exe.write_text(
            f"#!{sys.executable} -S\n" + source.read_text(encoding="utf-8"), encoding="utf-8"
        )
        exe.chmod(0o755)

    def replay(self, tool: str, calls: list[dict], capture_env: list[str] = ()) -> None:
        """`tool` will expect exactly these calls, in order (see fakes/replay.py)."""
        self._install(tool, FAKES / "replay.py")
        plan = {"next": 0, "calls": calls, "capture_env": list(capture_env)}
        (self.path / f"{tool}.plan.json").write_text(json.dumps(plan), encoding="utf-8")

    def log(self, tool: str) -> list[dict]:
        p = self.path / f"{tool}.log"
        if not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines()]

    def argvs(self, tool: str) -> list[list[str]]:
        return [e["argv"] for e in self.log(tool)]

    def mismatches(self, tool: str) -> list[dict]:
        p = self.path / f"{tool}.mismatch"
        if not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines()]

    def assert_complete(self, tool: str) -> None:
        """Every planned call was made, with exactly the planned argv, and nothing else."""
        assert self.mismatches(tool) == []
        plan = json.loads((self.path / f"{tool}.plan.json").read_text(encoding="utf-8"))
        assert plan["next"] == len(plan["calls"]), (
            f"{tool}: {len(plan['calls']) - plan['next']} planned call(s) never made: "
            f"{plan['calls'][plan['next'] :]}"
        )

    def script(self, tool: str, body: str) -> None:
        """A tiny custom fake (Python source after the shebang)."""
        exe = self.path / tool
        exe.write_text(f"#!{sys.executable} -S\n{body}", encoding="utf-8")
        exe.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBin:
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.setenv("PYTHONUTF8", "1")
    return FakeBin(path)


class FakeNM:
    """State of the fake NetworkManager (fakes/nmcli.py)."""

    def __init__(self, state_path: Path):
        self.state_path = state_path

    @property
    def state(self) -> dict:
        return json.loads(self.state_path.read_text(encoding="utf-8"))

    def update(self, **changes: Any) -> None:
        st = self.state
        st.update(changes)
        self.state_path.write_text(json.dumps(st, ensure_ascii=False), encoding="utf-8")

    def add_ap(
        self,
        ssid: str,
        psk: str | None,
        *,
        bssid: str,
        gateway: str,
        signal: int = 80,
        security: str = "WPA2",
        freq: int = 2437,
    ) -> None:
        st = self.state
        st["aps"].append(
            {
                "ssid": ssid,
                "bssid": bssid.upper(),
                "psk": psk,
                "gateway": gateway,
                "signal": signal,
                "security": security if psk else "",
                "freq": freq,
            }
        )
        self.update(aps=st["aps"])

    @property
    def log(self) -> list[list[str]]:
        return self.state["log"]

    @property
    def rejected(self) -> list[dict]:
        return self.state["rejected"]

    def calls(self) -> list[dict]:
        """Every call's begin and end marks, in the order they happened."""
        p = Path(str(self.state_path) + ".calls")
        if not p.exists():
            return []
        return [json.loads(ln) for ln in p.read_text(encoding="utf-8").splitlines()]

    def overlapping(self) -> list[list[str]]:
        """argv of each call that began while another was still running."""
        running: set[int] = set()
        found = []
        for mark in self.calls():
            if mark["what"] == "begin":
                if running:
                    found.append(mark["argv"])
                running.add(mark["pid"])
            else:
                running.discard(mark["pid"])
        return found

    @property
    def active_name(self) -> str | None:
        st = self.state
        return next((c["name"] for c in st["connections"] if c["uuid"] == st["active"]), None)

    def temp_connections(self) -> list[str]:
        return [
            c["name"]
            for c in self.state["connections"]
            if c["name"].startswith("esp32-station-tmp-")
        ]


HOME_UUID = "0b7e3c52-5b7e-4a0e-9d7c-1f0d6c2b9a11"


@pytest.fixture
def fake_nm(fake_bin: FakeBin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNM:
    """NetworkManager on wlan0, on the saved home network 'Home Net', with one device AP."""
    state = {
        "device": "wlan0",
        "running": "running",
        "active": HOME_UUID,
        "activations": 0,
        "connections": [
            {
                "name": "Home Net",
                "uuid": HOME_UUID,
                "ssid": "Home Net",
                "psk": "home-pass-123",
                "saved": True,
                "bssid": None,
            },
            {
                "name": "Wired connection 1",
                "uuid": "4c1d3a9e-0000-4000-8000-000000000001",
                "ssid": None,
                "psk": None,
                "saved": True,
                "bssid": None,
            },
        ],
        "aps": [
            {
                "ssid": "Home Net",
                "bssid": "AA:BB:CC:00:00:01",
                "psk": "home-pass-123",
                "gateway": "127.0.0.1",
                "signal": 70,
                "security": "WPA2",
                "freq": 5180,
            },
        ],
        "log": [],
        "rejected": [],
    }
    path = tmp_path / "nm-state.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    monkeypatch.setenv("FAKE_NM_STATE", str(path))
    exe = fake_bin.path / "nmcli"
    exe.write_text(
        f"#!{sys.executable} -S\n" + (FAKES / "nmcli.py").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    exe.chmod(0o755)
    return FakeNM(path)


class WpaEnv:
    """A fake wpa_supplicant plus the route table file the backend reads for the gateway."""

    def __init__(self, ctrl_dir: str, iface: str, route_path: Path):
        self.ctrl_dir = ctrl_dir
        self.iface = iface
        self.route_path = route_path
        self.daemon: Any = None
        self.dhcp_calls: list[tuple[str, str | None]] = []
        self.write_routes(None)

    def start(self, aps: list[Any], **kwargs: Any) -> Any:
        self.daemon = wpa_fake.FakeWpaSupplicant(self.ctrl_dir, self.iface, aps=aps, **kwargs)
        return self.daemon

    def write_routes(self, gateway: str | None) -> None:
        """/proc/net/route as the kernel writes it (little-endian hex)."""
        lines = [
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT"
        ]
        lines.append("eth9\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0")
        if gateway:
            import socket
            import struct

            gw = struct.unpack("<I", socket.inet_aton(gateway))[0]
            lines.append(f"{self.iface}\t00000000\t{gw:08X}\t0003\t0\t0\t600\t00000000\t0\t0\t0")
            lines.append(f"{self.iface}\t0000007F\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0")
        self.route_path.write_text("\n".join(lines) + "\n")

    def dhcp(self, iface: str, deadline: Any, stale: str | None) -> None:
        """Stands in for a DHCP daemon: the AP we are on hands out its gateway."""
        ap = self.daemon.ap()
        self.dhcp_calls.append((iface, stale))
        self.write_routes(ap.gateway if ap else None)

    def backend(self, **kwargs: Any) -> Any:
        from station.wifi.pywifi_backend import PywifiBackend

        opts = {
            "system": "linux",
            "ctrl_dir": self.ctrl_dir,
            "reply_timeout": 0.5,
            "scan_wait": 0.0,
            "dhcp": self.dhcp,
            "route_path": self.route_path,
            "poll_interval": 0.01,
        }
        opts.update(kwargs)
        return PywifiBackend(self.iface, **opts)


@pytest.fixture
def wpa(tmp_path: Path) -> Iterator[WpaEnv]:
    # AF_UNIX paths are limited to ~108 bytes: keep the control directory short.
    ctrl_dir = tempfile.mkdtemp(prefix="wpa", dir="/tmp")
    iface = "wt" + secrets.token_hex(3)  # pywifi binds /tmp/pywifi_<iface>: keep it unique
    env = WpaEnv(ctrl_dir, iface, tmp_path / "route")
    yield env
    if env.daemon is not None:
        env.daemon.stop()
    try:
        from pywifi import _wifiutil_linux as wl

        conn = wl.WifiUtil._connections.pop(iface, None)
        if conn:
            conn["sock"].close()
    except ImportError:
        pass
    for leftover in (f"/tmp/pywifi_{iface}",):
        if os.path.exists(leftover):
            os.remove(leftover)
    shutil.rmtree(ctrl_dir, ignore_errors=True)
