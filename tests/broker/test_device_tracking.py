"""The registry follows devices live through the real broker."""

from __future__ import annotations

import json
import socket
import time

import pytest
from support import free_port, wait_for

from broker import BrokerStartError, EmbeddedBroker
from station.registry import Registry
from station.settings import BrokerSettings

INFO = {
    "chip_id": "A4CF12EF5678",
    "model": "esp32-dht11",
    "firmware": "1.0.0",
    "ip": "192.168.29.57",
    "node_name": "esp32_dht11_001",
}


@pytest.fixture
def device(registry, broker):
    home = registry.add_home("Smith", "MyHomeWiFi")
    issued = registry.register_device(
        home=home, name="Living Room Sensor", requested_chip_id="temp_1234567890"
    )
    broker.device_registered(issued.device)
    return issued


def join(connect, issued, keepalive=30):
    node, prefix = issued.device.node_name, issued.device.topic_prefix
    c = connect(node, node, issued.token, will=f"{prefix}/status", keepalive=keepalive)
    assert c.rc == 0
    c.publish(f"{prefix}/status", "online", retain=True)
    return c


def test_first_online_completes_provisioning(device, connect, registry, broker):
    updates = []
    broker.add_listener(updates.append)
    join(connect, device)
    wait_for(lambda: registry.device(device.device.node_name).online)
    dev = registry.device(device.device.node_name)
    assert dev.online and dev.is_provisioned and dev.provisioned_at is not None
    job = registry.job(device.job.provisioning_id)
    assert job.is_provisioned and job.status == "done" and job.progress == 100
    assert job.connected_at is not None
    wait_for(lambda: updates)
    assert [(u.kind, u.provisioned) for u in updates] == [("online", True)]
    assert registry.events(dev)[0].kind == "provisioned"


def test_info_and_state_are_recorded(device, connect, registry, broker):
    c = join(connect, device)
    prefix = device.device.topic_prefix
    c.publish(f"{prefix}/info", json.dumps(INFO), retain=True)
    for t in (21.5, 22.0):
        c.publish(
            f"{prefix}/state",
            json.dumps(
                {"temperature": t, "humidity": 40.0, "rssi": -60, "uptime": 12, "heap_free": 81234}
            ),
        )
    c.publish(
        f"{prefix}/state",
        json.dumps({"temperature": None, "humidity": None, "rssi": -61, "error": "sensor_timeout"}),
    )
    wait_for(lambda: len(registry.readings(registry.device(device.device.node_name))) == 3)
    dev = registry.device(device.device.node_name)
    assert (dev.chip_id, dev.firmware, dev.ip, dev.model) == (
        "A4CF12EF5678",
        "1.0.0",
        "192.168.29.57",
        "esp32-dht11",
    )
    assert dev.last_state == {
        "temperature": None,
        "humidity": None,
        "rssi": -61,
        "error": "sensor_timeout",
    }
    temps = [r.temperature for r in registry.readings(dev)]
    assert temps == [21.5, 22.0, None]


def test_bad_payload_is_logged_not_fatal(device, connect, registry, broker):
    c = join(connect, device)
    prefix = device.device.topic_prefix
    c.publish(f"{prefix}/state", b"\xff\xfe not json")
    c.publish(f"{prefix}/state", json.dumps({"temperature": 19.0}))
    wait_for(
        lambda: (
            (registry.device(device.device.node_name).last_state or {}).get("temperature") == 19.0
        )
    )
    kinds = [e.kind for e in registry.events(registry.device(device.device.node_name))]
    assert "bad_payload" in kinds


def test_will_marks_offline(device, connect, registry, broker):
    c = join(connect, device)
    wait_for(lambda: registry.device(device.device.node_name).online)
    c.mqtt.socket().close()  # connection lost without DISCONNECT: the will fires
    wait_for(lambda: not registry.device(device.device.node_name).online, 5)


def test_clean_disconnect_without_will_marks_offline(device, connect, registry, broker):
    node = device.device.node_name
    c = connect(node, node, device.token)  # no will at all
    c.publish(f"{device.device.topic_prefix}/status", "online", retain=True)
    wait_for(lambda: registry.device(node).online)
    c.close()
    wait_for(lambda: not registry.device(node).online, 5)


def test_silent_client_dropped_within_keepalive_grace(device, connect, registry, station_client):
    """amqtt 0.12.1 never enforces keep-alive (issue #308); broker.keepalive does."""
    keepalive = 2
    prefix = device.device.topic_prefix
    station_client.subscribe(f"{prefix}/status")
    c = join(connect, device, keepalive=keepalive)
    wait_for(lambda: station_client.received(f"{prefix}/status") == [b"online"])
    c.go_silent()
    silent_at = time.monotonic()
    wait_for(lambda: b"offline" in station_client.received(f"{prefix}/status"), 2 * keepalive)
    elapsed = time.monotonic() - silent_at
    assert elapsed <= 1.5 * keepalive + 0.3, elapsed
    wait_for(lambda: not registry.device(device.device.node_name).online, 2)


def test_reconnect_closes_old_connection_and_stays_online(device, connect, registry, broker):
    updates = []
    broker.add_listener(updates.append)
    old = join(connect, device)
    old.go_silent()  # the old TCP connection lingers, as after a WiFi drop
    new = join(connect, device)
    new.publish(f"{device.device.topic_prefix}/event", b'{"marker": 1}')
    wait_for(lambda: any(u.kind == "event" for u in updates))
    kinds = [u.kind for u in updates]
    # The old connection's end is recorded before the new `online`, never after it.
    assert kinds == ["online", "offline", "online", "event"], kinds
    assert registry.device(device.device.node_name).online
    assert broker.clients_connected == 1


def test_unregistered_prefix_is_ignored(registry, broker, station_client):
    updates = []
    broker.add_listener(updates.append)
    station_client.publish("home/ghost_device/status", "online", retain=True)
    time.sleep(0.3)
    assert registry.devices() == []
    assert updates == []


def test_restart_keeps_registry(tmp_path, connect):
    path = str(tmp_path / "reg.sqlite3")
    reg = Registry(path)
    issued = reg.register_device(name="Kitchen")
    reg.close()
    port = free_port()
    for round_ in range(2):
        reg = Registry(path)
        b = EmbeddedBroker(
            reg, BrokerSettings(bind_host="127.0.0.1", port=port), flush_interval_s=0.01
        )
        b.start()
        try:
            node = issued.device.node_name
            c = connect(node, node, issued.token, port=port)
            assert c.rc == 0, f"round {round_}: issued token must survive a restart"
            c.publish(f"{issued.device.topic_prefix}/status", "online", retain=True)
            wait_for(lambda: reg.device(node).is_provisioned)
            c.close()
        finally:
            b.stop()
        dev = reg.device(node)
        assert dev.name == "Kitchen" and dev.is_provisioned
        reg.close()


def test_port_in_use_gives_clear_error(registry):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = EmbeddedBroker(registry, BrokerSettings(bind_host="127.0.0.1", port=port))
        with pytest.raises(BrokerStartError, match=f"port {port} .* already in use"):
            b.start()
        assert not b.running
