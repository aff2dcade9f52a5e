"""Topic access rules of PROTOCOL.md section 2, through real clients."""

from __future__ import annotations

import time

import pytest
from support import wait_for

from broker.access import AccessControl, Principal, Role
from station.commands import CommandError

REFUSED = 0x80


@pytest.fixture
def two_devices(registry, broker, connect):
    a = registry.register_device()
    b = registry.register_device()
    clients = {}
    for issued in (a, b):
        node = issued.device.node_name
        clients[node] = connect(
            node, node, issued.token, will=f"{issued.device.topic_prefix}/status"
        )
        assert clients[node].rc == 0
    return a, b, clients


def test_subscribe_matrix(two_devices):
    a, b, clients = two_devices
    me = clients[a.device.node_name]
    own = a.device.topic_prefix
    assert me.subscribe(f"{own}/cmd") == [1]
    assert me.subscribe(f"{own}/#") == [1]
    assert me.subscribe(f"{b.device.topic_prefix}/cmd") == [REFUSED]
    assert me.subscribe(f"{b.device.topic_prefix}/#") == [REFUSED]
    assert me.subscribe("#") == [REFUSED]
    assert me.subscribe("home/+/state") == [REFUSED]
    assert me.subscribe("$SYS/#") == [REFUSED]
    assert me.subscribe(f"homeassistant/sensor/{a.device.node_name}_temperature/config") == [
        REFUSED
    ]


def test_publish_matrix(two_devices, station_client):
    a, b, clients = two_devices
    me = clients[a.device.node_name]
    assert station_client.subscribe("#") == [1]
    own, other = a.device.topic_prefix, b.device.topic_prefix
    node = a.device.node_name
    me.publish(f"{own}/state", b'{"temperature": 20}')
    me.publish(f"{other}/state", b'{"temperature": 99}')
    me.publish(f"homeassistant/sensor/{node}_temperature/config", b"{}", retain=True)
    me.publish(f"homeassistant/sensor/{b.device.node_name}_temperature/config", b"{}")
    me.publish("homeassistant/sensor/x/config", b"{}")
    me.publish("elsewhere/topic", b"x")
    # A marker published last: once it arrives, everything before it has been routed.
    me.publish(f"{own}/event", b'{"marker": true}')
    wait_for(lambda: station_client.received(f"{own}/event"))
    assert station_client.received(f"{own}/state") == [b'{"temperature": 20}']
    assert station_client.received(f"{other}/state") == []
    assert station_client.received(f"homeassistant/sensor/{node}_temperature/config") == [b"{}"]
    assert (
        station_client.received(f"homeassistant/sensor/{b.device.node_name}_temperature/config")
        == []
    )
    assert station_client.received("homeassistant/sensor/x/config") == []
    assert station_client.received("elsewhere/topic") == []


def test_device_receives_only_its_own_commands(two_devices, station_client):
    a, b, clients = two_devices
    me, them = clients[a.device.node_name], clients[b.device.node_name]
    me.subscribe(f"{a.device.topic_prefix}/cmd")
    them.subscribe(f"{b.device.topic_prefix}/cmd")
    station_client.publish(f"{b.device.topic_prefix}/cmd", b'{"cmd":"identify"}')
    station_client.publish(f"{a.device.topic_prefix}/cmd", b'{"cmd":"reboot"}')
    wait_for(lambda: me.received(f"{a.device.topic_prefix}/cmd"))
    wait_for(lambda: them.received(f"{b.device.topic_prefix}/cmd"))
    assert [t for t, _, _ in me.messages] == [f"{a.device.topic_prefix}/cmd"]
    assert [t for t, _, _ in them.messages] == [f"{b.device.topic_prefix}/cmd"]


def test_send_command_reaches_device(two_devices, broker, registry):
    a, _, clients = two_devices
    me = clients[a.device.node_name]
    me.subscribe(f"{a.device.topic_prefix}/cmd")
    broker.send_command(a.device, {"cmd": "set_interval", "value": 5})
    got = wait_for(lambda: me.received(f"{a.device.topic_prefix}/cmd"))
    assert got == [b'{"cmd": "set_interval", "value": 5}']
    # What the device would refuse is never published (station/commands.py).
    with pytest.raises(CommandError):
        broker.send_command(a.device, {"cmd": "set_interval", "value": 0})
    with pytest.raises(CommandError):
        broker.send_command(a.device, {"cmd": "self_destruct"})
    time.sleep(0.3)
    assert len(me.received(f"{a.device.topic_prefix}/cmd")) == 1


