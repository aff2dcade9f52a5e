"""PROTOCOL.md section 2 on the real firmware, against a real MQTT broker."""

from __future__ import annotations

import itertools
import json
import time

import paho.mqtt.client as paho
import pytest
from fw_helpers import FAST, HOME_PASSWORD, api_for, provision, seed_mqtt_body
from support import wait_for

from station.registry.models import Device

P = "home/esp32_dht11_001"
ONLINE = lambda p: p == b"online"  # noqa: E731
OFFLINE = lambda p: p == b"offline"  # noqa: E731


@pytest.fixture
def running(home, device, api, mqtt_broker, observer):
    """A device provisioned the seed's way (plus a token) and online on the broker."""
    body = provision(api, mqtt_broker)
    observer.wait(f"{P}/status", ONLINE)
    observer.wait(f"{P}/state")  # the first state follows the whole on-connect burst
    return device, body


def _retained(broker, topic_filter: str, timeout: float = 3.0) -> dict[str, bytes]:
    """What a newcomer subscribing now receives as retained messages."""
    got: dict[str, bytes] = {}
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"late-{time.monotonic_ns()}")
    c.username_pw_set(*broker.station_user)
    c.on_connect = lambda *_a: c.subscribe(topic_filter, qos=1)
    c.on_message = lambda _c, _u, m: got.__setitem__(m.topic, m.payload) if m.retain else None
    c.connect(broker.host, broker.port)
    c.loop_start()
    time.sleep(timeout)
    c.disconnect()
    c.loop_stop()
    return got


def test_on_connect_it_publishes_retained_online_info_and_discovery(running, mqtt_broker):
    got = _retained(mqtt_broker, "#", 1.0)
    assert got[f"{P}/status"] == b"online"
    info = json.loads(got[f"{P}/info"])
    assert info == {
        "chip_id": "A4CF12EF5678",
        "model": "esp32-dht11",
        "firmware": "1.0.0",
        "ip": info["ip"],
        "node_name": "esp32_dht11_001",
        "broker": "192.168.29.91:1883",  # where it reports (re-homing confirms by it)
        "interval": FAST["interval_s"],  # between readings (set_interval confirms by it)
    }
    assert info["ip"].startswith("192.168.29.")
    for kind, unit in (("temperature", "°C"), ("humidity", "%")):
        doc = json.loads(got[f"homeassistant/sensor/esp32_dht11_001_{kind}/config"])
        assert doc["state_topic"] == f"{P}/state"
        assert doc["availability_topic"] == f"{P}/status"
        assert doc["unit_of_measurement"] == unit
        assert doc["device_class"] == kind
        assert doc["value_template"] == f"{{{{ value_json.{kind} }}}}"
        assert doc["unique_id"] == f"esp32_dht11_001_{kind}"
        assert doc["device"]["identifiers"] == ["A4CF12EF5678"]


def test_state_every_interval_with_all_fields(running, observer):
    observer.wait(f"{P}/state")
    n = observer.count(f"{P}/state")
    wait_for(lambda: observer.count(f"{P}/state") >= n + 3, 6)
    states = observer.json(f"{P}/state")
    for s in states:
        assert set(s) == {"temperature", "humidity", "rssi", "uptime", "heap_free"}
        assert 10 <= s["temperature"] <= 35 and 20 <= s["humidity"] <= 80
        assert -100 < s["rssi"] < 0
        assert isinstance(s["uptime"], int) and isinstance(s["heap_free"], int)
        assert s["heap_free"] > 10_000  # the 96 KB heap is not close to running out
    gaps = _gaps(observer.times(f"{P}/state")[-4:])
    assert all(0.7 < g < 1.6 for g in gaps), gaps  # interval_s = 1 in these tests


def test_a_failing_dht11_reports_nulls_and_the_loop_goes_on(running, observer, air):
    device, _ = running
    air.set_dht_fail(device.chip_id, True)
    failed = observer.wait(f"{P}/state", lambda p: b"sensor_timeout" in p)
    s = json.loads(failed)
    assert s["temperature"] is None and s["humidity"] is None and s["error"] == "sensor_timeout"
    assert isinstance(s["uptime"], int) and isinstance(s["heap_free"], int)
    n = observer.count(f"{P}/state")
    air.set_dht_fail(device.chip_id, False)
    ok = json.loads(observer.wait(f"{P}/state", lambda p: b"sensor_timeout" not in p, after=n))
    assert isinstance(ok["temperature"], float) and "error" not in ok


