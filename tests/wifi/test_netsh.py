"""netsh backend against fake netsh / powershell executables that check the exact argv and
replay output recorded on Windows 10/11 (English)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from station.wifi import Excursion, base
from station.wifi._windows import powershell_gateway_argv
from station.wifi.errors import CommandTimeout, JoinError, JoinTimeout, WifiUnavailable
from station.wifi.netsh import NetshBackend

pytestmark = pytest.mark.timeout(30)

SSID = "Café \"Setup\" <1>&'2'"
PASSWORD = "p@ss 'w\"rd' <&> ünï"
NS = {"w": "http://www.microsoft.com/networking/WLAN/profile/v1"}


def interfaces(ssid=None, bssid="24:0a:c4:12:34:56", profile=None, name="Wi-Fi 2"):
    head = (
        "\r\nThere is 1 interface on the system: \r\n\r\n"
        f"    Name                   : {name}\r\n"
        "    Description            : Intel(R) Wi-Fi 6 AX201 160MHz\r\n"
        "    GUID                   : 5c1d8a3e-2b6f-4d8a-9f0e-3a7b9c1d2e4f\r\n"
        "    Physical address       : 4c:79:6e:aa:bb:cc\r\n"
        "    Interface type         : Primary\r\n"
    )
    if ssid is None:
        body = (
            "    State                  : disconnected\r\n"
            "    Radio status           : Hardware On\r\n"
        )
    else:
        body = (
            "    State                  : connected\r\n"
            f"    SSID                   : {ssid}\r\n"
            f"    AP BSSID               : {bssid}\r\n"
            "    Band                   : 2.4 GHz\r\n"
            "    Channel                : 6\r\n"
            "    Network type           : Infrastructure\r\n"
            "    Radio type             : 802.11n\r\n"
            "    Authentication         : WPA2-Personal\r\n"
            "    Cipher                 : CCMP\r\n"
            "    Connection mode        : Profile\r\n"
            "    Receive rate (Mbps)    : 72.2\r\n"
            "    Transmit rate (Mbps)   : 72.2\r\n"
            "    Signal                 : 99% \r\n"
            f"    Profile                : {profile or ssid} \r\n"
        )
    return head + body + "\r\n    Hosted network status  : Not available\r\n"


def call(*argv, stdout="", stderr="", rc=0, sleep=0):
    return {"argv": list(argv), "stdout": stdout, "stderr": stderr, "rc": rc, "sleep": sleep}


def gw(address):
    return call(*powershell_gateway_argv()[1:], stdout=address + "\r\n")


TMP = "esp32-station-tmp-0a1b2c3d"
XML = r"re:filename=.*station-wlan-.*\.xml"


@pytest.fixture(autouse=True)
def known_profile_name(monkeypatch):
    monkeypatch.setattr(base, "temp_name", lambda: TMP)


def test_join_with_our_own_profile_then_home(fake_bin):
    iface = "interface=Wi-Fi 2"
    fake_bin.replay(
        "netsh",
        [
            call("wlan", "show", "interfaces", stdout=interfaces("Home Net")),  # adapter name
            call("wlan", "show", "interfaces", stdout=interfaces("Home Net")),  # remember home
            call(
                "wlan",
                "add",
                "profile",
                XML,
                iface,
                "user=current",
                stdout=f"Profile {TMP} is added on interface Wi-Fi 2.\r\n",
            ),
            call(
                "wlan",
                "connect",
                f"name={TMP}",
                iface,
                stdout="Connection request was completed successfully.\r\n",
            ),
            call("wlan", "show", "interfaces", stdout=interfaces(None)),  # still switching
            call("wlan", "show", "interfaces", stdout=interfaces(SSID, profile=TMP)),
            call(
                "wlan",
                "connect",
                "name=Home Net",
                iface,
                stdout="Connection request was completed successfully.\r\n",
            ),
            call("wlan", "show", "interfaces", stdout=interfaces("Home Net")),
            call(
                "wlan",
                "delete",
                "profile",
                f"name={TMP}",
                iface,
                stdout=f'Profile "{TMP}" is deleted from interface "Wi-Fi 2".\r\n',
            ),
        ],
    )
    fake_bin.replay(
        "powershell", [gw("127.0.0.2"), gw("127.0.0.1")], capture_env=["STATION_WIFI_IFACE"]
    )
    net = NetshBackend(poll_interval=0.01)
    with Excursion(net) as trip:
        link = trip.connect(SSID, PASSWORD, timeout=5)
        assert (link.device.host, link.profile) == ("127.0.0.2", TMP)
    fake_bin.assert_complete("netsh")
    fake_bin.assert_complete("powershell")
    # PowerShell got the adapter name through the environment, not inside the script.
    assert [e["env"]["STATION_WIFI_IFACE"] for e in fake_bin.log("powershell")] == ["Wi-Fi 2"] * 2


def test_profile_xml_carries_exact_ssid_and_escaped_password(fake_bin):
    fake_bin.replay(
        "netsh",
        [
            call(
                "wlan",
                "add",
                "profile",
                XML,
                "interface=Wi-Fi",
                "user=current",
                stdout="Profile format error 0x80420011:\r\n"
                "The network connection profile is corrupted.\r\n",
                rc=1,
            ),
        ],
    )
    net = NetshBackend("Wi-Fi")
    with pytest.raises(JoinError, match="did not accept the WiFi profile"):
        net.connect(SSID, PASSWORD, timeout=5)
    [entry] = fake_bin.log("netsh")
    assert entry["argv"][3].startswith("filename=") and entry["argv"][4:] == [
        "interface=Wi-Fi",
        "user=current",
    ]
    root = ET.fromstring(entry["file"].split("\n", 1)[1])
    ssid = root.find("w:SSIDConfig/w:SSID", NS)
    assert bytes.fromhex(ssid.find("w:hex", NS).text).decode() == SSID
    assert ssid.find("w:name", NS).text == SSID
    sec = root.find("w:MSM/w:security", NS)
    assert sec.find("w:authEncryption/w:encryption", NS).text == "AES"  # CCMP
    assert sec.find("w:sharedKey/w:keyMaterial", NS).text == PASSWORD
    assert root.find("w:name", NS).text == TMP
    assert not (fake_bin.path / entry["argv"][3][len("filename=") :]).exists()  # deleted


def test_join_timeout_when_windows_never_connects(fake_bin):
    fake_bin.replay(
        "netsh",
        [
            call("wlan", "add", "profile", XML, "interface=Wi-Fi", "user=current"),
            call(
                "wlan",
                "connect",
                f"name={TMP}",
                "interface=Wi-Fi",
                stdout="Connection request was completed successfully.\r\n",
            ),
        ]
        + [call("wlan", "show", "interfaces", stdout=interfaces(None, name="Wi-Fi"))] * 50,
    )
    net = NetshBackend("Wi-Fi", poll_interval=0.05)
    with pytest.raises(JoinTimeout, match="wrong password, or the device is out of range"):
        net.connect("esp32-x", "12345678", timeout=0.5)
    assert fake_bin.mismatches("netsh") == []


def test_other_unit_with_same_name_is_detected_by_bssid(fake_bin):
    fake_bin.replay(
        "netsh",
        [
            call("wlan", "add", "profile", XML, "interface=Wi-Fi", "user=current"),
            call("wlan", "connect", f"name={TMP}", "interface=Wi-Fi"),
            call(
                "wlan",
                "show",
                "interfaces",
                stdout=interfaces("esp32-dht11-Setup", name="Wi-Fi", bssid="24:0a:c4:99:99:99"),
            ),
        ],
    )
    with pytest.raises(JoinError, match="different unit"):
        NetshBackend("Wi-Fi").connect(
            "esp32-dht11-Setup", "12345678", bssid="24:0a:c4:12:34:56", timeout=5
        )
    fake_bin.assert_complete("netsh")


def test_location_permission_error_becomes_an_instruction(fake_bin):
    fake_bin.replay(
        "netsh",
        [
            call(
                "wlan",
                "show",
                "networks",
                "mode=bssid",
                "interface=Wi-Fi",
                rc=1,
                stdout="Network shell commands need location permission to "
                "access WLAN information. Turn on Location services on "
                "the Location page in Privacy & security settings.\r\n",
            )
        ],
    )
    with pytest.raises(WifiUnavailable, match="Privacy & security > Location"):
        NetshBackend("Wi-Fi").scan()


def test_scan_parses_bssid_listing(fake_bin):
    out = (
        "\r\nInterface name : Wi-Fi \r\nThere are 2 networks currently visible. \r\n\r\n"
        "SSID 1 : esp32-dht11-Setup-12AB34\r\n"
        "    Network type            : Infrastructure\r\n"
        "    Authentication          : WPA2-Personal\r\n"
        "    Encryption              : CCMP \r\n"
        "    BSSID 1                 : 24:0a:c4:12:34:56\r\n"
        "         Signal             : 96%  \r\n"
        "         Radio type         : 802.11n\r\n"
        "         Channel            : 6 \r\n\r\n"
        "SSID 2 : Home Net\r\n"
        "    Network type            : Infrastructure\r\n"
        "    Authentication          : WPA3-Personal\r\n"
        "    Encryption              : CCMP \r\n"
        "    BSSID 1                 : aa:bb:cc:00:00:01\r\n"
        "         Signal             : 40%  \r\n"
        "    BSSID 2                 : aa:bb:cc:00:00:02\r\n"
        "         Signal             : 60%  \r\n"
    )
    fake_bin.replay(
        "netsh", [call("wlan", "show", "networks", "mode=bssid", "interface=Wi-Fi", stdout=out)]
    )
    found = NetshBackend("Wi-Fi").scan()
    assert [(s.ssid, s.bssid, s.signal_percent, s.security) for s in found] == [
        ("esp32-dht11-Setup-12AB34", "24:0a:c4:12:34:56", 96, "WPA2"),
        ("Home Net", "aa:bb:cc:00:00:02", 60, "WPA3"),
        ("Home Net", "aa:bb:cc:00:00:01", 40, "WPA3"),
    ]


def test_sweep_deletes_only_our_profiles(fake_bin):
    listing = (
        "\r\nProfiles on interface Wi-Fi:\r\n\r\nGroup policy profiles (read only)\r\n"
        "---------------------------------\r\n    <None>\r\n\r\nUser profiles\r\n-------------\r\n"
        "    All User Profile     : Home Net\r\n"
        "    Current User Profile : esp32-station-tmp-0a1b2c3d\r\n"
    )
    fake_bin.replay(
        "netsh",
        [
            call("wlan", "show", "profiles", "interface=Wi-Fi", stdout=listing),
            call("wlan", "delete", "profile", "name=esp32-station-tmp-0a1b2c3d", "interface=Wi-Fi"),
        ],
    )
    assert NetshBackend("Wi-Fi").sweep_profiles() == ["esp32-station-tmp-0a1b2c3d"]
    fake_bin.assert_complete("netsh")


def test_hanging_netsh_is_killed(fake_bin):
    fake_bin.replay("netsh", [call("wlan", "show", "interfaces", sleep=30)])
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout):
        NetshBackend("Wi-Fi", command_timeout=0.5).current()
    assert time.monotonic() - t0 < 3