# The rules themselves, including corner cases that are awkward to reach with a client.
DEV = Principal(Role.DEVICE, "esp32_dht11_001", "home/esp32_dht11_001", "esp32_dht11_001")


@pytest.mark.parametrize(
    ("topic", "allowed"),
    [
        ("home/esp32_dht11_001/state", True),
        ("home/esp32_dht11_001/a/b", True),
        ("home/esp32_dht11_001", False),  # the prefix itself is not under it
        ("home/esp32_dht11_0011/state", False),  # a longer node name with the same start
        ("home/esp32_dht11_002/state", False),
        ("homeassistant/sensor/esp32_dht11_001_temperature/config", True),
        ("homeassistant/binary_sensor/esp32_dht11_001_x/config", True),
        ("homeassistant/sensor/esp32_dht11_001/config", False),
        ("homeassistant/sensor/esp32_dht11_002_temperature/config", False),
        ("homeassistant//esp32_dht11_001_t/config", False),
        ("homeassistant/sensor/esp32_dht11_001_t/config/extra", False),
        ("$SYS/broker", False),
    ],
)
def test_publish_rule(topic, allowed):
    assert AccessControl.may_publish(DEV, topic) is allowed


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("home/esp32_dht11_001/cmd", True),
        ("home/esp32_dht11_001/#", True),
        ("home/esp32_dht11_001/+", True),
        ("home/+/cmd", False),
        ("home/#", False),
        ("+/esp32_dht11_001/cmd", False),
        ("#", False),
        ("$SYS/#", False),
    ],
)
def test_subscribe_rule(topic_filter, allowed):
    assert AccessControl.may_subscribe(DEV, topic_filter) is allowed


def test_monitor_never_publishes_nor_sees_sys():
    mon = Principal(Role.MONITOR, None)
    assert not AccessControl.may_publish(mon, "home/x/state")
    assert AccessControl.may_subscribe(mon, "home/#")
    assert not AccessControl.may_subscribe(mon, "$SYS/#")
    assert not AccessControl.may_receive(mon, "$SYS/broker/uptime")


def test_retained_messages_of_other_devices_never_leak(registry, broker, connect, station_client):
    """amqtt 0.12.1 replays retained messages matching other clients' filters to each new
    client; the station's broker must not."""
    station_client.subscribe("#")
    a, b = registry.register_device(), registry.register_device()
    na, nb = a.device.node_name, b.device.node_name
    dev_b = connect(nb, nb, b.token)
    dev_b.publish(f"{b.device.topic_prefix}/info", b'{"chip_id": "B"}', retain=True)
    dev_b.publish(f"{b.device.topic_prefix}/status", b"online", retain=True)
    dev_a = connect(na, na, a.token)
    dev_a.publish(f"{a.device.topic_prefix}/status", b"online", retain=True)
    dev_a.subscribe(f"{a.device.topic_prefix}/#")
    wait_for(lambda: dev_a.received(f"{a.device.topic_prefix}/status"))
    assert [t for t, _, _ in dev_a.messages] == [f"{a.device.topic_prefix}/status"]
    # A subscription still gets its own retained message, flagged as retained.
    assert dev_a.messages[0][2] is True


def test_retained_message_delivered_on_subscribe(registry, broker, connect, station_client):
    a = registry.register_device()
    station_client.publish(f"{a.device.topic_prefix}/cmd", b'{"cmd":"identify"}', retain=True)
    node = a.device.node_name
    dev = connect(node, node, a.token)
    dev.subscribe(f"{a.device.topic_prefix}/cmd")
    got = wait_for(lambda: dev.received(f"{a.device.topic_prefix}/cmd"))
    assert got == [b'{"cmd":"identify"}']


def test_a_retained_message_published_just_before_subscribing_arrives_once(
    registry, broker, connect
):
    """A device publishes a retained message (acknowledged) and at once subscribes to
    its topic: it gets the message once, as the retained replay, never also live
    (routing runs behind the PUBACK; a SUBSCRIBE waits for what was queued before it)."""
    a = registry.register_device()
    node, prefix = a.device.node_name, a.device.topic_prefix
    dev = connect(node, node, a.token)
    for n in range(30):
        topic = f"{prefix}/r{n}"
        dev.publish(topic, f"m{n}".encode(), retain=True)
        dev.subscribe(topic)
        wait_for(lambda t=topic: dev.received(t))
        time.sleep(0.05)  # a second copy would follow within this
        assert dev.received(topic) == [f"m{n}".encode()], n