def test_the_will_says_offline_after_a_power_cut(running, observer, mqtt_broker):
    device, _ = running
    n = observer.count(f"{P}/status")
    device.power_off()
    observer.wait(f"{P}/status", OFFLINE, timeout=5, after=n)
    assert _retained(mqtt_broker, f"{P}/status", 0.5)[f"{P}/status"] == b"offline"


def test_it_reconnects_after_a_broker_restart(running, observer, mqtt_broker):
    device, _ = running
    sessions = device.log_text().count("mqtt: connected")
    restarted_at = time.monotonic()
    mqtt_broker.restart()
    observer.reconnect()
    # A new session, and an `online` the observer got after the restart: the one from
    # before the restart is still in observer.messages and must not count.
    wait_for(lambda: device.log_text().count("mqtt: connected") > sessions, 10)
    wait_for(lambda: ONLINE(observer.last(f"{P}/status", since=restarted_at) or b""), 10)
    n = observer.count(f"{P}/state")
    wait_for(lambda: observer.count(f"{P}/state") > n, 5)


def test_it_keeps_retrying_while_the_broker_is_down(running, observer, mqtt_broker):
    device, _ = running
    mqtt_broker.stop()
    time.sleep(3)  # several backoff rounds (the config is proven: no fallback to setup)
    assert device.air.setup_ap(device.chip_id) is None
    mqtt_broker.start()
    observer.reconnect()
    observer.wait(f"{P}/status", ONLINE, timeout=10)
    assert device.boots == 2  # no reboot needed for it


def _cmd(observer, doc, expect_cmd: str | None, timeout: float = 5.0) -> dict:
    n = observer.count(f"{P}/event")
    observer.publish(f"{P}/cmd", doc if isinstance(doc, (bytes, str)) else json.dumps(doc))
    reply = observer.wait(f"{P}/event", bool, timeout=timeout, after=n)
    event = json.loads(reply)
    assert event["cmd"] == expect_cmd
    return event


def test_identify_blinks_the_led_and_answers(running, observer, air):
    device, _ = running
    before = air.led(device.chip_id).get("changes", 0)
    assert _cmd(observer, {"cmd": "identify"}, "identify") == {"cmd": "identify", "ok": True}
    wait_for(lambda: air.led(device.chip_id).get("changes", 0) >= before + 6, 3)
    wait_for(lambda: air.led(device.chip_id)["on"] is False, 3)  # and ends dark


def test_set_interval_changes_the_period_and_is_saved(running, observer):
    device, _ = running
    ev = _cmd(observer, {"cmd": "set_interval", "value": 2}, "set_interval")
    assert ev == {"cmd": "set_interval", "ok": True, "value": 2}
    assert device.config()["interval"] == 2
    n = observer.count(f"{P}/state")
    wait_for(lambda: observer.count(f"{P}/state") >= n + 3, 10)
    gaps = _gaps(observer.times(f"{P}/state")[n:])
    assert all(1.6 < g < 2.6 for g in gaps), gaps
    for bad in (0, -1, 3601, "5", 2.5, None, True):
        ev = _cmd(observer, {"cmd": "set_interval", "value": bad}, "set_interval")
        assert ev["ok"] is False and ev["error"] == "bad_value"
    assert device.config()["interval"] == 2
    # The same value again is answered but spares the flash a write.
    stored = device.flash_dir / "config.json"
    written = stored.stat().st_mtime_ns
    time.sleep(0.05)
    assert _cmd(observer, {"cmd": "set_interval", "value": 2}, "set_interval")["ok"] is True
    assert stored.stat().st_mtime_ns == written


def test_unknown_and_malformed_commands_get_an_error_event(running, observer):
    assert _cmd(observer, {"cmd": "self_destruct"}, "self_destruct") == {
        "cmd": "self_destruct",
        "ok": False,
        "error": "unknown_cmd",
    }
    for junk in (b"not json", b"[]", b'{"command": "identify"}', b'{"cmd": 5}', b"\xff"):
        assert _cmd(observer, junk, None) == {"cmd": None, "ok": False, "error": "bad_json"}
    # and it is still working
    n = observer.count(f"{P}/state")
    wait_for(lambda: observer.count(f"{P}/state") > n, 3)


def test_reboot_command_says_offline_then_comes_back(running, observer):
    device, _ = running
    boots = device.boots
    n = observer.count(f"{P}/status")
    assert _cmd(observer, {"cmd": "reboot"}, "reboot")["ok"] is True
    observer.wait(f"{P}/status", OFFLINE, after=n)
    device.wait_for_reboot(boots)
    observer.wait(f"{P}/status", ONLINE, after=n + 1)
    assert device.config()["wifi"]["password"] == HOME_PASSWORD


