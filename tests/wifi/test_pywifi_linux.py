"""pywifi backend on Linux: the real pywifi 1.1.12 code talking to a fake wpa_supplicant
control socket (fakes/wpa_supplicant.py) that answers as the real daemon does."""

from __future__ import annotations

import hashlib
import logging
import socket
import sys
import time

import pytest

from station.wifi import Excursion, Journal, recover
from station.wifi._linux import SystemDhcp, default_gateway, wpa_unescape
from station.wifi.base import Deadline
from station.wifi.errors import (
    DaemonTimeout,
    NetworkNotFound,
    NoAddress,
    WifiUnavailable,
    WrongPassphrase,
)
from station.wifi.pywifi_backend import PywifiBackend

pytestmark = pytest.mark.timeout(30)

wpa_fake = sys.modules["wifi_fakes_wpa_supplicant"]  # loaded by conftest.py

AP = wpa_fake.AP
DEVICE = "esp32-dht11-Setup-12AB34"
NASTY = 'Café "Setup" \\ <&>'


def device_ap(**kw):
    return AP(
        ssid=kw.pop("ssid", DEVICE),
        bssid=kw.pop("bssid", "24:0a:c4:12:34:56"),
        passphrase=kw.pop("passphrase", "12345678"),
        gateway=kw.pop("gateway", "127.0.0.2"),
        **kw,
    )


def home_ap():
    return AP(
        ssid="Home Net",
        bssid="aa:bb:cc:00:00:01",
        passphrase="home-pass-123",
        gateway="127.0.0.1",
        signal=-60,
        freq=5180,
    )


@pytest.fixture
def at_home(wpa):
    """wpa_supplicant with the saved home network (associated) and a saved, enabled
    'Office' network, as wpa_supplicant.conf would give them."""
    d = wpa.start(
        [
            home_ap(),
            device_ap(),
            device_ap(
                ssid=NASTY,
                bssid="24:0a:c4:00:00:02",
                passphrase="p@ss 'w\"rd' ünï",
                gateway="127.0.0.3",
            ),
        ]
    )
    home = d.add_saved("Home Net", "home-pass-123")
    d.add_saved("Office", "office-pass-1")
    d.add_saved("Old", "old-pass-123", enabled=False)
    d.associate_now(home)
    wpa.write_routes("127.0.0.1")
    return d


def test_pywifi_import_leaves_root_logging_alone():
    from station.wifi.pywifi_backend import import_pywifi

    root = logging.getLogger()
    before = list(root.handlers)
    import_pywifi()
    assert root.handlers == before


def test_socket_timeout_shim_is_local_to_pywifi(wpa, at_home):
    wpa.backend()
    from pywifi import _wifiutil_linux as wl

    assert wl.socket is not socket  # pywifi's module sees the shim...
    assert socket.getdefaulttimeout() is None  # ...the process does not
    assert wl.WifiUtil._connections[wpa.iface]["sock"].gettimeout() == 0.5


def test_connect_sends_exact_commands_and_finds_the_gateway(wpa, at_home):
    b = wpa.backend()
    probed = []
    link = b.connect(DEVICE, "12345678", timeout=5, probe=lambda a: probed.append(a.host) or True)
    assert link.device.host == "127.0.0.2" and probed == ["127.0.0.2"]
    assert b.current().ssid == DEVICE
    nid, tag = link.profile.split("/")
    psk = hashlib.pbkdf2_hmac("sha1", b"12345678", DEVICE.encode(), 4096, 32).hex()
    sent = at_home.commands
    i = sent.index("ADD_NETWORK")
    assert sent[i + 1 : i + 6] == [
        f'SET_NETWORK {nid} id_str "{tag}"',
        f"SET_NETWORK {nid} ssid {DEVICE.encode().hex()}",
        f"SET_NETWORK {nid} key_mgmt WPA-PSK",
        f"SET_NETWORK {nid} psk {psk}",  # the derived key: the passphrase never crosses
        f"SELECT_NETWORK {nid}",
    ]
    assert not any("12345678" in c for c in sent)
    assert "REMOVE_NETWORK all" not in sent
    assert wpa.dhcp_calls == [(wpa.iface, "127.0.0.1")]  # stale = the home gateway


