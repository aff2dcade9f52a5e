"""Tools that are not devices, the way a user connects them: `station accounts add` in
a subprocess on the running station's registry, then Home Assistant (a client behaving
as HA's MQTT integration does by default) and `mosquitto_sub` with that login, watching a
provisioned device that runs the real firmware."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from mosquitto import binary
from support import STATION, station_cli, wait_for

pytestmark = pytest.mark.timeout(180)


def add_account(env: dict, db: str, name: str, role: str) -> str:
    out = station_cli(env, "--db", db, "accounts", "add", name, "--role", role)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    password = lines[-1]
    # The password alone on the last line, and nowhere else.
    assert len(password) >= 40 and " " not in password
    assert password not in "\n".join(lines[:-1]) + out.stderr
    return password


class HomeAssistantLike:
    """What HA's MQTT integration does with default options: log in with a will
    `offline` on homeassistant/status, publish the birth `online` there, subscribe to
    `homeassistant/#` for discovery, then to each discovered entity's state and
    availability topics."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.rc = None
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed: set[str] = set()
        self.disconnected = False
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="homeassistant-e2e")
        m.username_pw_set(username, password)
        m.will_set("homeassistant/status", "offline", qos=0, retain=False)
        m.on_connect = self._on_connect
        m.on_message = self._on_message
        m.on_disconnect = lambda *_a: setattr(self, "disconnected", True)
        self.m = m
        m.connect("127.0.0.1", port, keepalive=60)
        m.loop_start()
        wait_for(lambda: self.rc is not None, 5)

    def _on_connect(self, c, _u, _f, rc, _p) -> None:
        self.rc = rc
        if rc.is_failure:
            c.disconnect()
            return
        c.publish("homeassistant/status", "online", qos=0, retain=False)
        c.subscribe("homeassistant/#", 0)

    def _on_message(self, c, _u, msg) -> None:
        self.messages.append((msg.topic, msg.payload))
        if msg.topic.endswith("/config") and msg.payload:
            doc = json.loads(msg.payload)
            for key in ("state_topic", "availability_topic"):
                topic = doc[key]
                if topic not in self.subscribed:
                    self.subscribed.add(topic)
                    c.subscribe(topic, 0)

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.m.disconnect()
        self.m.loop_stop()


def test_home_assistant_with_an_observer_account_sees_discovery_and_live_states(running):
    env, db, registry, broker, _world, device = running
    password = add_account(env, db, "homeassistant", "observer")
    ha = HomeAssistantLike(broker.port, "homeassistant", password)
    try:
        assert ha.rc == 0
        node, prefix = device.node_name, device.topic_prefix
        for kind in ("temperature", "humidity"):
            wait_for(lambda k=kind: ha.payloads(f"homeassistant/sensor/{node}_{k}/config"), 10)
        assert ha.subscribed == {f"{prefix}/state", f"{prefix}/status"}
        wait_for(lambda: b"online" in ha.payloads(f"{prefix}/status"), 10)  # retained
        # Live states: new readings keep arriving (the firmware reports on its interval).
        wait_for(lambda: len(ha.payloads(f"{prefix}/state")) >= 2, 20)
        state = json.loads(ha.payloads(f"{prefix}/state")[-1])
        assert isinstance(state["temperature"], (int, float))
        assert isinstance(state["humidity"], (int, float))
        # The registry saw the same device online, and nothing was refused.
        assert registry.device(node).online
        assert broker.hub.denied == 0
    finally:
        ha.close()


