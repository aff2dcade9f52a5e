"""A home whose devices report to a real Mosquitto 2.0.11 (dynamic-security plugin)
instead of the station's embedded broker: provisioned with the real firmware on the
simulated site, online there, followed there by the station, refused there when they
stray or are removed. And the batch that must not start because that broker cannot
take devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Mosquitto
from support import FAST, wait_for

from station.broker_target import parse
from station.device_ops import DeviceOps
from station.external_broker import ExternalBroker
from station.provisioning import BulkQueue, Station
from station.registry import Registry
from station.settings import ProvisioningSettings
from station.sim.demo import DemoWorld
from station.wifi.journal import Journal

pytestmark = pytest.mark.timeout(180)
ADMIN = ("admin", "admin-secret")


@pytest.fixture
def mosq(tmp_path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN) as m:
        yield m


@pytest.fixture
def home_site(tmp_path, mosq) -> Iterator[dict]:
    """Two devices provisioned to the Mosquitto by the station's bulk queue."""
    registry = Registry(str(tmp_path / "registry.sqlite3"))
    target = parse(f"mqtt://127.0.0.1:{mosq.port}")
    ext = ExternalBroker(registry, target, ADMIN, reading_min_interval_s=0, flush_interval_s=0.01)
    ext.start()
    world = DemoWorld(2, 1, root=tmp_path / "site", timing=FAST, reach=[f"127.0.0.1:{mosq.port}"])
    world.start()
    try:
        station = Station(
            registry,
            ext,
            world.wifi(),
            ProvisioningSettings(online_timeout_s=20, wifi_connect_timeout_s=10),
            *ext.address,
            Journal(tmp_path / "journal.json"),
        )
        home = registry.add_home("Customer", world.home_ssid, broker_url=target.url)
        queue = BulkQueue(station)
        queue.add(queue.scan(), home)
        summary = queue.run(home, world.home_password)
        assert summary.ok, summary
        yield {"registry": registry, "ext": ext, "world": world, "mosq": mosq}
    finally:
        world.stop()
        ext.stop()
        registry.close()


def device_login(world: DemoWorld, node: str) -> tuple[str, str]:
    """What the device was given at provisioning (its stored MQTT settings)."""
    for sim in world.fleet.devices:
        cfg = sim.config() or {}
        if cfg.get("mqtt", {}).get("username") == node:
            return cfg["mqtt"]["username"], cfg["mqtt"]["password"]
    raise AssertionError(f"no simulated device holds {node}'s login")


def test_devices_come_online_on_the_home_broker_and_stay_tracked(home_site):
    registry, mosq = home_site["registry"], home_site["mosq"]
    devices = registry.devices()
    assert [d.node_name for d in devices] == ["esp32_dht11_001", "esp32_dht11_002"]
    assert all(d.is_provisioned and d.online for d in devices)
    log = mosq.log_path.read_text()
    for d in devices:  # they are Mosquitto's clients, logged in with their own names
        assert f"as {d.node_name} " in log and f"u'{d.node_name}'" in log
    # Live readings reach the registry through the station's client on that broker.
    wait_for(
        lambda: all(
            (registry.device(d.node_name).last_state or {}).get("temperature") for d in devices
        ),
        20,
    )


def test_a_cross_device_publish_is_refused_there(home_site):
    registry, world, mosq = home_site["registry"], home_site["world"], home_site["mosq"]
    a, b = registry.devices()
    user, token = device_login(world, a.node_name)
    seen: list[str] = []
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="spy")
    spy.username_pw_set(*ADMIN)  # the admin role may read everything
    spy.on_message = lambda _c, _u, msg: seen.append(msg.topic)
    spy.connect("127.0.0.1", mosq.port)
    spy.loop_start()
    imposter = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{a.node_name}")
    imposter.username_pw_set(user, token)
    try:
        spy.subscribe("home/#", 1)
        wait_for(lambda: seen, 15)  # the fleet's own traffic flows
        imposter.connect("127.0.0.1", mosq.port)
        imposter.loop_start()
        imposter.publish(f"{b.topic_prefix}/cmd", '{"cmd":"reboot"}', qos=1).wait_for_publish(5)
        imposter.publish(f"{a.topic_prefix}/event", '{"marker":1}', qos=1).wait_for_publish(5)
        wait_for(lambda: f"{a.topic_prefix}/event" in seen, 10)
        assert f"{b.topic_prefix}/cmd" not in seen
    finally:
        imposter.disconnect()
        imposter.loop_stop()
        spy.disconnect()
        spy.loop_stop()


