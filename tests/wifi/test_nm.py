"""NetworkManager backend against a fake nmcli that models NetworkManager and checks argv."""

from __future__ import annotations

import time

import pytest

from station.wifi.errors import (
    CommandTimeout,
    JoinTimeout,
    NetworkNotFound,
    ReturnHomeError,
    WrongPassphrase,
)
from station.wifi.nm import NetworkManagerBackend, split_terse

pytestmark = pytest.mark.timeout(30)

# Spaces, both quotes, shell and XML metacharacters, non-ASCII: all must arrive unchanged.
NASTY_SSID = "Café \"Setup\" <1>&'2'"
NASTY_PASS = "p@ss 'w\"rd' <&> ünï"


def test_split_terse_unescapes_colons_and_backslashes():
    assert split_terse(r"yes:a\:b\\c:24\:0A\:C4") == ["yes", "a:b\\c", "24:0A:C4"]
    assert split_terse("::") == ["", "", ""]


def test_connect_passes_every_value_as_its_own_argv_item(fake_nm):
    fake_nm.add_ap(NASTY_SSID, NASTY_PASS, bssid="24:0a:c4:12:34:56", gateway="127.0.0.2")
    nm = NetworkManagerBackend()
    seen = []
    link = nm.connect(
        NASTY_SSID,
        NASTY_PASS,
        bssid="24:0A:C4:12:34:56",
        timeout=10,
        probe=lambda addr: seen.append(addr.host) or True,
    )
    assert link.device.host == "127.0.0.2"
    assert seen == ["127.0.0.2"]
    assert fake_nm.rejected == []
    add = next(a for a in fake_nm.log if a[:2] == ["connection", "add"])
    assert add == [
        "connection",
        "add",
        "save",
        "no",
        "type",
        "wifi",
        "ifname",
        "wlan0",
        "con-name",
        link.profile,
        "ssid",
        NASTY_SSID,
        "connection.autoconnect",
        "no",
        "ipv6.method",
        "ignore",
        "802-11-wireless.bssid",
        "24:0A:C4:12:34:56",
        "wifi-sec.key-mgmt",
        "wpa-psk",
        "wifi-sec.psk",
        NASTY_PASS,
    ]
    assert link.profile.startswith("esp32-station-tmp-")
    assert ["--wait", "10", "connection", "up", "id", link.profile] in fake_nm.log
    assert fake_nm.active_name == link.profile


def test_open_network_gets_no_security_settings(fake_nm):
    fake_nm.add_ap("esp32-open", None, bssid="24:0a:c4:00:00:09", gateway="127.0.0.3")
    link = NetworkManagerBackend().connect("esp32-open", "", timeout=5)
    add = next(a for a in fake_nm.log if a[:2] == ["connection", "add"])
    assert not any(a.startswith("wifi-sec") for a in add)
    assert link.device.host == "127.0.0.3"


def test_current_and_scan_parse_escaped_terse_output(fake_nm):
    fake_nm.add_ap(
        "esp32-dht11-Setup-12AB34",
        "12345678",
        bssid="24:0a:c4:12:34:56",
        gateway="127.0.0.2",
        signal=100,
    )
    fake_nm.add_ap(
        "Nachbar:WLAN \\ ü",
        "whatever1",
        bssid="11:22:33:44:55:66",
        gateway="127.0.0.9",
        signal=20,
        security="WPA1 WPA2",
    )
    nm = NetworkManagerBackend()
    cur = nm.current()
    assert (cur.ssid, cur.bssid, cur.profile) == (
        "Home Net",
        "aa:bb:cc:00:00:01",
        "0b7e3c52-5b7e-4a0e-9d7c-1f0d6c2b9a11",
    )
    found = nm.scan()
    assert [s.ssid for s in found] == ["esp32-dht11-Setup-12AB34", "Home Net", "Nachbar:WLAN \\ ü"]
    first = found[0]
    assert (first.bssid, first.signal_percent, first.security, first.frequency_mhz) == (
        "24:0a:c4:12:34:56",
        100,
        "WPA2",
        2437,
    )
    assert found[2].security == "WPA/WPA2"
    assert fake_nm.rejected == []


