"""Who gets in: real paho clients against the embedded broker on loopback."""

from __future__ import annotations

import pytest
from support import wait_for


@pytest.fixture
def device(registry, broker):
    issued = registry.register_device(name="Hall")
    broker.device_registered(issued.device)
    return issued


def test_device_with_issued_token_is_accepted(device, connect):
    node = device.device.node_name
    c = connect(node, node, device.token, will=f"{device.device.topic_prefix}/status")
    assert c.rc == 0


@pytest.mark.parametrize(
    ("case", "client_id", "username", "password"),
    [
        ("wrong token", "{node}", "{node}", "not-the-token"),
        ("empty token", "{node}", "{node}", ""),
        ("unknown user", "esp32_dht11_999", "esp32_dht11_999", "{token}"),
        ("anonymous", "anon-1", None, None),
        ("client id differs from username", "someone_else", "{node}", "{token}"),
        ("station user with a device token", "station-x", "station", "{token}"),
    ],
)
def test_refused(device, connect, broker, case, client_id, username, password):
    def fill(value):
        if value is None:
            return None
        return value.format(node=device.device.node_name, token=device.token)

    c = connect(fill(client_id), fill(username), fill(password))
    assert c.rc.is_failure, case
    assert c.rc.value == 0x87 or c.rc.value == 5  # "not authorized" (MQTT 3.1.1 code 5)
    assert broker.hub.denied >= 1


def test_will_outside_own_prefix_is_refused(device, connect, registry):
    other = registry.register_device()
    node = device.device.node_name
    c = connect(node, node, device.token, will=f"{other.device.topic_prefix}/status")
    assert c.rc.is_failure


def test_station_client_has_full_access(station_client, connect, device):
    assert station_client.rc == 0
    assert station_client.subscribe("#") == [1]
    assert station_client.subscribe("$SYS/#") == [1]


def test_anonymous_allowed_only_when_configured(registry, tmp_path):
    import paho.mqtt.client as mqtt

    from broker import EmbeddedBroker
    from station.settings import BrokerSettings

    b = EmbeddedBroker(
        registry, BrokerSettings(bind_host="127.0.0.1", port=0, allow_anonymous=True)
    )
    b.start()
    try:
        got = {}
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
        m.on_connect = lambda *a: got.setdefault("rc", a[3])
        m.on_subscribe = lambda _c, _u, _m, codes, _p: got.setdefault("sub", codes[0].value)
        m.on_publish = lambda *a: got.setdefault("pub", True)
        m.connect("127.0.0.1", b.port)
        m.loop_start()
        wait_for(lambda: "rc" in got)
        assert got["rc"] == 0
        m.subscribe("home/#", 1)
        wait_for(lambda: "sub" in got)
        assert got["sub"] == 1
        m.loop_stop()
        m.disconnect()
    finally:
        b.stop()


def test_refused_logins_leave_no_ghost_sessions(device, connect, broker):
    for i in range(20):
        connect(f"random-{i}", "nobody", "x").close()
    wait_for(lambda: not any(k.startswith("random-") for k in broker._amqtt.sessions), 3)


def test_new_device_token_works_without_restart(registry, broker, connect):
    issued = registry.register_device()
    # No device_registered() call: the broker must find it in the registry on a miss.
    node = issued.device.node_name
    assert connect(node, node, issued.token).rc == 0


def test_token_is_stored_hashed(device, registry, tmp_path):
    raw = (tmp_path / "registry.sqlite3").read_bytes()
    wal = tmp_path / "registry.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert device.token.encode() not in raw
    assert registry.device(device.device.node_name).token_hash.startswith("sha256$")


def test_anonymous_mode_lets_a_registered_node_act_as_itself(registry, broker, connect,
                                                             station_client):
    """The seed's /api/mqtt body has no credentials; with anonymous access turned on a
    registered node name as client id is that device, and nothing more."""
    issued = registry.register_device()
    node, prefix = issued.device.node_name, issued.device.topic_prefix
    assert connect(node, None, None).rc.is_failure  # off by default
    broker.access.allow_anonymous = True
    station_client.subscribe("#")
    dev = connect(node, None, None, will=f"{prefix}/status")
    assert dev.rc == 0
    dev.publish(f"{prefix}/status", "online", retain=True)
    dev.publish("home/other_device/state", "{}")
    wait_for(lambda: registry.device(node).online)
    assert station_client.received("home/other_device/state") == []
    stranger = connect("not-a-node", None, None)
    assert stranger.rc == 0
    stranger.publish(f"{prefix}/status", "offline", retain=True)
    assert stranger.subscribe(f"{prefix}/#") == [1]
    assert registry.device(node).online
    assert connect("not-a-node-2", None, None, will=f"{prefix}/status").rc.is_failure
