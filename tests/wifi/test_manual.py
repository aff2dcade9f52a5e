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


# -- where the device answers: the joined network's gateway ---------------------------------

import http.server  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402

from station import netinfo  # noqa: E402
from station.sim.air import Air, write_json  # noqa: E402
from station.sim.wifi import ROUTER_STAND_IN, AirGatewayLookup  # noqa: E402
from station.wifi.base import DeviceAddress  # noqa: E402
from station.wifi.select import select_backend  # noqa: E402

PROC_NET_ROUTE = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
    "wlan0\t00000000\t0104A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    "wlan0\t0004A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
)
IP_ROUTE = "default via 192.168.4.1 dev wlan0 proto dhcp src 192.168.4.2 metric 600\n"
MACOS_ROUTE = """   route to: default
destination: default
       mask: default
    gateway: 192.168.4.1
  interface: en0
"""
WINDOWS_ROUTE_PRINT = """===========================================================================
IPv4 Route Table
===========================================================================
Active Routes:
Network Destination        Netmask          Gateway       Interface  Metric
          0.0.0.0          0.0.0.0      192.168.4.1      192.168.4.2     35
          0.0.0.0          0.0.0.0    192.168.29.1    192.168.29.57     50
        127.0.0.0        255.0.0.0         On-link         127.0.0.1    331
"""
IPCONFIG = """Wireless LAN adapter Wi-Fi:

   Connection-specific DNS Suffix  . :
   IPv4 Address. . . . . . . . . . . : 192.168.4.2
   Default Gateway . . . . . . . . . : fe80::1%12
                                       192.168.4.1
"""


def test_gateway_parsers_read_each_os_format():
    assert netinfo.parse_proc_net_route(PROC_NET_ROUTE) == "192.168.4.1"  # lowest metric
    assert netinfo.parse_ip_route(IP_ROUTE) == "192.168.4.1"
    assert netinfo.parse_macos_route(MACOS_ROUTE) == "192.168.4.1"
    assert netinfo.parse_windows_route_print(WINDOWS_ROUTE_PRINT) == "192.168.4.1"
    assert netinfo.parse_ipconfig(IPCONFIG) == "192.168.4.1"


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "\x00\xff", "Iface\nwlan0 zz", "default via nowhere", "gateway: 999.1.1.1"],
)
def test_gateway_parsers_never_crash_on_junk(text):
    for parse in (
        netinfo.parse_proc_net_route,
        netinfo.parse_ip_route,
        netinfo.parse_macos_route,
        netinfo.parse_windows_route_print,
        netinfo.parse_ipconfig,
    ):
        assert parse(text) is None


def test_default_gateway_on_an_unknown_system_is_none():
    assert netinfo.default_gateway("plan9") is None


class _DeviceAPI(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"chip_id": "A4CF12EF5678"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_a):
        pass


@pytest.fixture
def device_api():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DeviceAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_issue_reproduction_joins_at_the_joined_networks_gateway(tmp_path, device_api):
    """`select_backend('manual').create(confirm=…).connect(ssid, '12345678')` used to say
    "needs the device address setting". On a simulated site the laptop's gateway comes
    from the air: the person joins the AP when asked, the device answers there."""
    air = Air(tmp_path / "air")
    air.add_home_network("MyHomeWiFi", "mypassword")
    air.place_laptop("MyHomeWiFi")
    ap = "esp32-dht11-Setup-EF5678"
    write_json(
        air.root / "aps" / "A4CF12EF5678.json",
        {
            "ssid": ap,
            "bssid": "A4:CF:12:EF:56:79",
            "passphrase": "12345678",
            "chip_id": "A4CF12EF5678",
            "api": f"127.0.0.1:{device_api}",
        },
    )
    asked = []

    def person(ins):  # joins the network the station names, then confirms
        asked.append(ins)
        air.move_laptop(ins.ssid or "MyHomeWiFi", ins.passphrase)
        return True

    backend = select_backend("manual").create(confirm=person, gateway_lookup=AirGatewayLookup(air))
    backend.usual_home = "MyHomeWiFi"
    with Excursion(backend) as trip:
        link = trip.connect(ap, "12345678", timeout=5)
        assert link.device == DeviceAddress("127.0.0.1", device_api)
        assert air.laptop().ssid == ap
    assert [i.step for i in asked] == [2, 4]
    assert "MyHomeWiFi" in asked[1].text  # sent back to the home it was on
    assert air.laptop().ssid == "MyHomeWiFi"


