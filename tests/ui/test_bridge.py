"""StationBridge: broker callbacks from other threads become queued Qt signals.

The storm test guards against PySide6 6.12.0 on CPython 3.11, which aborted the
process ("Fatal Python error: bool_dealloc") after about 570 Signal.emit() calls
(FIELD-NOTES.md): a version bump that brings it back fails here, loudly.
"""

from __future__ import annotations

import datetime as dt
import threading

from PySide6.QtCore import QObject, QThread, Slot

from station.registry.tracking import DeviceUpdate
from station.ui.bridge import StationBridge

STORM = 5000


class Receiver(QObject):
    """Lives in the GUI thread; records which thread each slot ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.updates: list[DeviceUpdate] = []
        self.counts: list[int] = []
        self.threads: set[QThread] = set()

    @Slot(object)
    def on_update(self, update: DeviceUpdate) -> None:
        self.threads.add(QThread.currentThread())
        self.updates.append(update)

    @Slot(int)
    def on_count(self, n: int) -> None:
        self.threads.add(QThread.currentThread())
        self.counts.append(n)


class FakeBroker:
    """The part of EmbeddedBroker the bridge uses."""

    def __init__(self) -> None:
        self.listeners: list = []
        self.count_cb = None
        self.clients_connected = 2

    def add_listener(self, cb) -> None:
        self.listeners.append(cb)

    def remove_listener(self, cb) -> None:
        self.listeners.remove(cb)

    def on_connection_count(self, cb) -> None:
        self.count_cb = cb


def update(i: int) -> DeviceUpdate:
    node = f"esp32_dht11_{i % 1000:03d}"
    return DeviceUpdate(
        node, f"home/{node}", "state", True, dt.datetime(2026, 11, 27), {"temperature": float(i)}
    )


def test_attach_and_detach(qtbot):
    bridge = StationBridge()
    broker = FakeBroker()
    with qtbot.waitSignal(bridge.clientsChanged) as sig:
        bridge.attach(broker)
    assert sig.args == [2]  # the count as it was when we attached
    assert broker.listeners == [bridge.push_update]
    bridge.detach()
    assert broker.listeners == [] and broker.count_cb is None
    bridge.detach()  # twice is harmless


def test_signal_storm_across_threads(qtbot):
    """5000 updates + 5000 counts emitted from two non-GUI threads all arrive, in
    order, in the GUI thread, and the process survives."""
    bridge = StationBridge()
    broker = FakeBroker()
    rx = Receiver()
    bridge.deviceUpdated.connect(rx.on_update)
    bridge.clientsChanged.connect(rx.on_count)
    bridge.attach(broker)
    qtbot.waitUntil(lambda: rx.counts == [2])
    rx.counts.clear()

    def ingest() -> None:  # as the registry-ingest thread does
        for i in range(STORM):
            for listener in list(broker.listeners):
                listener(update(i))

    def connections() -> None:  # as the broker thread does
        for i in range(STORM):
            broker.count_cb(i)

    threads = [threading.Thread(target=ingest), threading.Thread(target=connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    qtbot.waitUntil(lambda: len(rx.updates) == STORM and len(rx.counts) == STORM, timeout=30_000)
    assert [u.state["temperature"] for u in rx.updates] == [float(i) for i in range(STORM)]
    assert rx.counts == list(range(STORM))
    assert rx.threads == {QThread.currentThread()}  # every slot ran in the GUI thread
    bridge.detach()


def test_storm_from_gui_thread(qtbot):
    """Direct (same-thread) emits: the path PySide6 6.12.0 crashed on."""
    bridge = StationBridge()
    got: list[int] = []
    bridge.clientsChanged.connect(got.append)
    for i in range(STORM):
        bridge.push_clients(i)
    assert got == list(range(STORM))


def test_real_broker_updates_arrive(qtbot, empty_runtime):
    """A registry change seen by the real broker's ingest thread reaches the GUI."""
    rt = empty_runtime
    issued = rt.registry.register_device(name="Hall")
    rt.broker.device_registered(issued.device)
    bridge = StationBridge()
    bridge.attach(rt.broker)
    from station.registry.tracking import Observation

    with qtbot.waitSignal(bridge.deviceUpdated, timeout=5000) as sig:
        rt.broker.ingest.put(
            Observation("online", issued.device.topic_prefix, dt.datetime(2026, 11, 27))
        )
    assert sig.args[0].node_name == issued.device.node_name
    assert sig.args[0].online is True
    bridge.detach()


def test_late_callback_after_delete_is_dropped(qtbot):
    from shiboken6 import Shiboken

    bridge = StationBridge()
    push, count = bridge.push_update, bridge.push_clients
    bridge.deleteLater()
    qtbot.waitUntil(lambda: not Shiboken.isValid(bridge), timeout=2000)
    errors: list[BaseException] = []

    def broker_thread() -> None:  # late callbacks arrive from the broker's threads
        for call in (lambda: push(update(1)), lambda: push(update(2)), lambda: count(3)):
            try:
                call()
            except BaseException as exc:
                errors.append(exc)

    t = threading.Thread(target=broker_thread)
    t.start()
    t.join(5)
    assert errors == []
    assert bridge._alive is False  # the callbacks were dropped, not emitted