def test_quotes_backslashes_and_non_ascii_reach_wpa_supplicant_exactly(wpa, at_home):
    b = wpa.backend()
    link = b.connect(NASTY, "p@ss 'w\"rd' ünï", bssid="24:0A:C4:00:00:02", timeout=5)
    assert link.device.host == "127.0.0.3"
    nid = link.profile.split("/")[0]
    net = at_home.networks[int(nid)]
    assert net.ssid == NASTY.encode() and net.bssid == "24:0a:c4:00:00:02"
    assert b.current().ssid == NASTY  # STATUS escapes it; we unescape it


def test_scan_uses_pywifi_and_decodes_escaped_ssids(wpa, at_home):
    at_home.aps.append(
        AP(
            ssid="WPA3 only",
            bssid="02:00:00:00:00:33",
            passphrase="x" * 8,
            flags="[SAE][ESS]",
            signal=-80,
        )
    )
    found = wpa.backend().scan()
    assert [s.ssid for s in found] == [DEVICE, NASTY, "Home Net", "WPA3 only"]
    assert found[0].security == "WPA2" and found[0].frequency_mhz == 2437
    assert found[-1].security == "WPA3"  # pywifi itself would call this open
    assert "SCAN" in at_home.commands


def test_wrong_passphrase(wpa, at_home):
    with pytest.raises(WrongPassphrase, match="rejected the WiFi password"):
        wpa.backend().connect(DEVICE, "87654321", timeout=5)


def test_access_point_not_found(wpa, at_home):
    t0 = time.monotonic()
    with pytest.raises(NetworkNotFound, match="esp32-dht11-Setup-FFFFFF"):
        wpa.backend().connect("esp32-dht11-Setup-FFFFFF", "12345678", timeout=0.5)
    assert time.monotonic() - t0 < 3


def test_silent_daemon_at_start_times_out(wpa):
    wpa.start([home_ap()], silent=True)
    t0 = time.monotonic()
    with pytest.raises(DaemonTimeout, match="did not answer 'PING'"):
        wpa.backend(reply_timeout=0.3)
    assert time.monotonic() - t0 < 2


def test_daemon_going_silent_mid_join_times_out_and_reconnects_later(wpa, at_home):
    b = wpa.backend(reply_timeout=0.3)
    at_home.silent_on = {"SELECT_NETWORK"}
    t0 = time.monotonic()
    with pytest.raises(DaemonTimeout, match="'SELECT_NETWORK'"):
        b.connect(DEVICE, "12345678", timeout=5)
    assert time.monotonic() - t0 < 2
    from pywifi import _wifiutil_linux as wl

    assert wpa.iface not in wl.WifiUtil._connections  # dropped: no stale reply can leak
    at_home.silent_on, at_home.silent = set(), False
    assert b.current().ssid == "Home Net"  # reopened; SELECT_NETWORK never took effect
    assert wpa.iface in wl.WifiUtil._connections


def test_going_home_restores_the_networks_select_network_disabled(wpa, at_home):
    b = wpa.backend()
    journal = Journal(wpa.route_path.parent / "journal.json")
    with Excursion(b, journal) as trip:
        trip.connect(DEVICE, "12345678", timeout=5)
        flags = {n: net.disabled for n, net in at_home.networks.items()}
        assert flags[1] is True  # 'Office' disabled by SELECT_NETWORK
    assert b.current().ssid == "Home Net"
    assert {n: net.disabled for n, net in at_home.networks.items()} == {0: False, 1: False, 2: True}
    assert sorted(at_home.networks) == [0, 1, 2]  # the temporary network is gone
    assert default_gateway(wpa.iface, wpa.route_path) == "127.0.0.1"
    assert journal.read() is None


