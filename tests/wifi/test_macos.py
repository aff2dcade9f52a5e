"""macOS backend against fake networksetup / ipconfig / system_profiler that check the exact
argv of each call and replay output recorded from real Macs (including failures that
still exit 0, and a hanging command)."""

from __future__ import annotations

import json
import time

import pytest

from station.wifi import Excursion, HomeNetwork
from station.wifi.errors import CommandTimeout, JoinError, NetworkNotFound, WifiError
from station.wifi.macos import MacOSBackend

pytestmark = pytest.mark.timeout(30)

PORTS = """\
Hardware Port: Ethernet Adapter (en4)
Device: en4
Ethernet Address: 3a:1f:aa:bb:cc:01

Hardware Port: Wi-Fi
Device: en0
Ethernet Address: 3c:22:fb:aa:bb:cc

VLAN Configurations
===================
"""
SSID = "Café \"Setup\" <1>&'2'"
PASSWORD = "p@ss 'w\"rd' <&> ünï"


def call(*argv, stdout="", stderr="", rc=0, sleep=0):
    return {"argv": list(argv), "stdout": stdout, "stderr": stderr, "rc": rc, "sleep": sleep}


def test_join_confirms_by_reaching_the_device_and_cleans_up(fake_bin):
    fake_bin.replay(
        "networksetup",
        [
            call("-listallhardwareports", stdout=PORTS),
            call("-getairportnetwork", "en0", stdout="Current Wi-Fi Network: Home Net\n"),
            call(
                "-listpreferredwirelessnetworks",
                "en0",
                stdout="Preferred networks on en0:\n\tHome Net\n\tOffice\n",
            ),
            call("-setairportnetwork", "en0", SSID, PASSWORD),  # success prints nothing
            call("-setairportnetwork", "en0", "Home Net"),  # keychain has the home password
            call(
                "-removepreferredwirelessnetwork",
                "en0",
                SSID,
                stdout=f"Removed {SSID} from the preferred networks list\n",
            ),
        ],
    )
    fake_bin.replay(
        "ipconfig",
        [
            call("getoption", "en0", "router", stdout="127.0.0.1\n"),  # stale: still the home lease
            call("getoption", "en0", "router", stdout="127.0.0.2\n"),
            call("getoption", "en0", "router", stdout="127.0.0.1\n"),  # back home
        ],
    )
    mac = MacOSBackend(poll_interval=0.01)
    answers = {"127.0.0.1": False, "127.0.0.2": True}  # only the device answers its API
    with Excursion(mac) as trip:
        link = trip.connect(SSID, PASSWORD, timeout=5, probe=lambda a: answers[a.host])
        assert link.device.host == "127.0.0.2"
        assert link.profile == SSID
    fake_bin.assert_complete("networksetup")
    fake_bin.assert_complete("ipconfig")


def test_already_preferred_network_is_not_removed_and_passwords_are_not_logged(fake_bin, caplog):
    caplog.set_level("DEBUG", logger="station.wifi")
    fake_bin.replay(
        "networksetup",
        [
            call(
                "-listpreferredwirelessnetworks",
                "en0",
                stdout="Preferred networks on en0:\n\tHome Net\n\tesp32-dht11-Setup-12AB34\n",
            ),
            call("-setairportnetwork", "en0", "esp32-dht11-Setup-12AB34", "12345678"),
            call("-setairportnetwork", "en0", "Home Net", "home-pass-123"),
        ],
    )
    fake_bin.replay(
        "ipconfig",
        [
            call("getoption", "en0", "router", stdout="127.0.0.2\n"),
            call("getoption", "en0", "router", stdout="127.0.0.1\n"),
        ],
    )
    mac = MacOSBackend(
        "en0", poll_interval=0.01, home_passphrase=lambda ssid: {"Home Net": "home-pass-123"}[ssid]
    )
    with Excursion(mac, home=HomeNetwork(ssid="Home Net")) as trip:
        assert trip.connect("esp32-dht11-Setup-12AB34", "12345678", timeout=5).profile is None
    fake_bin.assert_complete("networksetup")
    assert "-setairportnetwork en0 Home Net ***" in caplog.text  # the command was logged...
    assert "home-pass-123" not in caplog.text and "12345678" not in caplog.text  # ...redacted


def test_not_found_is_recognised_although_networksetup_exits_0(fake_bin):
    fake_bin.replay(
        "networksetup",
        [
            call("-listpreferredwirelessnetworks", "en0", stdout="Preferred networks on en0:\n"),
            call(
                "-setairportnetwork",
                "en0",
                "esp32-gone",
                "12345678",
                stdout="Could not find network esp32-gone.\n",
            ),
        ],
    )
    with pytest.raises(NetworkNotFound, match="esp32-gone"):
        MacOSBackend("en0").connect("esp32-gone", "12345678", timeout=5)
    fake_bin.assert_complete("networksetup")


def test_failed_join_message_keeps_the_password_out(fake_bin):
    fake_bin.replay(
        "networksetup",
        [
            call("-listpreferredwirelessnetworks", "en0", stdout="Preferred networks on en0:\n"),
            call(
                "-setairportnetwork",
                "en0",
                "esp32-x",
                "12345678",
                stdout="Failed to join network esp32-x.\nError: -3900  The operation couldn’t be "
                "completed. (com.apple.wifi.apple80211API.error error -3900.)\n",
            ),
        ],
    )
    with pytest.raises(JoinError, match="-3900") as ei:
        MacOSBackend("en0").connect("esp32-x", "12345678", timeout=5)
    assert "12345678" not in str(ei.value)


def test_redacted_ssid_needs_home_from_settings(fake_bin):
    fake_bin.replay(
        "networksetup",
        [
            call(
                "-getairportnetwork",
                "en0",
                stdout="You are not associated with an AirPort network.\n",
            ),
        ],
    )
    fake_bin.replay("ipconfig", [call("getifaddr", "en0", stdout="127.0.0.55\n")])
    with pytest.raises(WifiError, match="Enter your home network's name"):
        MacOSBackend("en0").remember_home()


def test_hanging_networksetup_is_killed(fake_bin):
    fake_bin.replay("networksetup", [call("-getairportnetwork", "en0", sleep=30)])
    t0 = time.monotonic()
    with pytest.raises(CommandTimeout):
        MacOSBackend("en0", command_timeout=0.5).current()
    assert time.monotonic() - t0 < 3


def test_scan_skips_redacted_names(fake_bin):
    data = {
        "SPAirPortDataType": [
            {
                "spairport_airport_interfaces": [
                    {
                        "_name": "en0",
                        "spairport_airport_other_local_wireless_networks": [
                            {
                                "_name": "esp32-dht11-Setup-12AB34",
                                "spairport_security_mode": "spairport_security_mode_wpa2_personal",
                                "spairport_signal_noise": "-41 dBm / -95 dBm",
                            },
                            {
                                "_name": "<redacted>",
                                "spairport_security_mode": "spairport_security_mode_none",
                                "spairport_signal_noise": "-70 dBm / -95 dBm",
                            },
                        ],
                    }
                ]
            }
        ]
    }
    fake_bin.replay(
        "system_profiler", [call("-json", "SPAirPortDataType", stdout=json.dumps(data))]
    )
    [only] = MacOSBackend("en0").scan()
    assert (only.ssid, only.signal_dbm, only.security) == ("esp32-dht11-Setup-12AB34", -41, "WPA2")
