"""A station that was killed left its devices `online` in the registry. Started again on
the same database, its broker marks them offline before anyone can read the table, and
they read online again once they have reconnected."""

from __future__ import annotations

from support import FAST, free_port, wait_for

from broker import EmbeddedBroker
from station.provisioning import BulkQueue, Station
from station.registry import Registry
from station.registry.models import Device
from station.settings import BrokerSettings, ProvisioningSettings
from station.sim.demo import DemoWorld
from station.wifi.journal import Journal


def _broker(registry: Registry, port: int) -> EmbeddedBroker:
    return EmbeddedBroker(
        registry, BrokerSettings(bind_host="127.0.0.1", port=port), flush_interval_s=0.01
    )


def test_devices_read_offline_right_after_a_restart(tmp_path):
    port = free_port()
    db = str(tmp_path / "registry.sqlite3")
    registry = Registry(db)
    with DemoWorld(2, port, root=tmp_path / "site", timing=FAST) as world:
        broker = _broker(registry, port)
        broker.start()
        try:
            home = registry.add_home("Smith", world.home_ssid)
            station = Station(
                registry,
                broker,
                world.wifi(),
                ProvisioningSettings(online_timeout_s=20, wifi_connect_timeout_s=10),
                *world.broker_address,
                Journal(tmp_path / "journal.json"),
            )
            queue = BulkQueue(station)
            queue.add(queue.scan(), home)
            assert queue.run(home, world.home_password).ok
        finally:
            broker.stop()
        registry.close()
        # What a killed station leaves behind (a clean stop writes the disconnects).
        registry = Registry(db)
        Device.update(online=True).execute()
        assert all(d.online for d in registry.devices())

        told = []
        broker = _broker(registry, port)
        broker.add_listener(told.append)
        broker.start()
        try:
            # At once: nothing is connected to this broker yet.
            devices = registry.devices()
            assert [d.online for d in devices] == [False, False]
            assert sorted((u.node_name, u.kind, u.online) for u in told) == [
                (d.node_name, "offline", False) for d in devices
            ]
            for dev in devices:
                assert registry.events(dev)[0].kind == "offline"
            # The devices' reconnect backoff brings them back to the new broker.
            wait_for(lambda: all(d.online for d in registry.devices()), timeout=20)
            assert broker.clients_connected == 2
        finally:
            broker.stop()
            registry.close()


def test_a_second_broker_that_cannot_start_marks_nothing_offline(registry, broker, connect):
    """`station provision` started while a station runs on the same database: its
    broker finds the port taken and must leave the running station's devices alone."""
    import pytest

    from broker.server import BrokerStartError

    issued = registry.register_device()
    broker.device_registered(issued.device)
    node, prefix = issued.device.node_name, issued.device.topic_prefix
    device = connect(node, node, issued.token, will=f"{prefix}/status")
    assert device.rc == 0
    device.publish(f"{prefix}/status", "online", retain=True)
    wait_for(lambda: registry.device(node).online)

    second = _broker(registry, broker.port)
    with pytest.raises(BrokerStartError, match="already in use"):
        second.start()
    assert registry.device(node).online
    assert registry.events(registry.device(node))[0].kind != "offline"
