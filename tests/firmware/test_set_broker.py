"""Re-homing (issue 11 part 2, docs/FLEET.md) on the real firmware (unix port, 96 KB):
`set_broker` makes the device try another broker; its stored config changes only once
that broker answered CONNACK, and a broker that refuses it or cannot be reached leaves
it on the old one, which hears why."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fw_helpers import HOME_SSID, MqttBroker, Observer, provision

P = "home/esp32_dht11_001"
NODE = "esp32_dht11_001"
NEW_HOST = "192.168.29.50"  # the customer's permanent broker, as the home LAN names it


@pytest.fixture
def new_broker(home) -> Iterator[MqttBroker]:
    b = MqttBroker()
    b.start()
    b.add_user(NODE, "token-new")
    target = f"127.0.0.1:{b.port}"
    home.extend_reach(HOME_SSID, {f"{NEW_HOST}:1883": target})
    yield b
    b.close()


@pytest.fixture
def on_new(new_broker) -> Iterator[Observer]:
    o = Observer(new_broker)
    yield o
    o.close()


def _running(api, mqtt_broker, observer) -> None:
    provision(api, mqtt_broker)
    observer.wait(f"{P}/status", lambda p: p == b"online", 20)
    observer.wait(f"{P}/info", timeout=10)


def _send(observer: Observer, **fields) -> int:
    after = observer.count(f"{P}/event")
    observer.publish(f"{P}/cmd", json.dumps({"cmd": "set_broker", **fields}))
    return after


def _reply(observer: Observer, after: int) -> dict:
    raw = observer.wait(f"{P}/event", lambda p: json.loads(p).get("cmd") == "set_broker", 10, after)
    return json.loads(raw)


def test_the_device_moves_to_a_broker_that_takes_it_and_stays_there_after_a_reboot(
    device, api, mqtt_broker, observer, new_broker, on_new
):
    _running(api, mqtt_broker, observer)
    info = json.loads(observer.last(f"{P}/info"))
    assert info["broker"] == "192.168.29.91:1883"  # the seed's address of the station
    after = _send(observer, broker=NEW_HOST, port=1883, username=NODE, password="token-new")
    assert _reply(observer, after) == {"cmd": "set_broker", "ok": True}
    # It said goodbye on the old broker and reports, on the new one, where it is.
    observer.wait(f"{P}/status", lambda p: p == b"offline", 10)
    on_new.wait(f"{P}/status", lambda p: p == b"online", 20)
    moved = json.loads(on_new.wait(f"{P}/info", timeout=10))
    assert moved["broker"] == f"{NEW_HOST}:1883"
    stored = device.config()["mqtt"]
    assert (stored["broker"], stored["port"], stored["password"]) == (NEW_HOST, 1883, "token-new")
    assert stored["topic_prefix"] == P and stored["node_name"] == NODE  # kept
    # A power cut and a cold boot: it comes back on the new broker.
    device.power_off()
    seen = on_new.count(f"{P}/status")
    device.start()
    on_new.wait(f"{P}/status", lambda p: p == b"online", 30, seen)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        # the new broker does not know this token: CONNACK 5
        ({"broker": NEW_HOST, "port": 1883, "password": "wrong-token"}, "refused the login"),
        # nothing answers there on the home LAN
        ({"broker": "192.168.29.51", "port": 1883, "password": "token-new"}, "OSError"),
    ],
)
def test_a_broker_that_refuses_or_is_not_there_leaves_the_device_on_the_old_one(
    device, api, mqtt_broker, observer, new_broker, fields, why
):
    _running(api, mqtt_broker, observer)
    before = device.config()
    after = _send(observer, username=NODE, **fields)
    assert _reply(observer, after) == {"cmd": "set_broker", "ok": True}
    raw = observer.wait(
        f"{P}/event", lambda p: json.loads(p).get("event") == "set_broker", 30, after
    )
    event = json.loads(raw)
    assert event["state"] == "failed" and why in event["reason"], event
    assert observer.last(f"{P}/status") == b"online"  # back on the old broker
    assert json.loads(observer.last(f"{P}/info"))["broker"] == "192.168.29.91:1883"
    assert device.config() == before  # nothing stored changed


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"broker": NEW_HOST, "port": 0}, "port must be an integer 1-65535"),
        ({"broker": "bad host!", "port": 1883}, "broker must be a host name"),
        ({"port": 1883}, "broker is required"),
        ({"broker": NEW_HOST, "port": 1883, "tls": True, "ca": "x"}, "tls is not taken"),
        ({"broker": NEW_HOST, "port": 1883, "password": "p"}, "allows a password only with"),
    ],
)
def test_bad_values_are_refused_and_change_nothing(
    home, device, api, mqtt_broker, observer, fields, detail
):
    _running(api, mqtt_broker, observer)
    before = device.config()
    after = _send(observer, **fields)
    reply = _reply(observer, after)
    assert reply["ok"] is False and reply["error"] == "bad_value"
    assert detail in reply["detail"]
    assert device.config() == before
    assert observer.last(f"{P}/status") == b"online"


def test_set_interval_is_reported_in_info(home, api, mqtt_broker, observer):
    _running(api, mqtt_broker, observer)
    seen = observer.count(f"{P}/info")
    observer.publish(f"{P}/cmd", json.dumps({"cmd": "set_interval", "value": 7}))
    info = observer.wait(f"{P}/info", lambda p: json.loads(p).get("interval") == 7, 10, seen)
    assert json.loads(info)["node_name"] == NODE
