"""The Devices tab against the real broker: real MQTT clients play the devices."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from PySide6.QtCore import Qt

from station.registry.models import Event, Reading, utcnow
from station.ui.bridge import StationBridge
from station.ui.chart import MAX_POINTS
from station.ui.devices_model import STATE, STATE_COLOURS, TEMPERATURE
from station.ui.devices_tab import DevicesTab


class FakeDevice:
    """A paho client logged in with a device's issued token, as the firmware does."""

    def __init__(self, port: int, issued) -> None:
        dev = issued.device
        self.prefix = dev.topic_prefix
        self.commands: list[dict] = []
        self._ready = threading.Event()
        self._subscribed = threading.Event()
        self.m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev.node_name)
        self.m.username_pw_set(dev.mqtt_username, issued.token)
        self.m.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        self.m.on_connect = lambda *_a: self._ready.set()
        self.m.on_subscribe = lambda *_a: self._subscribed.set()
        self.m.on_message = lambda _c, _u, msg: self.commands.append(json.loads(msg.payload))
        self.m.connect("127.0.0.1", port, keepalive=30)
        self.m.loop_start()
        assert self._ready.wait(5), "device could not connect"
        self.m.subscribe(f"{self.prefix}/cmd", qos=1)
        assert self._subscribed.wait(5)

    def publish(self, leaf: str, payload: dict | str, retain: bool = False) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self.m.publish(f"{self.prefix}/{leaf}", data, qos=1, retain=retain).wait_for_publish(3)

    def come_online(self, temperature: float = 21.5) -> None:
        self.publish("status", "online", retain=True)
        self.publish(
            "info",
            {
                "chip_id": "A4CF12EF5678",
                "model": "esp32-dht11",
                "firmware": "1.0.0",
                "ip": "192.168.29.57",
            },
            retain=True,
        )
        self.publish("state", {"temperature": temperature, "humidity": 40.0, "rssi": -60})

    def close(self) -> None:
        self.m.disconnect()
        self.m.loop_stop()


@pytest.fixture
def station(qtbot, empty_runtime) -> Iterator[tuple]:
    rt = empty_runtime
    issued = rt.registry.register_device(name="Living Room Sensor")
    rt.broker.device_registered(issued.device)
    bridge = StationBridge()
    bridge.attach(rt.broker)
    tab = DevicesTab(rt, bridge)
    qtbot.addWidget(tab)
    tab.resize(1200, 700)
    tab.show()
    yield rt, bridge, tab, issued
    tab.detail.jobs.wait(5000)
    bridge.detach()


@pytest.fixture
def device(station) -> Iterator[FakeDevice]:
    rt, _, _, issued = station
    d = FakeDevice(rt.broker.port, issued)
    yield d
    with contextlib.suppress(Exception):
        d.close()


def state_text(tab, node: str) -> str | None:
    return tab.model.state_of(node)


def test_device_going_offline_turns_its_row_offline(qtbot, station, device):
    _, _, tab, issued = station
    node = issued.device.node_name
    assert tab.model.rowCount() == 1
    assert state_text(tab, node) == "offline"  # registered, never connected

    device.come_online(21.5)
    qtbot.waitUntil(
        lambda: tab.model.device_row(0).temperature == 21.5 and state_text(tab, node) == "online",
        timeout=5000,
    )
    index = tab.proxy.index(0, STATE)
    assert tab.proxy.data(index) == "online"
    assert tab.proxy.data(index, Qt.ItemDataRole.ForegroundRole) == STATE_COLOURS["online"]
    assert tab.proxy.data(tab.proxy.index(0, TEMPERATURE)) == "21.5 °C"
    assert tab.model.device_row(0).ip == "192.168.29.57"
    qtbot.waitUntil(lambda: tab.count_label.text().startswith("1 of 1 online"), timeout=3000)

    device.close()  # a clean DISCONNECT: the broker marks it offline
    qtbot.waitUntil(lambda: state_text(tab, node) == "offline", timeout=5000)
    assert tab.proxy.data(index) == "offline"
    assert tab.proxy.data(index, Qt.ItemDataRole.ForegroundRole) == STATE_COLOURS["offline"]
    tab.online_only.setChecked(True)
    assert tab.proxy.rowCount() == 0