def test_wrong_passphrase_is_reported_as_such(fake_nm):
    fake_nm.add_ap(
        "esp32-dht11-Setup-12AB34", "12345678", bssid="24:0a:c4:12:34:56", gateway="127.0.0.2"
    )
    with pytest.raises(WrongPassphrase, match="rejected the WiFi password") as ei:
        NetworkManagerBackend().connect("esp32-dht11-Setup-12AB34", "87654321", timeout=5)
    assert "87654321" not in str(ei.value)


def test_missing_access_point_is_reported_as_not_found(fake_nm):
    with pytest.raises(NetworkNotFound, match=r"esp32-dht11-Setup-FFFFFF.*not found"):
        NetworkManagerBackend().connect("esp32-dht11-Setup-FFFFFF", "12345678", timeout=5)


def test_networkmanager_wait_expiry_becomes_join_timeout(fake_nm):
    fake_nm.add_ap("esp32-slow", "12345678", bssid="24:0a:c4:00:00:07", gateway="127.0.0.2")
    fake_nm.update(activation_delay=30)
    t0 = time.monotonic()
    with pytest.raises(JoinTimeout, match="within 1 s"):
        NetworkManagerBackend().connect("esp32-slow", "12345678", timeout=0.5)
    assert time.monotonic() - t0 < 5


def test_hanging_nmcli_is_killed_by_our_timeout(fake_nm):
    fake_nm.update(hang_on="device status")
    nm = NetworkManagerBackend(command_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"nmcli.*did not finish within"):
        nm.current()
    assert time.monotonic() - t0 < 3


def test_return_home_brings_up_the_remembered_profile_and_delete_removes_temp(fake_nm):
    fake_nm.add_ap("esp32-a", "12345678", bssid="24:0a:c4:00:00:01", gateway="127.0.0.2")
    nm = NetworkManagerBackend()
    home = nm.remember_home()
    link = nm.connect("esp32-a", "12345678", timeout=5)
    nm.return_home(home, timeout=5)
    assert fake_nm.active_name == "Home Net"
    assert [
        "--wait",
        "5",
        "connection",
        "up",
        "uuid",
        home.profile,
        "ifname",
        "wlan0",
    ] in fake_nm.log
    nm.remove_profile(link.profile)
    nm.remove_profile(link.profile)  # already gone: fine
    assert fake_nm.temp_connections() == []
    assert fake_nm.rejected == []


def test_return_home_failure_is_a_clear_error(fake_nm):
    nm = NetworkManagerBackend()
    home = nm.remember_home()
    fake_nm.update(aps=[])  # the home router went off
    with pytest.raises(ReturnHomeError, match="could not reconnect to 'Home Net'"):
        nm.return_home(home, timeout=2)


def test_sweep_deletes_only_our_leftovers(fake_nm):
    fake_nm.add_ap("esp32-a", "12345678", bssid="24:0a:c4:00:00:01", gateway="127.0.0.2")
    nm = NetworkManagerBackend()
    nm.connect("esp32-a", "12345678", timeout=5)
    nm.connect("esp32-a", "12345678", timeout=5)
    assert len(fake_nm.temp_connections()) == 2
    removed = nm.sweep_profiles()
    assert len(removed) == 2
    assert fake_nm.temp_connections() == []
    names = [c["name"] for c in fake_nm.state["connections"]]
    assert names == ["Home Net", "Wired connection 1"]


def test_availability_says_why(fake_nm):
    av = NetworkManagerBackend.availability("linux")
    assert av.ok and "wlan0" in av.reason
    fake_nm.update(running="stopped")
    av = NetworkManagerBackend.availability("linux")
    assert not av.ok and "not running" in av.reason
    assert not NetworkManagerBackend.availability("darwin").ok
