"""Backend selection per OS, with reasons; override by name; the registry."""

from __future__ import annotations

import pytest

from station.wifi import registry
from station.wifi.errors import WifiError, WifiUnavailable
from station.wifi.manual import ManualBackend
from station.wifi.select import select_backend

pytestmark = pytest.mark.timeout(20)

PORTS = "Hardware Port: Wi-Fi\nDevice: en0\nEthernet Address: 3c:22:fb:aa:bb:cc\n"


def test_linux_desktop_picks_networkmanager(fake_nm):
    sel = select_backend(system="linux")
    assert sel.name == "networkmanager"
    assert "NetworkManager is running" in sel.reason and "wlan0" in sel.reason


def test_plain_wpa_supplicant_picks_pywifi_and_says_why_not_nm(fake_bin, wpa):
    wpa.start([])
    sel = select_backend(system="linux", options={"ctrl_dir": wpa.ctrl_dir})
    assert sel.name == "pywifi"
    assert "wpa_supplicant runs without NetworkManager" in sel.reason
    assert "not networkmanager" in sel.reason and "nmcli" in sel.reason


def test_nothing_automatic_falls_to_manual_with_reasons(fake_bin, tmp_path):
    sel = select_backend(system="linux", options={"ctrl_dir": str(tmp_path)})
    assert sel.name == "manual"
    assert [n for n, _a in sel.considered] == ["networkmanager", "pywifi", "manual"]
    backend = sel.create(confirm=lambda _i: True, device_address="127.0.0.2", interface="x")
    assert isinstance(backend, ManualBackend) and backend.device_address == "127.0.0.2"


def test_macos_and_windows(fake_bin):
    fake_bin.replay("networksetup", [{"argv": ["-listallhardwareports"], "stdout": PORTS}])
    assert select_backend(system="darwin").name == "macos"
    fake_bin.replay(
        "netsh",
        [
            {
                "argv": ["wlan", "show", "interfaces"],
                "rc": 1,
                "stdout": "The Wireless AutoConfig Service (wlansvc) is not running.\r\n",
            }
        ],
    )
    sel = select_backend(system="win32")
    assert sel.name != "netsh" and "wlansvc" in sel.reason


def test_override_by_name(fake_nm):
    assert select_backend("manual", system="linux").name == "manual"
    with pytest.raises(WifiUnavailable, match="'macos' cannot work here"):
        select_backend("macos", system="linux")
    with pytest.raises(WifiError, match=r"Unknown WiFi backend 'bogus'.*networkmanager"):
        select_backend("bogus", system="linux")


def test_registering_a_backend_is_one_line(monkeypatch):
    monkeypatch.setattr(registry, "_BACKENDS", dict(registry._BACKENDS))
    registry.register("simulated", "station.wifi.manual:ManualBackend")
    assert registry.backend_class("simulated") is ManualBackend
    assert select_backend("simulated", system="linux").name == "simulated"