def test_factory_reset_erases_config_clears_discovery_and_opens_the_ap(
    running, observer, mqtt_broker
):
    device, _ = running
    n = observer.count(f"{P}/status")
    assert _cmd(observer, {"cmd": "factory_reset"}, "factory_reset")["ok"] is True
    observer.wait(f"{P}/status", OFFLINE, after=n)
    api = api_for(device, timeout=10)
    assert api.get("/api/info").json()["wifi_configured"] is False
    assert device.config() is None
    # Emptied retained config topics: Home Assistant drops the entities.
    for kind in ("temperature", "humidity"):
        assert observer.payloads(f"homeassistant/sensor/esp32_dht11_001_{kind}/config")[-1] == b""
    retained = _retained(mqtt_broker, "homeassistant/#", 0.5)
    assert not [t for t in retained if t.startswith("homeassistant/")]


def test_the_seed_body_without_credentials_connects_only_in_seed_app_mode(
    home, device, api, mqtt_broker, observer
):
    # The seed's app sends no credentials. Anonymous access does not let a device in
    # (a device always proves its token); a device registered in seed-app mode does.
    mqtt_broker.add_user("esp32_dht11_001", "token-the-device-never-got")
    mqtt_broker.allow_anonymous = True
    api.post("/api/wifi", {"ssid": "MyHomeWiFi", "password": "mypassword"})
    api.post("/api/mqtt", seed_mqtt_body())  # exactly the seed's body
    api.post("/api/restart")
    wait_for(lambda: "refused, code 5" in device.log_text(), 15)
    assert not observer.payloads(f"{P}/status")
    Device.update(seed_app_login=True).where(Device.node_name == "esp32_dht11_001").execute()
    mqtt_broker.broker.access.seed_app_devices = True
    mqtt_broker.broker.access.remove("esp32_dht11_001")  # the cache re-reads the registry
    observer.wait(f"{P}/status", ONLINE, timeout=20)


def test_a_wrong_token_is_refused_and_never_logged(home, device, api, mqtt_broker, observer):
    provision(api, mqtt_broker, password="right-token-1234", restart=False)
    body = {**seed_mqtt_body(), "username": "esp32_dht11_001", "password": "wrong-token-5678"}
    api.post("/api/mqtt", body)
    api.post("/api/restart")
    wait_for(lambda: "refused, code 5" in device.log_text(), 10)
    assert not observer.payloads(f"{P}/status")
    log = device.log_text()
    for secret in ("wrong-token-5678", "right-token-1234", HOME_PASSWORD):
        assert secret not in log


def test_no_secret_reaches_the_console(running):
    device, body = running
    log = device.log_text()
    assert "mqtt: connected" in log
    assert HOME_PASSWORD not in log and body["password"] not in log


def test_keepalive_keeps_a_qos0_publisher_online(home, devices, mqtt_broker, observer):
    # A QoS 0 publisher hears nothing back from the broker: the client must ping
    # because nothing was *received*, not only because nothing was sent, or it takes
    # the silence for a dead broker every ~1.5 keep-alives and flaps offline/online.
    dev = devices(keepalive_s=2, interval_s=1)
    provision(api_for(dev), mqtt_broker)
    observer.wait(f"{P}/status", ONLINE)
    n = observer.count(f"{P}/state")
    time.sleep(8)  # four keep-alive periods
    assert observer.payloads(f"{P}/status") == [b"online"]
    assert observer.count(f"{P}/state") >= n + 6
    log = dev.log_text()
    assert "session ended" not in log and "reconnecting" not in log, log[-2000:]


def test_a_retained_command_is_ignored(home, device, api, mqtt_broker, observer):
    # Retained, it would come back on every connect: a retained reboot would loop forever.
    assert observer.client is not None
    observer.client.publish(f"{P}/cmd", json.dumps({"cmd": "reboot"}), qos=1, retain=True)
    wait_for(lambda: observer.count(f"{P}/cmd") == 1, 3)
    provision(api, mqtt_broker)
    observer.wait(f"{P}/status", ONLINE)
    wait_for(lambda: "retained message ignored" in device.log_text(), 5)
    time.sleep(1)
    assert observer.count(f"{P}/event") == 0
    assert observer.payloads(f"{P}/status") == [b"online"]
    assert device.boots == 2  # the provisioning restart only
    # Live commands still work.
    assert _cmd(observer, {"cmd": "identify"}, "identify")["ok"] is True


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]
