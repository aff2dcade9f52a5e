"""Manual backend: the seed's step 2 and step 4 texts, confirmation, and the seed's
"Cannot reach device" message when the person says they joined but the device is silent."""

from __future__ import annotations

import pytest

from station.wifi import Excursion, HomeNetwork
from station.wifi.errors import Cancelled, DeviceUnreachable, WifiNotSupported
from station.wifi.manual import CHECK_ACTION, CONNECT_ACTION, ManualBackend

pytestmark = pytest.mark.timeout(20)


def test_tells_exactly_which_network_then_checks_the_device_then_sends_home():
    asked = []
    backend = ManualBackend(
        lambda ins: asked.append(ins) or True, device_address="127.0.0.2", poll_interval=0.01
    )
    with Excursion(backend, home=HomeNetwork(ssid="MyHomeWiFi")) as trip:
        link = trip.connect(
            "esp32-dht11-Setup-12AB34", "12345678", timeout=2, probe=lambda a: a.host == "127.0.0.2"
        )
        assert link.device.host == "127.0.0.2"
    step2, step4 = asked
    assert step2.step == 2 and step2.action == CONNECT_ACTION == "I'm Connected to Device WiFi"
    assert "connect to esp32-dht11-Setup-12AB34 (password: 12345678)" in step2.text
    assert step4.step == 4 and step4.action == CHECK_ACTION == "Check Device Connection"
    assert "Please reconnect to your home WiFi" in step4.text and "MyHomeWiFi" in step4.text


def test_declining_step_2_cancels_and_does_not_ask_to_go_home():
    asked = []
    backend = ManualBackend(lambda ins: asked.append(ins.step) or False, device_address="127.0.0.2")
    with pytest.raises(Cancelled), Excursion(backend) as trip:
        trip.connect("esp32-x", "12345678", timeout=1)
    assert asked == [2, 4]  # we may have left: the person is asked to go back anyway


def test_silent_device_gives_the_seed_message():
    backend = ManualBackend(lambda _i: True, device_address="127.0.0.2", poll_interval=0.01)
    with pytest.raises(
        DeviceUnreachable, match=r"Cannot reach device\. Make sure you're connected to esp32-x"
    ):
        backend.connect("esp32-x", "12345678", timeout=0.2, probe=lambda _a: False)


def test_cannot_scan():
    with pytest.raises(WifiNotSupported, match="enter the device's network name"):
        ManualBackend(lambda _i: True).scan()