def test_the_os_gateway_is_asked_and_192_168_4_1_is_the_fallback(monkeypatch):
    seen: list[DeviceAddress] = []

    def probe(addr):
        seen.append(addr)
        return True  # no traffic: the probe only records where it would ask

    backend = ManualBackend(lambda _i: True, probe=probe)
    monkeypatch.setattr(netinfo, "default_gateway", lambda system=None: "10.0.0.1")
    backend.connect("esp32-dht11-Setup-EF5678", "12345678", timeout=1)
    monkeypatch.setattr(netinfo, "default_gateway", lambda system=None: None)
    backend.connect("esp32-dht11-Setup-EF5678", "12345678", timeout=1)
    assert seen == [DeviceAddress("10.0.0.1"), DeviceAddress("192.168.4.1")]


def test_not_connected_yet_is_asked_again_with_the_seed_message():
    asked = []
    backend = ManualBackend(
        lambda ins: asked.append(ins) or True,
        gateway_lookup=lambda: DeviceAddress("127.0.0.1", 9),
        probe=lambda _a: len(asked) >= 2,  # the device answers once they really joined
        check_timeout=0.2,
        poll_interval=0.05,
    )
    backend.connect("esp32-x", "12345678", timeout=5)
    assert len(asked) == 2 and asked[0].problem is None
    assert asked[1].problem and asked[1].text.startswith(
        "Cannot reach device. Make sure you're connected to esp32-x"
    )


def test_air_gateway_lookup_never_sends_the_backend_off_loopback(tmp_path):
    air = Air(tmp_path / "air")
    lookup = AirGatewayLookup(air)
    assert lookup() == ROUTER_STAND_IN  # on no network
    air.add_home_network("MyHomeWiFi", "mypassword")
    air.place_laptop("MyHomeWiFi")
    assert lookup() == ROUTER_STAND_IN and ROUTER_STAND_IN.host == "127.0.0.1"
    write_json(
        air.root / "aps" / "A4CF12EF5678.json",
        {
            "ssid": "esp32-dht11-Setup-EF5678",
            "bssid": "A4:CF:12:EF:56:79",
            "passphrase": "12345678",
            "chip_id": "A4CF12EF5678",
            "api": "127.0.0.1:4321",
        },
    )
    with pytest.raises(PermissionError):
        air.move_laptop("esp32-dht11-Setup-EF5678", "wrong-pass")
    assert air.laptop().ssid == "MyHomeWiFi"  # a wrong password moves nothing
    air.move_laptop("esp32-dht11-Setup-EF5678", "12345678")
    assert lookup() == DeviceAddress("127.0.0.1", 4321)


def test_a_default_route_over_another_adapter_still_finds_the_seed_address(monkeypatch):
    """Ethernet plugged in: the OS's default gateway is the wired router, while the WiFi is
    on the device's network; the device is then found at the seed's 192.168.4.1."""
    seen: list[DeviceAddress] = []

    def probe(addr):
        seen.append(addr)
        return addr.host == "192.168.4.1"  # no traffic: only the device answers here

    monkeypatch.setattr(netinfo, "default_gateway", lambda system=None: "192.168.29.1")
    backend = ManualBackend(lambda _i: True, probe=probe, poll_interval=0.01)
    link = backend.connect("esp32-dht11-Setup-EF5678", "12345678", timeout=2)
    assert link.device == DeviceAddress("192.168.4.1")
    assert seen[0] == DeviceAddress("192.168.29.1")  # the joined network's gateway first
