"""Who gets in: real paho clients against the embedded broker on loopback."""

from __future__ import annotations

import time

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


def test_anonymous_clients_never_act_as_a_device(registry, broker, connect, station_client):
    """PROTOCOL.md section 2: a device always proves its token. With anonymous access on,
    a client without credentials claiming a node name is still refused; any other is a
    read-only monitor."""
    issued = registry.register_device()
    node, prefix = issued.device.node_name, issued.device.topic_prefix
    broker.access.allow_anonymous = True
    assert connect(node, None, None).rc.is_failure
    assert connect(node, None, None, will=f"{prefix}/status").rc.is_failure
    station_client.subscribe("#")
    stranger = connect("not-a-node", None, None)
    assert stranger.rc == 0
    stranger.publish(f"{prefix}/status", "online", retain=True)
    assert stranger.subscribe(f"{prefix}/#") == [1]
    time.sleep(0.3)
    assert station_client.received(f"{prefix}/status") == []
    assert not registry.device(node).online
    assert connect("not-a-node-2", None, None, will=f"{prefix}/status").rc.is_failure


def test_seed_app_devices_log_in_without_a_token_only_in_that_mode(
    registry, broker, connect, station_client
):
    """The seed's app sends /api/mqtt without credentials: a device registered in
    seed-app mode may log in by node name alone while the mode is on, confined to its
    own topics; a device registered otherwise never."""
    seed = registry.register_device(seed_app_login=True).device
    normal = registry.register_device().device
    assert connect(seed.node_name, None, None).rc.is_failure  # mode off: refused
    broker.access.seed_app_devices = True
    assert connect(normal.node_name, None, None).rc.is_failure  # not a seed-app device
    station_client.subscribe("#")
    dev = connect(seed.node_name, None, None, will=f"{seed.topic_prefix}/status")
    assert dev.rc == 0
    dev.publish(f"{seed.topic_prefix}/status", "online", retain=True)
    dev.publish(f"{normal.topic_prefix}/state", "{}")
    wait_for(lambda: registry.device(seed.node_name).online)
    assert station_client.received(f"{normal.topic_prefix}/state") == []
    assert connect("x", None, None, will=f"{seed.topic_prefix}/status").rc.is_failure


def test_a_client_retrying_an_unknown_login_costs_one_registry_read(broker, connect):
    """The registry read for a username the cache does not hold runs on the broker's
    loop (a network round trip on PostgreSQL): a client retrying a login nobody knows
    is answered from a short negative cache (broker/access.py MISS_TTL_S)."""
    before = broker.access.lookups
    for _ in range(20):
        c = connect("esp32_dht11_777", "esp32_dht11_777", "some-token")
        assert c.rc.is_failure
    # One read for the account table, one for the devices: not 40.
    assert broker.access.lookups - before == 2


def test_a_device_another_process_registers_is_found_once_the_miss_expires(
    broker, registry, connect, monkeypatch
):
    import broker.access as access_mod

    c = connect("esp32_dht11_001", "esp32_dht11_001", "not-yet")
    assert c.rc.is_failure  # nobody by that name yet: remembered as a miss
    # Another process (a shared registry) registers it; this broker is not told.
    issued = registry.register_device()
    assert issued.device.node_name == "esp32_dht11_001"
    node = issued.device.node_name
    assert connect(node, node, issued.token).rc.is_failure  # within MISS_TTL_S
    now = time.monotonic()
    monkeypatch.setattr(broker.access, "clock", lambda: now + access_mod.MISS_TTL_S + 1)
    assert connect(node, node, issued.token).rc == 0


def test_a_device_this_station_registers_is_known_at_once_despite_a_miss(broker, registry, connect):
    assert connect("esp32_dht11_001", "esp32_dht11_001", "x").rc.is_failure
    issued = registry.register_device()
    broker.device_registered(issued.device, issued.token)
    node = issued.device.node_name
    assert connect(node, node, issued.token).rc == 0