def test_commands_reach_the_device_cmd_topic(qtbot, station, device):
    rt, _, tab, issued = station
    node = issued.device.node_name
    device.come_online()
    qtbot.waitUntil(lambda: state_text(tab, node) == "online", timeout=5000)
    assert tab.select(node)
    detail = tab.detail
    qtbot.waitUntil(detail.identify_btn.isEnabled, timeout=5000)

    detail.identify_btn.click()
    qtbot.waitUntil(lambda: len(device.commands) == 1, timeout=5000)
    detail.reboot_btn.click()
    qtbot.waitUntil(lambda: len(device.commands) == 2, timeout=5000)
    detail.interval.setValue(5)
    with qtbot.waitSignal(detail.intervalSet, timeout=5000):
        detail.interval_btn.click()
    qtbot.waitUntil(lambda: len(device.commands) == 3, timeout=5000)

    detail.confirm = lambda *_: False  # the user says no: nothing is sent
    detail.reprovision_btn.click()
    detail.confirm = lambda *_: True
    with qtbot.waitSignal(detail.commandFinished, timeout=5000) as sig:
        detail.reprovision_btn.click()
    assert sig.args == [node, "factory_reset", True]
    qtbot.waitUntil(lambda: len(device.commands) == 4, timeout=5000)
    assert device.commands == [
        {"cmd": "identify"},
        {"cmd": "reboot"},
        {"cmd": "set_interval", "value": 5},
        {"cmd": "factory_reset"},
    ]
    # The model now judges staleness by the device's own interval.
    assert tab.model.interval_of(tab.model.device_row(0)) == 5
    # Logged: the registry's command events and the re-provisioning mark, in the panel too.
    kinds = [e.kind for e in rt.registry.events(issued.device)]
    assert kinds.count("command") == 4 and "reprovision" in kinds
    # The queue will configure it again under the same node name (station/device_ops.py).
    job = rt.registry.device(node).jobs.order_by(-type(issued.job).id).first()
    assert job.status == "registered"
    qtbot.waitUntil(
        lambda: any("marked for re-provisioning" in x for x in detail.event_lines()), timeout=5000
    )


def test_commands_disabled_while_offline(qtbot, station):
    _, _, tab, issued = station
    assert tab.select(issued.device.node_name)
    qtbot.waitUntil(lambda: tab.detail.device is not None, timeout=5000)
    assert not tab.detail.identify_btn.isEnabled()
    assert tab.detail.remove_btn.isEnabled()
    assert "offline" in tab.detail.status.text()


def test_remove_device(qtbot, station, device):
    rt, _, tab, issued = station
    node = issued.device.node_name
    assert tab.select(node)
    qtbot.waitUntil(lambda: tab.detail.device is not None, timeout=5000)
    tab.detail.confirm = lambda *_: True
    with qtbot.waitSignal(tab.detail.removed, timeout=5000):
        tab.detail.remove_btn.click()
    assert tab.model.rowCount() == 0
    assert rt.registry.devices() == []
    assert rt.broker.access._device(node) is None  # login revoked
    assert tab.detail.node_name is None
    assert any(
        e.message.startswith(f"removed Living Room Sensor ({node})") for e in rt.registry.events()
    )


def test_new_device_appears_on_first_online(qtbot, station):
    rt, _, tab, _ = station
    issued = rt.registry.register_device(name="Kitchen")
    rt.broker.device_registered(issued.device)
    new = FakeDevice(rt.broker.port, issued)
    try:
        new.come_online()
        node = issued.device.node_name
        qtbot.waitUntil(lambda: state_text(tab, node) == "online", timeout=5000)
        row = tab.model.device_row(tab.model.row_of(node))
        assert row.name == "Kitchen"  # looked up in the registry on first sight
    finally:
        new.close()


def test_detail_loads_bounded_history_and_events(qtbot, station, device):
    rt, _, tab, issued = station
    dev = issued.device
    now = utcnow()
    # Two days at one reading a minute: only the last 24 h are loaded, drawn downsampled.
    rows = [
        (dev.id, now - dt.timedelta(minutes=m), 20 + (m % 10) / 10, 40.0, -60)
        for m in range(2 * 24 * 60)
    ]
    with rt.registry.db.atomic():
        Reading.insert_many(
            rows,
            fields=[
                Reading.device,
                Reading.ts,
                Reading.temperature,
                Reading.humidity,
                Reading.rssi,
            ],
        ).execute()
    Event.create(device=dev, kind="note", message="installed in the hallway")
    assert tab.select(dev.node_name)
    chart = tab.detail.chart
    qtbot.waitUntil(lambda: len(chart.points()) > 0, timeout=5000)
    pts = chart.points()
    assert len(pts) <= MAX_POINTS + 1
    assert now.replace(tzinfo=dt.UTC).timestamp() - pts[0][0] <= 24 * 3600 + 60
    lines = tab.detail.event_lines()
    assert any("installed in the hallway" in x for x in lines)
    assert any("registered" in x for x in lines)
    # A live reading is added to the chart without a query.
    before = len(chart.points())
    device.come_online(30.0)
    qtbot.waitUntil(lambda: len(chart.points()) == before + 1, timeout=5000)
    assert chart.points()[-1][1] == 30.0
    assert not tab.detail.grab().isNull()  # paints without error