def test_a_removed_device_is_refused_there(home_site):
    registry, ext, world = home_site["registry"], home_site["ext"], home_site["world"]
    device = registry.devices()[0]
    removal = DeviceOps(registry, ext).remove(device)
    assert f"homeassistant/sensor/{device.node_name}_temperature/config" in removal.cleared
    assert ext.retained_topics(f"{device.topic_prefix}/#") == []
    sim = next(
        d for d in world.fleet.devices if (d.config() or {})["mqtt"]["username"] == device.node_name
    )
    sim.stop()
    sim.start()
    wait_for(lambda: "connection refused, code 5" in sim.log_text(), 20)
    assert [d.node_name for d in registry.devices()] == ["esp32_dht11_002"]


def test_a_batch_does_not_start_when_the_home_broker_cannot_take_devices(tmp_path, mosq):
    env = dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
        STATION_DEMO_TIMING="fast",
    )
    station = [sys.executable, "-m", "station", "provision", "--demo", "1", "--broker"]
    wrong = subprocess.run(
        [*station, f"mqtt://admin:wrong-password@127.0.0.1:{mosq.port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "its broker cannot take devices, so nothing was configured" in wrong.stderr
    assert "refused the admin login 'admin'" in wrong.stderr
    assert "wrong-password" not in wrong.stdout + wrong.stderr
    assert "registering" not in wrong.stdout and "Traceback" not in wrong.stderr

    with Mosquitto(tmp_path / "plain", users={"admin": "pw"}) as plain:
        no_plugin = subprocess.run(
            [*station, f"mqtt://admin:pw@127.0.0.1:{plain.port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert no_plugin.returncode == 2
    assert "dynamic-security plugin loaded" in no_plugin.stderr
    assert "registering" not in no_plugin.stdout


def test_demo_batch_to_a_real_mosquitto_from_the_command_line(tmp_path, mosq):
    env = dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
        STATION_DEMO_TIMING="fast",
    )
    url = f"mqtt://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}"
    proc = subprocess.run(
        [sys.executable, "-m", "station", "provision", "--demo", "3", "--broker", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"Broker: mqtt://127.0.0.1:{mosq.port}" in proc.stdout
    assert "3 of 3 devices online" in proc.stdout
    assert ADMIN[1] not in proc.stdout + proc.stderr
    log = mosq.log_path.read_text()
    for n in (1, 2, 3):
        assert f"as esp32_dht11_00{n} " in log
    dynsec = json.loads(Path(mosq.workdir / "dynsec.json").read_text())
    assert {c["username"] for c in dynsec["clients"]} >= {f"esp32_dht11_00{n}" for n in (1, 2, 3)}


def test_a_command_from_the_cli_reaches_a_device_on_its_homes_broker(
    tmp_path, home_site, memory_keyring, capsys
):
    """`station devices command NODE identify` for a device of a home with its own
    broker goes through that broker (not the station's), and prints the device's
    answer."""
    from station.cli import main
    from station.secrets import SecretStore

    registry, mosq = home_site["registry"], home_site["mosq"]
    target = parse(f"mqtt://127.0.0.1:{mosq.port}")
    SecretStore().set_broker_login(target.key, *ADMIN)  # as `homes add --broker` left it
    node = registry.devices()[0].node_name
    rc = main(["--db", str(tmp_path / "registry.sqlite3"), "devices", "command", node, "identify"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.startswith(f"{node}: ") and "no answer" not in out