def test_mosquitto_sub_with_an_observer_account_reads_device_topics_and_sys(running):
    env, db, _registry, broker, _world, device = running
    password = add_account(env, db, "monitor", "observer")
    sub = subprocess.run(
        [
            binary("mosquitto_sub"),
            *("-h", "127.0.0.1", "-p", str(broker.port), "-V", "mqttv311"),
            *("-u", "monitor", "-P", password, "-i", "mosquitto-sub-e2e"),
            *("-t", f"{device.topic_prefix}/state", "-t", "$SYS/broker/uptime"),
            *("-t", "$SYS/broker/clients/connected", "-v", "-C", "4", "-W", "30"),
        ],
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert sub.returncode == 0, sub.stderr
    lines = sub.stdout.splitlines()
    topics = {line.split(" ", 1)[0] for line in lines}
    assert {"$SYS/broker/uptime", "$SYS/broker/clients/connected"} <= topics
    state = next(line for line in lines if line.startswith(f"{device.topic_prefix}/state "))
    assert "temperature" in json.loads(state.split(" ", 1)[1])


def test_mosquitto_sub_with_a_wrong_password_is_refused(running):
    env, db, _registry, broker, _world, _device = running
    add_account(env, db, "monitor", "observer")
    sub = subprocess.run(
        [
            binary("mosquitto_sub"),
            *("-h", "127.0.0.1", "-p", str(broker.port), "-V", "mqttv311"),
            *("-u", "monitor", "-P", "guess", "-t", "#", "-C", "1", "-W", "10"),
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert sub.returncode != 0
    assert "not authorised" in sub.stderr.lower() or "refused" in sub.stderr.lower()


def test_operator_account_sends_a_command_the_firmware_answers(running):
    env, db, _registry, broker, _world, device = running
    password = add_account(env, db, "nodered", "operator")
    got: list[dict] = []
    m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="node-red-e2e")
    m.username_pw_set("nodered", password)
    m.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload))
    m.connect("127.0.0.1", broker.port)
    m.loop_start()
    try:
        m.subscribe(f"{device.topic_prefix}/event", 1)
        time.sleep(0.3)
        m.publish(f"{device.topic_prefix}/cmd", '{"cmd":"identify"}', qos=1).wait_for_publish(5)
        wait_for(lambda: any(d.get("cmd") == "identify" and d.get("ok") for d in got), 10)
    finally:
        m.disconnect()
        m.loop_stop()


def test_remove_and_rotate_on_the_running_station_end_the_old_login(running):
    env, db, _registry, broker, _world, _device = running
    password = add_account(env, db, "homeassistant", "observer")
    ha = HomeAssistantLike(broker.port, "homeassistant", password)
    assert ha.rc == 0
    out = station_cli(env, "--db", db, "accounts", "rotate", "homeassistant")
    assert out.returncode == 0, out.stderr
    new = out.stdout.splitlines()[-1]
    assert new != password and "running station closed its connections" in out.stdout
    wait_for(lambda: ha.disconnected, 5)
    ha.close()
    old = HomeAssistantLike(broker.port, "homeassistant", password)
    assert old.rc.is_failure
    old.close()
    ha = HomeAssistantLike(broker.port, "homeassistant", new)
    assert ha.rc == 0

    out = station_cli(env, "--db", db, "accounts", "remove", "homeassistant", "--yes")
    assert out.returncode == 0, out.stderr
    assert "Removed the account 'homeassistant'" in out.stdout
    wait_for(lambda: ha.disconnected, 5)
    ha.close()
    again = HomeAssistantLike(broker.port, "homeassistant", new)
    assert again.rc.is_failure
    again.close()
    listed = station_cli(env, "--db", db, "accounts", "list")
    assert "No accounts yet" in listed.stdout


def test_station_broker_entry_point_serves_an_account_and_sys(user_env):
    """`station broker` as a user starts it; the account is made afterwards by the CLI,
    read by mosquitto_sub, and removed while the broker runs."""
    env = {**os.environ, **user_env}
    proc = subprocess.Popen(
        [STATION, "broker", "--bind", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        port = int(re.match(r"broker listening on 127\.0\.0\.1:(\d+)", line).group(1))
        out = station_cli(env, "accounts", "add", "grafana", "--role", "observer")
        assert out.returncode == 0, out.stderr
        password = out.stdout.splitlines()[-1]
        sub = subprocess.run(
            [
                binary("mosquitto_sub"),
                *("-h", "127.0.0.1", "-p", str(port), "-u", "grafana", "-P", password),
                *("-t", "$SYS/broker/version", "-t", "$SYS/broker/uptime", "-v"),
                *("-C", "2", "-W", "20"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert sub.returncode == 0, sub.stderr
        assert re.search(r"^\$SYS/broker/version station version \S+ \(amqtt", sub.stdout, re.M)
        assert re.search(r"^\$SYS/broker/uptime \d+ seconds$", sub.stdout, re.M)
        out = station_cli(env, "accounts", "remove", "grafana", "--yes")
        assert out.returncode == 0 and "running station closed its connections" in out.stdout
        refused = subprocess.run(
            [
                binary("mosquitto_sub"),
                *("-h", "127.0.0.1", "-p", str(port), "-u", "grafana", "-P", password),
                *("-t", "$SYS/#", "-C", "1", "-W", "10"),
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert refused.returncode != 0
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert password not in err  # never logged
    assert "refused client" in err and "unknown user 'grafana'" in err
