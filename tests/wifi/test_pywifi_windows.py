"""pywifi backend's Windows path, with pywifi's Interface replaced by a fake (no wlanapi
here). What it proves: the profile uses CCMP, the passphrase is XML-escaped before pywifi
pastes it into its XML, SSIDs pywifi cannot carry are refused, only our one profile is ever
removed, and remove_all_network_profiles() is never called."""

from __future__ import annotations

import pytest

from station.wifi.base import Deadline, HomeNetwork, JoinRequest
from station.wifi.errors import JoinError, JoinTimeout, ReturnHomeError
from station.wifi.pywifi_backend import _WlanDriver, import_pywifi

pytestmark = pytest.mark.timeout(20)

pywifi = import_pywifi()
const = pywifi.const


class FakeIface:
    def __init__(self, connects: bool = True):
        self.connects = connects
        self.profiles: dict[str, object] = {"Home Net": object()}
        self.connected = False
        self.calls: list[tuple[str, str]] = []

    def name(self) -> str:
        return "Intel(R) Wi-Fi 6 AX201 160MHz"

    def add_network_profile(self, p):
        self.calls.append(("add", p.ssid))
        self.profiles[p.ssid] = p
        return p

    def network_profiles(self):
        out = []
        for name in self.profiles:
            prof = pywifi.Profile()
            prof.ssid = name
            out.append(prof)
        return out

    def connect(self, p):
        self.calls.append(("connect", p.ssid))
        self.connected = self.connects and p.ssid in self.profiles

    def status(self):
        return const.IFACE_CONNECTED if self.connected else const.IFACE_DISCONNECTED

    def remove_network_profile(self, p):
        self.calls.append(("remove", p.ssid))
        self.profiles.pop(p.ssid, None)

    def remove_all_network_profiles(self):
        raise AssertionError("must never be called: it deletes every profile of the user")


def driver(iface):
    return _WlanDriver(pywifi, None, scan_wait=0, poll=0.01, iface=iface)


def test_profile_is_ccmp_with_escaped_key_and_only_ours_is_removed():
    iface = FakeIface()
    d = driver(iface)
    seen = []
    name = d.join(JoinRequest("esp32-dht11-Setup-12AB34", "a<b>&c\"d'e"), Deadline(2), seen.append)
    p = iface.profiles[name]
    assert seen == [name] == ["esp32-dht11-Setup-12AB34"]
    assert p.cipher == const.CIPHER_TYPE_CCMP and p.akm == [const.AKM_TYPE_WPA2PSK]
    assert p.key == "a&lt;b&gt;&amp;c&quot;d&apos;e"
    d.remove_profile(name)
    assert list(iface.profiles) == ["Home Net"]
    d.return_home(HomeNetwork(ssid="Home Net", profile="Home Net"), Deadline(2))
    assert iface.calls[-1] == ("connect", "Home Net")


def test_ssid_with_xml_characters_is_refused_before_touching_profiles():
    iface = FakeIface()
    with pytest.raises(JoinError, match="Use the netsh backend"):
        driver(iface).join(JoinRequest("a&b", "12345678"), Deadline(2), lambda _p: None)
    assert iface.calls == []


def test_never_connected_is_a_timeout_and_home_must_be_known():
    d = driver(FakeIface(connects=False))
    with pytest.raises(JoinTimeout, match="did not connect"):
        d.join(JoinRequest("esp32-x", "12345678"), Deadline(0.1), lambda _p: None)
    with pytest.raises(ReturnHomeError, match="settings"):
        d.return_home(None, Deadline(0.1))