def test_crash_leftover_is_swept_by_its_tag(wpa, at_home):
    b = wpa.backend()
    journal = Journal(wpa.route_path.parent / "journal.json")
    trip = Excursion(b, journal).__enter__()
    link = trip.connect(DEVICE, "12345678", timeout=5)
    b.close()  # "crash": no exit, the daemon keeps the network
    nid = int(link.profile.split("/")[0])
    assert nid in at_home.networks
    report = recover(wpa.backend(), journal)
    assert report.went_home and report.removed_profiles == [link.profile]
    assert nid not in at_home.networks and at_home.current == 0


def test_remove_profile_leaves_a_reused_id_alone(wpa, at_home):
    b = wpa.backend()
    b.remove_profile("1/esp32-station-tmp-deadbeef")  # id 1 is the user's 'Office'
    assert 1 in at_home.networks


def test_no_control_socket_is_unavailable(wpa):
    with pytest.raises(WifiUnavailable):
        wpa.backend()
    av = PywifiBackend.availability("linux", ctrl_dir=wpa.ctrl_dir)
    assert not av.ok and "no wpa_supplicant control sockets" in av.reason


def test_availability_with_a_daemon(wpa, at_home):
    av = PywifiBackend.availability("linux", ctrl_dir=wpa.ctrl_dir)
    assert av.ok and wpa.iface in av.reason


def test_wpa_unescape_matches_printf_encode():
    for raw in ["plain", 'q"uote\\', "tab\there", "ünï €", "\x1bx"]:
        assert wpa_unescape(wpa_fake.printf_encode(raw.encode())) == raw


# -- DHCP -------------------------------------------------------------------------------


def test_dhcp_waits_for_a_daemon_that_configures_the_route(wpa):
    wpa.write_routes("127.0.0.1")
    dhcp = SystemDhcp(grace=2, route_path=wpa.route_path, poll=0.01)
    import threading

    threading.Timer(0.1, wpa.write_routes, args=("127.0.0.2",)).start()
    dhcp(wpa.iface, Deadline(5), stale="127.0.0.1")
    assert default_gateway(wpa.iface, wpa.route_path) == "127.0.0.2"


def test_dhcp_runs_an_installed_one_shot_client(wpa, fake_bin, monkeypatch):
    monkeypatch.setenv("ROUTE_FILE", str(wpa.route_path))
    fake_bin.script(
        "dhcpcd",
        f"""
import os, sys
open(os.path.join({str(fake_bin.path)!r}, "dhcpcd.argv"), "w").write(repr(sys.argv[1:]))
open(os.environ["ROUTE_FILE"], "a").write(
    "{wpa.iface}\\t00000000\\t0200007F\\t0003\\t0\\t0\\t600\\t00000000\\t0\\t0\\t0\\n")
""",
    )
    SystemDhcp(grace=0.05, route_path=wpa.route_path, poll=0.01)(wpa.iface, Deadline(5), None)
    assert (fake_bin.path / "dhcpcd.argv").read_text() == repr(["-1", "-4", wpa.iface])
    assert default_gateway(wpa.iface, wpa.route_path) == "127.0.0.2"


def test_dhcp_without_any_client_says_what_to_install(wpa, fake_bin):
    with pytest.raises(NoAddress, match="none of dhcpcd, dhclient or udhcpc is installed"):
        SystemDhcp(grace=0.05, route_path=wpa.route_path, poll=0.01)(wpa.iface, Deadline(5), None)


def test_a_leftover_temporary_network_is_not_taken_for_home(wpa, at_home):
    b = wpa.backend()
    b.connect(DEVICE, "12345678", timeout=5)  # a crash, and recover() was skipped
    home = b.remember_home()
    assert home.ssid is None and home.profile is None
    assert home.details["enabled"] == ""  # the leftover is not something to re-enable
