"""Device operations (station/device_ops.py) and the command table (station/commands.py)
against a provisioned simulated device running the real firmware on the real broker."""

from __future__ import annotations

import json
import re
import runpy
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from support import wait_for

from station import commands
from station.commands import COMMANDS, CommandError
from station.device_ops import DeviceOps
from station.provisioning import BulkQueue

FIRMWARE = Path(__file__).parents[2] / "firmware"


# -- the table against the firmware ----------------------------------------------------------


def test_interval_range_is_the_firmwares():
    validate = runpy.run_path(str(FIRMWARE / "validate.py"))
    arg = COMMANDS["set_interval"].args[0]
    assert (arg.minimum, arg.maximum) == (validate["INTERVAL_MIN"], validate["INTERVAL_MAX"])
    for value in (-1, 0, 1, 2, 3599, 3600, 3601, True, False, 1.5, "5", None):
        firmware_takes = validate["is_interval"](value)
        try:
            arg.check(value)
            table_takes = True
        except CommandError:
            table_takes = False
        assert table_takes == firmware_takes, value


def test_every_command_the_firmware_handles_is_in_the_table_and_no_other():
    module = (FIRMWARE / "homemode.py").read_text()
    # The command handler alone: from _on_message to the next method.
    source = module[module.index("def _on_message") : module.index("def _reply")]
    handled = set(re.findall(r'cmd == "(\w+)"', source))
    assert handled == set(COMMANDS)
    refusals = set(re.findall(r'"error": "(\w+)"', source))
    assert refusals == set(commands.REFUSALS)


def test_payloads_are_checked():
    assert commands.build("identify") == {"cmd": "identify"}
    assert commands.build("set_interval", value=30) == {"cmd": "set_interval", "value": 30}
    with pytest.raises(CommandError, match="1 to 3600 s, got 0"):
        commands.build("set_interval", value=0)
    with pytest.raises(CommandError, match="needs value"):
        commands.build("set_interval")
    with pytest.raises(CommandError, match="takes no argument value"):
        commands.build("reboot", value=1)
    with pytest.raises(CommandError, match="unknown device command 'selfdestruct'"):
        commands.check({"cmd": "selfdestruct"})
    with pytest.raises(CommandError, match="needs a 'cmd' name"):
        commands.check({"value": 1})


# -- against a provisioned device ------------------------------------------------------------


class Watcher:
    """A full-access client of the station's broker recording every message."""

    def __init__(self, broker, topic: str = "#") -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"w{time.time_ns()}")
        self.c.username_pw_set(*broker.station_credentials())
        subscribed: list[bool] = []
        self.c.on_connect = lambda *_a: self.c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *_a: subscribed.append(True)
        self.c.on_message = lambda _c, _u, m: self.messages.append((m.topic, m.payload, m.retain))
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()
        wait_for(lambda: subscribed, 5)

    def payloads(self, topic: str) -> list[bytes]:
        return [p for t, p, _ in self.messages if t == topic]

    def replies(self, topic: str) -> list[dict]:
        return [json.loads(p) for p in self.payloads(topic)]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def provisioned(site):
    world = site["world"](1)
    station = site["station"](world)
    registry = site["registry"]
    home = registry.add_home("Smith", world.home_ssid)
    queue = BulkQueue(station)
    queue.add(queue.scan(), home)
    summary = queue.run(home, world.home_password)
    assert summary.ok, summary
    device = registry.devices()[0]
    watcher = Watcher(site["broker"])
    yield world, registry, site["broker"], device, watcher
    watcher.close()


def test_commands_from_the_table_are_answered_by_the_firmware(provisioned):
    _, registry, broker, device, watcher = provisioned
    ops = DeviceOps(registry, broker)
    event = f"{device.topic_prefix}/event"
    sent = ops.send(device.node_name, "set_interval", value=2)
    assert sent == {"cmd": "set_interval", "value": 2}
    ops.send(device.node_name, "identify")
    wait_for(lambda: len(watcher.replies(event)) >= 2, 10)
    replies = watcher.replies(event)
    assert replies[0] == {"cmd": "set_interval", "ok": True, "value": 2}
    assert replies[1] == {"cmd": "identify", "ok": True}
    # The table names the reply's fields; the words a person reads come from it too.
    assert set(replies[0]) - {"cmd", "ok"} == set(COMMANDS["set_interval"].replies)
    assert commands.describe_reply(replies[0]) == "Set interval: done (value 2)"
    audit = [e for e in registry.events(device) if e.kind == "command"]
    assert [e.data for e in reversed(audit)] == [sent, {"cmd": "identify"}]


def test_a_value_the_firmware_refuses_is_never_published(provisioned):
    _, registry, broker, device, watcher = provisioned
    ops = DeviceOps(registry, broker)
    cmd_topic = f"{device.topic_prefix}/cmd"
    with pytest.raises(CommandError, match="1 to 3600"):
        ops.send(device.node_name, "set_interval", value=0)
    with pytest.raises(CommandError):
        broker.send_command(device, {"cmd": "set_interval", "value": 99999})
    # Published around the table, the firmware refuses it itself: the table says the same.
    watcher.c.publish(cmd_topic, json.dumps({"cmd": "set_interval", "value": 0}), qos=1)
    event = f"{device.topic_prefix}/event"
    wait_for(lambda: watcher.replies(event), 10)
    reply = watcher.replies(event)[0]
    assert reply["ok"] is False and reply["error"] in commands.REFUSALS
    assert "refused by the device" in commands.describe_reply(reply)
    assert watcher.payloads(cmd_topic) == [b'{"cmd": "set_interval", "value": 0}']
    assert [e.kind for e in registry.events(device)].count("command") == 0


def test_remove_clears_the_devices_retained_topics_and_revokes_its_login(provisioned):
    world, registry, broker, device, watcher = provisioned
    node, prefix = device.node_name, device.topic_prefix
    discovery = [
        f"homeassistant/sensor/{node}_temperature/config",
        f"homeassistant/sensor/{node}_humidity/config",
    ]
    wait_for(lambda: all(watcher.payloads(t) for t in discovery), 10)
    assert set(discovery) <= set(broker.retained_topics("homeassistant/#"))

    removal = DeviceOps(registry, broker).remove(node)

    assert set(removal.cleared) == {*discovery, f"{prefix}/status", f"{prefix}/info"}
    # Home Assistant, subscribed now, is told each config is gone (an empty document).
    for topic in discovery:
        wait_for(lambda: watcher.payloads(topic)[-1:] == [b""], 5)
    # A newcomer (HA restarting) gets nothing of the device any more.
    late = Watcher(broker)
    try:
        time.sleep(0.5)
        assert not [t for t, _, retained in late.messages if retained and node in t]
    finally:
        late.close()
    assert registry.devices() == []
    assert broker.access._device(node) is None
    # The device, still running with its old token, is refused from now on.
    sim = world.fleet.devices[0]
    sim.stop()
    sim.start()
    wait_for(lambda: "not authorized" in sim.log_text() or "refused" in sim.log_text(), 20)
    assert not registry.devices()
    events = [e.message for e in registry.events()]
    assert any(m.startswith(f"removed {node} from the registry; cleared 4") for m in events)
