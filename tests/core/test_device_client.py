"""station.device_client against the real firmware (simulated devices on the MicroPython
unix port) with the seed's bodies, and against a fake HTTP server for the answers a real
device never gives (malformed replies, lost responses)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from core_helpers import AP_SSID, CHIP
from fw_helpers import HOME_PASSWORD, HOME_SSID, SEED_BROKER
from support import free_port, wait_for

from station.device_client import (
    BrokerUnreachable,
    Cancelled,
    DeviceBusy,
    DeviceClient,
    DeviceInfo,
    DeviceProtocolError,
    DeviceRejected,
    DeviceUnreachable,
    HeardNetwork,
    HomeNetworkNotFound,
    RestartUnconfirmed,
    TrialError,
    TrialStatus,
    TrialTimeout,
    WrongWifiPassword,
)
from station.errors import StationError

SEED_MQTT = {
    "broker": SEED_BROKER,
    "port": 1883,
    "topic_prefix": "home/esp32_dht11_001",
    "node_name": "esp32_dht11_001",
}
TOKEN = "tok-0123456789-secret"
SEED_INFO = {
    "chip_id": "A4CF12EF5678",
    "model": "esp32-dht11",
    "firmware": "1.0.0",
    "mac": "A4:CF:12:EF:56:78",
    "state": "setup",
    "wifi_configured": False,
    "mqtt_configured": False,
}


# --- the real firmware -------------------------------------------------------------------


def test_info_is_the_seed_step_3_answer(client):
    assert client.info() == DeviceInfo(**SEED_INFO)
    assert client.info().ap_ssid == AP_SSID


def test_info_teaches_a_client_its_ap_name(device):
    c = DeviceClient(device.wait_for_setup_ap().api_url)
    assert c.ap_ssid is None
    c.info()
    assert c.ap_ssid == AP_SSID


def test_scan_and_idle_status(air, devices_on_air, client):
    nets = client.scan()
    assert HeardNetwork(HOME_SSID, -51, True) in nets
    assert HeardNetwork("OpenCafe", -60, False) in nets
    assert [n.rssi for n in nets] == sorted((n.rssi for n in nets), reverse=True)
    assert client.status() == TrialStatus("idle", None, "unknown")


@pytest.fixture
def devices_on_air(air):
    air.add_home_network(HOME_SSID, HOME_PASSWORD, rssi=-51)
    air.add_home_network("OpenCafe", "", rssi=-60)


def test_the_seed_sequence_sends_the_seed_bodies(home, device, client):
    client.send_wifi("MyHomeWiFi", "mypassword")
    # No MQTT config yet: the broker check is not waited for.
    s = client.wait_for_trial(10, poll=0.1)
    assert s.wifi == "connected" and s.ip.startswith("192.168.29.") and s.broker == "unknown"
    client.send_mqtt(**SEED_MQTT)
    s = client.wait_for_trial(10, poll=0.1)
    assert s.broker == "reachable"
    # What the device stored is exactly the seed's bodies (no username/password added).
    assert device.config() == {
        "wifi": {"ssid": "MyHomeWiFi", "password": "mypassword"},
        "mqtt": SEED_MQTT,
    }
    info = client.info()
    assert info.wifi_configured and info.mqtt_configured
    boots = device.boots
    client.restart()
    device.wait_for_reboot(boots)
    time.sleep(0.5)
    assert device.exit_codes.count(3) == 1  # one restart asked, one reboot done


def test_mqtt_credentials_are_sent_when_given(device, client):
    client.send_mqtt(**SEED_MQTT, username="esp32_dht11_001", password=TOKEN)
    assert device.config()["mqtt"] == {
        **SEED_MQTT,
        "username": "esp32_dht11_001",
        "password": TOKEN,
    }


def test_bad_input_is_rejected_by_the_device_with_its_field(device, client, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeviceRejected) as err:
        client.send_wifi("MyHomeWiFi", "pw-1234")  # 7 characters: WPA2 needs 8-63
    e = err.value
    assert (e.status, e.code, e.field) == (400, "invalid_field", "password")
    assert "8-63" in e.detail
    assert str(e).startswith("The device refused the home WiFi password:")
    assert "pw-1234" not in str(e) and "pw-1234" not in caplog.text
    with pytest.raises(DeviceRejected) as err:
        client.send_mqtt(**{**SEED_MQTT, "port": 0})
    assert err.value.field == "port" and "broker port" in str(err.value)
    assert device.config() is None  # nothing was stored


def test_wrong_home_password(home, device, client, caplog):
    caplog.set_level(logging.DEBUG)
    client.send_wifi(HOME_SSID, "not-the-password")
    with pytest.raises(WrongWifiPassword) as err:
        client.wait_for_trial(10, poll=0.1)
    assert err.value.status.wifi == "wrong_password"
    assert "'MyHomeWiFi'" in str(err.value) and "password is wrong" in str(err.value)
    assert "not-the-password" not in str(err.value) + caplog.text


def test_home_network_not_found(home, device, client):
    client.send_wifi("NoSuchNetwork", HOME_PASSWORD)
    with pytest.raises(HomeNetworkNotFound, match="cannot find 'NoSuchNetwork'"):
        client.wait_for_trial(10, poll=0.1)


def test_broker_unreachable_from_the_home_network(home, device, client):
    client.send_wifi(HOME_SSID, HOME_PASSWORD)
    client.send_mqtt(**{**SEED_MQTT, "broker": "10.9.9.9"})  # not reachable from that network
    with pytest.raises(BrokerUnreachable, match=r"10\.9\.9\.9:1883"):
        client.wait_for_trial(10, poll=0.1)


def test_device_not_running_is_unreachable_with_the_seed_message(device, client):
    client.info()
    device.stop()
    with pytest.raises(DeviceUnreachable) as err:
        client.status()
    assert str(err.value).startswith(
        "Cannot reach device. Make sure you're connected to esp32-dht11-Setup-EF5678"
    )
    assert isinstance(err.value, StationError)


def test_nothing_listening_is_unreachable_and_names_the_seed_ap():
    c = DeviceClient(f"http://127.0.0.1:{free_port()}", retries=1, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(DeviceUnreachable, match="connected to esp32-dht11-Setup-…"):
        c.info()
    assert time.monotonic() - started < 3  # short timeouts, few retries


# --- answers only a fake gives ------------------------------------------------------------


def js(obj: object, status: int = 200) -> tuple[int, str, bytes]:
    """A JSON reply for the fake device."""
    return status, "application/json", json.dumps(obj).encode()


def raw(data: bytes, status: int = 200, ctype: str = "application/json"):
    return status, ctype, data


MALFORMED = [
    ("GET", "/api/info", raw(b"<html>router login</html>", ctype="text/html"), "info"),
    ("GET", "/api/info", raw(b"<h1>Not Found</h1>", 404, "text/html"), "info"),
    ("GET", "/api/info", raw(b"[1, 2]"), "info"),
    ("GET", "/api/info", raw(b"{not json"), "info"),
    ("GET", "/api/info", js({**SEED_INFO, "chip_id": "EF5678"}), "info"),
    ("GET", "/api/info", js({**SEED_INFO, "mac": "A4CF12EF5678"}), "info"),
    ("GET", "/api/info", js({**SEED_INFO, "wifi_configured": 0}), "info"),
    ("GET", "/api/info", js({**SEED_INFO, "state": "asleep"}), "info"),
    ("GET", "/api/info", js({"error": "internal", "detail": "x"}, 500), "info"),
    ("GET", "/api/info", js({"pad": "x" * 70000}), "info"),
    ("GET", "/api/scan", js({"networks": [{"ssid": "x", "rssi": "-5", "secure": True}]}), "scan"),
    ("GET", "/api/scan", js({"nets": []}), "scan"),
    ("GET", "/api/status", js({"wifi": "dancing", "ip": None, "broker": "unknown"}), "status"),
    ("GET", "/api/status", js({"wifi": "connected", "ip": "300.1.1.1", "broker": "x"}), "status"),
    ("GET", "/api/status", js({"wifi": "connected", "broker": "unknown"}), "status"),
    ("POST", "/api/wifi", js({"ok": False}), "wifi"),
    ("POST", "/api/wifi", js({"ok": "true"}), "wifi"),
]


@pytest.mark.parametrize(("method", "path", "reply", "call"), MALFORMED)
def test_malformed_answers_are_protocol_errors(fake_device, fake_client, method, path, reply, call):
    fake_device.route(method, path, reply)
    c = fake_client()
    action = {
        "info": c.info,
        "scan": c.scan,
        "status": c.status,
        "wifi": lambda: c.send_wifi(HOME_SSID, HOME_PASSWORD),
    }[call]
    with pytest.raises(DeviceProtocolError) as err:
        action()
    assert "not like an esp32-dht11" in str(err.value) or "malformed" in str(err.value)
    assert AP_SSID in str(err.value)
    assert fake_device.count(method, path) == 1  # an answer, however bad, is not retried


def test_a_lost_get_is_retried(fake_device, fake_client):
    fake_device.route(
        "GET", "/api/info", None, (200, "application/json", json.dumps(SEED_INFO).encode())
    )
    assert fake_client().info().chip_id == CHIP
    assert fake_device.count("GET", "/api/info") == 2


def test_busy_is_retried_then_reported(fake_device, fake_client):
    busy = (503, "application/json", b'{"error": "busy", "detail": "too many connections"}')
    fake_device.route(
        "GET",
        "/api/status",
        busy,
        (200, "application/json", b'{"wifi": "idle", "ip": null, "broker": "unknown"}'),
    )
    assert fake_client().status().wifi == "idle"
    fake_device.route("GET", "/api/status", busy)
    with pytest.raises(DeviceBusy):
        fake_client(retries=2).status()
    assert fake_device.count("GET", "/api/status") == 2 + 3


def test_config_posts_are_resent_with_the_identical_body(fake_device, fake_client):
    ok = (200, "application/json", b'{"ok": true}')
    fake_device.route("POST", "/api/wifi", None, ok)
    fake_device.route("POST", "/api/mqtt", None, None, ok)
    c = fake_client()
    c.send_wifi(HOME_SSID, HOME_PASSWORD)
    c.send_mqtt(**SEED_MQTT, username="esp32_dht11_001", password=TOKEN)
    wifi = [s.body for s in fake_device.seen if s.path == "/api/wifi"]
    mqtt = [s.body for s in fake_device.seen if s.path == "/api/mqtt"]
    assert len(wifi) == 2 and len(set(wifi)) == 1
    assert json.loads(wifi[0]) == {"ssid": "MyHomeWiFi", "password": "mypassword"}
    assert len(mqtt) == 3 and len(set(mqtt)) == 1
    assert json.loads(mqtt[0]) == {**SEED_MQTT, "username": "esp32_dht11_001", "password": TOKEN}


def test_rejections_never_echo_secrets(fake_device, fake_client, caplog):
    caplog.set_level(logging.DEBUG)
    echo = {"error": "invalid_field", "detail": f"bad password {TOKEN}", "field": "password"}
    fake_device.json("POST", "/api/mqtt", echo, status=400)
    with pytest.raises(DeviceRejected) as err:
        fake_client().send_mqtt(**SEED_MQTT, username="u", password=TOKEN)
    assert TOKEN not in str(err.value) and TOKEN not in err.value.detail
    assert "MQTT password" in str(err.value)
    assert TOKEN not in caplog.text


def test_restart_lost_answer_is_confirmed_by_the_api_going_away(fake_device, fake_client):
    fake_device.route("POST", "/api/restart", None)  # the device closes without a word
    fake_device.json("GET", "/api/info", SEED_INFO)
    # The device reboots: its server goes away shortly after the request.
    threading.Timer(0.4, fake_device.close).start()
    fake_client().restart(confirm_timeout=5)
    assert fake_device.count("POST", "/api/restart") == 1


def test_restart_is_never_resent_when_unconfirmed(fake_device, fake_client):
    fake_device.route("POST", "/api/restart", None)
    fake_device.json("GET", "/api/info", SEED_INFO)  # keeps answering: no reboot seen
    with pytest.raises(RestartUnconfirmed, match="did not confirm the restart"):
        fake_client().restart(confirm_timeout=1)
    assert fake_device.count("POST", "/api/restart") == 1


def test_restart_busy_or_unreachable_is_reported_not_resent(fake_device, fake_client):
    fake_device.json("POST", "/api/restart", {"error": "busy", "detail": "x"}, status=503)
    with pytest.raises(DeviceBusy):
        fake_client(retries=5).restart()
    assert fake_device.count("POST", "/api/restart") == 1
    fake_device.close()
    with pytest.raises(DeviceUnreachable, match=AP_SSID):
        fake_client(retries=5).restart()


def test_wait_for_trial_times_out_and_cancels(fake_device, fake_client):
    fake_device.json("GET", "/api/status", {"wifi": "connecting", "ip": None, "broker": "unknown"})
    c = fake_client()
    with pytest.raises(TrialTimeout, match="still testing"):
        c.wait_for_trial(0.5, poll=0.1)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        c.wait_for_trial(30, poll=0.1, cancel=cancel)
    assert time.monotonic() - started < 2


def test_wait_for_trial_without_credentials_says_so(fake_device, fake_client):
    fake_device.json("GET", "/api/status", {"wifi": "idle", "ip": None, "broker": "unknown"})
    with pytest.raises(TrialError, match="no home WiFi settings"):
        fake_client().wait_for_trial(5, poll=0.1)


def test_wait_for_trial_waits_for_the_broker_check(fake_device, fake_client):
    connected = {"wifi": "connected", "ip": "192.168.29.100"}
    states = ("unknown", "unknown", "reachable")
    fake_device.route("GET", "/api/status", *[js({**connected, "broker": b}) for b in states])
    fake_device.json("GET", "/api/info", {**SEED_INFO, "mqtt_configured": True})
    s = fake_client().wait_for_trial(5, poll=0.05)
    assert s == TrialStatus("connected", "192.168.29.100", "reachable")
    assert fake_device.count("GET", "/api/status") == 3


def test_client_survives_a_device_that_reboots_between_calls(device, client):
    # A fresh client for the new API address after a reboot (the WiFi side tells it).
    boots = device.boots
    client.restart()
    device.wait_for_reboot(boots)
    ap = wait_for(lambda: device.air.setup_ap(CHIP), 10, 0.05)
    device.wait_for_setup_ap()
    assert DeviceClient(ap.api_url).info().state == "setup"


def test_proxy_settings_are_ignored_for_the_device(fake_device, fake_client, monkeypatch):
    # A company laptop's proxy must not swallow the device's local address.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    fake_device.json("GET", "/api/info", SEED_INFO)
    assert fake_client().info().chip_id == CHIP


@pytest.mark.parametrize(
    ("code", "detail", "advice"),
    [
        (
            "tls_untrusted",
            "TLS to 192.168.29.91:8883: the broker's certificate is not signed by the CA "
            "the device was given",
            "station homes edit HOME --ca FILE",
        ),
        ("tls_hostname", "TLS to x:8883: the broker's certificate is not for x", "must name"),
        ("tls_handshake", "TLS to x:8883: no TLS answer", "speaks TLS on that port"),
        ("tls_new_kind", "TLS to x:8883: something new", "Check the broker's certificate"),
    ],
)
def test_a_tls_failure_the_device_reports_is_said_with_what_to_do(
    fake_device, fake_client, code, detail, advice
):
    """The firmware's broker check names why TLS failed (firmware/tlsfail.py; tested
    against a real TLS Mosquitto in tests/firmware/test_tls.py): the station says that,
    not "check the firewall"."""
    status = {"wifi": "connected", "ip": "192.168.29.100", "broker": "unreachable"}
    fake_device.json(
        "GET", "/api/status", {**status, "broker_error": code, "broker_detail": detail}
    )
    fake_device.json("GET", "/api/info", {**SEED_INFO, "mqtt_configured": True})
    with pytest.raises(BrokerUnreachable) as err:
        fake_client().wait_for_trial(5, poll=0.05)
    text = str(err.value)
    assert detail in text and advice in text and "firewall" not in text
    assert err.value.status.broker_error == code


def test_a_status_without_the_new_fields_is_read_as_before(fake_device, fake_client):
    status = {"wifi": "connected", "ip": "192.168.29.100", "broker": "unreachable"}
    fake_device.json("GET", "/api/status", {**status, "broker_error": 7, "broker_detail": None})
    fake_device.json("GET", "/api/info", {**SEED_INFO, "mqtt_configured": True})
    with pytest.raises(BrokerUnreachable, match="firewall") as err:
        fake_client().wait_for_trial(5, poll=0.05)
    assert err.value.status == TrialStatus("connected", "192.168.29.100", "unreachable")
