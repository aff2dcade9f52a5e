"""Integration accounts on the wire: observer and operator logins through real paho
clients against the real embedded broker (the rules are broker/access.py's)."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
import pytest
from support import wait_for

REFUSED = 0x80


@pytest.fixture
def device(registry, broker, connect):
    issued = registry.register_device()
    node = issued.device.node_name
    client = connect(node, node, issued.token, will=f"{issued.device.topic_prefix}/status")
    assert client.rc == 0
    assert client.subscribe(f"{issued.device.topic_prefix}/cmd") == [1]
    return issued.device, client


def ha_like(broker, username: str, password: str, client_id: str = "homeassistant-1"):
    """A client set up the way Home Assistant's MQTT integration is by default: a will
    `offline` on homeassistant/status (QoS 0, not retained), then the birth `online`."""
    m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    m.username_pw_set(username, password)
    m.will_set("homeassistant/status", "offline", qos=0, retain=False)
    got: dict = {"rc": None, "messages": [], "suback": []}
    m.on_connect = lambda _c, _u, _f, rc, _p: got.update(rc=rc)
    m.on_message = lambda _c, _u, msg: got["messages"].append((msg.topic, msg.payload))
    m.on_subscribe = lambda _c, _u, _m, codes, _p: got["suback"].append([c.value for c in codes])
    m.connect("127.0.0.1", broker.port, keepalive=30)
    m.loop_start()
    wait_for(lambda: got["rc"] is not None, 5)
    return m, got


def test_observer_logs_in_with_home_assistants_will_and_any_client_id(registry, broker, connect):
    password = registry.accounts.add("homeassistant", "observer").password
    m, got = ha_like(broker, "homeassistant", password, client_id="any-id-at-all")
    try:
        assert got["rc"] == 0
        watcher = connect("watch", *broker.station_credentials())
        assert watcher.subscribe("homeassistant/status") == [1]
        m.publish("homeassistant/status", "online").wait_for_publish(3)
        wait_for(lambda: watcher.received("homeassistant/status") == [b"online"])
        # An abnormal end sends the will to the others [MQTT-3.1.2-8].
        m.loop_stop()
        m.socket().close()
        wait_for(lambda: watcher.received("homeassistant/status") == [b"online", b"offline"])
    finally:
        m.loop_stop()


def test_observer_may_read_everything_but_publish_only_its_status(
    registry, broker, connect, device
):
    dev, dev_client = device
    password = registry.accounts.add("explorer", "observer").password
    grants = connect("mqtt-explorer-2", "explorer", password)
    assert grants.subscribe("homeassistant/#") == [1]
    assert grants.subscribe("$SYS/#") == [1]
    assert grants.subscribe("home/+/state") == [1]
    assert grants.subscribe("$other/#") == [REFUSED]
    # One filter for the rest (overlapping filters may each deliver a copy, MQTT 3.3.5).
    obs = connect("mqtt-explorer", "explorer", password)
    assert obs.rc == 0
    assert obs.subscribe("#") == [1]
    dev_client.publish(f"{dev.topic_prefix}/state", b'{"temperature": 21}')
    wait_for(lambda: obs.received(f"{dev.topic_prefix}/state"))
    # Publishing anything but homeassistant/status is dropped: the device gets no command.
    obs.publish(f"{dev.topic_prefix}/cmd", b'{"cmd":"reboot"}')
    obs.publish(f"{dev.topic_prefix}/state", b'{"temperature": 99}')
    obs.publish("homeassistant/status", b"online")
    wait_for(lambda: obs.received("homeassistant/status") == [b"online"])
    time.sleep(0.2)
    assert dev_client.received(f"{dev.topic_prefix}/cmd") == []
    assert obs.received(f"{dev.topic_prefix}/state") == [b'{"temperature": 21}']


def test_operator_may_also_send_device_commands(registry, broker, connect, device):
    dev, dev_client = device
    password = registry.accounts.add("nodered", "operator").password
    op = connect("node-red", "nodered", password)
    assert op.rc == 0
    op.publish(f"{dev.topic_prefix}/state", b'{"temperature": 99}')  # not a command: dropped
    op.publish(f"{dev.topic_prefix}/x/cmd", b"{}")  # not a device's command topic
    op.publish(f"{dev.topic_prefix}/cmd", b'{"cmd":"identify"}')
    wait_for(lambda: dev_client.received(f"{dev.topic_prefix}/cmd") == [b'{"cmd":"identify"}'])
    assert op.subscribe(f"{dev.topic_prefix}/#") == [1]
    dev_client.publish(f"{dev.topic_prefix}/event", b'{"cmd":"identify","ok":true}')
    wait_for(lambda: op.received(f"{dev.topic_prefix}/event"))
    assert op.received(f"{dev.topic_prefix}/state") == []


@pytest.mark.parametrize(
    ("will", "password_ok"),
    [("home/esp32_dht11_001/status", True), (None, False)],
    ids=["will-outside-homeassistant-status", "wrong-password"],
)
def test_refused_logins(registry, broker, connect, will, password_ok):
    password = registry.accounts.add("ha", "observer").password
    c = connect("ha-1", "ha", password if password_ok else password + "x", will=will)
    assert c.rc != 0
    assert c.rc.is_failure


def test_an_account_added_while_the_broker_runs_logs_in(registry, broker, connect):
    assert connect("x", "late", "nope").rc != 0  # the broker remembers the miss
    password = registry.accounts.add("late", "observer").password
    broker.account_changed("late")  # as `station accounts add` tells a running station
    assert connect("late-1", "late", password).rc == 0


def test_an_account_added_by_another_station_logs_in_once_the_miss_expires(
    registry, broker, connect, monkeypatch
):
    import time

    from broker.access import MISS_TTL_S

    assert connect("x", "late", "nope").rc != 0
    password = registry.accounts.add("late", "observer").password  # nobody tells this broker
    assert connect("late-1", "late", password).rc != 0
    now = time.monotonic()
    monkeypatch.setattr(broker.access, "clock", lambda: now + MISS_TTL_S + 1)
    assert connect("late-2", "late", password).rc == 0


def test_removing_an_account_closes_its_connections_and_refuses_it(registry, broker, connect):
    password = registry.accounts.add("ha", "observer").password
    first, second = connect("ha-a", "ha", password), connect("ha-b", "ha", password)
    assert first.rc == 0 and second.rc == 0
    registry.accounts.remove("ha")
    assert broker.account_changed("ha") == 2
    wait_for(lambda: first.disconnected and second.disconnected)
    assert connect("ha-c", "ha", password).rc != 0


def test_rotating_a_password_ends_the_old_one(registry, broker, connect):
    old = registry.accounts.add("ha", "observer").password
    client = connect("ha-a", "ha", old)
    assert client.rc == 0
    new = registry.accounts.rotate("ha").password
    broker.account_changed("ha")
    wait_for(lambda: client.disconnected)
    assert connect("ha-b", "ha", old).rc != 0
    assert connect("ha-c", "ha", new).rc == 0


def test_a_devices_login_is_not_shadowed_by_the_account_check(registry, broker, connect):
    registry.accounts.add("ha", "observer")
    issued = registry.register_device()
    node = issued.device.node_name
    assert connect(node, node, issued.token).rc == 0
    assert connect("ha-1", node, "not-the-token").rc != 0
