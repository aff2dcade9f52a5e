"""The selected device: its temperature/humidity history, its event log, and commands.

Everything that touches the database or the broker runs in a small QThreadPool of its
own (`Jobs`): a day of readings can be thousands of rows, `broker.send_command` waits
for the broker loop (up to 5 s), and a registry write can wait on SQLite's lock while
the ingest thread commits. Results come back as a queued signal into the GUI thread.
A pool of its own, so a long WiFi job elsewhere never delays a chart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, QThreadPool, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from station.commands import COMMANDS
from station.device_ops import DeviceOps
from station.errors import StationError
from station.registry.models import utcnow
from station.registry.tracking import DeviceUpdate
from station.ui.chart import HistoryChart
from station.ui.devices_model import DeviceRow

if TYPE_CHECKING:
    from station.runtime import StationRuntime

log = logging.getLogger(__name__)

HISTORY = dt.timedelta(hours=24)  # the chart's window: bounded, so the query is too
EVENT_LIMIT = 200


class Jobs(QObject):
    """Run callables in a private thread pool; deliver results in the GUI thread.

    The pool thread only emits `_finished`; the slot is a method of this object,
    which lives in the GUI thread, so the callbacks run there (queued connection).
    """

    _finished = Signal(int, object, object)  # job id, result, exception

    def __init__(self, db: Any = None, max_threads: int = 2, parent: QObject | None = None):
        super().__init__(parent)
        self.db = db
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable, Callable | None]] = {}
        self._finished.connect(self._deliver)

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
    ) -> int:
        job_id = next(self._ids)
        self._callbacks[job_id] = (on_done, on_error)

        def run() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except Exception as exc:
                error = exc
            finally:
                self._close_db()
            # RuntimeError: the widget went away while the job ran.
            with contextlib.suppress(RuntimeError):
                self._finished.emit(job_id, result, error)

        self.pool.start(run)
        return job_id

    def _close_db(self) -> None:
        # A file database has one connection per thread; close the pool thread's so
        # no connection outlives its (expiring) thread. A shared ":memory:"
        # connection (thread_safe=False) belongs to its opener and stays open.
        db = self.db
        if db is not None and db.thread_safe and not db.is_closed():
            db.close()

    def _deliver(self, job_id: int, result: Any, error: Any) -> None:
        on_done, on_error = self._callbacks.pop(job_id, (None, None))
        if error is not None:
            if on_error is not None:
                on_error(error)
            else:
                log.error("background job failed: %s", error)
        elif on_done is not None:
            on_done(result)

    def pending(self) -> int:
        return len(self._callbacks)

    def wait(self, msecs: int = 10_000) -> bool:
        return self.pool.waitForDone(msecs)


@dataclass
class DetailData:
    device: Any  # registry Device
    readings: list[tuple[float, float | None, float | None]]
    events: list[tuple[dt.datetime, str, str]]
    broker: str | None = None  # its home's own broker (None: this station's)


def _ask(parent: QWidget, title: str, text: str) -> bool:
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Yes


class DeviceDetail(QWidget):
    """Detail panel for one device. `show_device(row)` selects it (None clears)."""

    removed = Signal(str)  # node name, after it left the registry
    intervalSet = Signal(str, int)  # node name, seconds
    commandFinished = Signal(str, str, bool)  # node name, command, ok

    def __init__(self, runtime: StationRuntime, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.jobs = Jobs(runtime.registry.db, parent=self)
        # Asked before re-provision and remove; tests replace it.
        self.confirm: Callable[[str, str], bool] = lambda title, text: _ask(self, title, text)
        self._node: str | None = None
        self._row: DeviceRow | None = None
        self._device: Any = None
        self._broker: str | None = None  # the device's home's own broker, once loaded
        self._generation = 0
        self._events_loading = False
        self._events_dirty = False
        self._build()
        self.show_device(None)

    def _build(self) -> None:
        self.title = QLabel()
        font = QFont(self.title.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.title.setFont(font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.facts = QLabel()
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.chart = HistoryChart()
        chart_box = QGroupBox("Last 24 hours")
        QVBoxLayout(chart_box).addWidget(self.chart)

        self.events = QListWidget()
        self.events.setAlternatingRowColors(True)
        self.events.setUniformItemSizes(True)
        events_box = QGroupBox("Event log")
        QVBoxLayout(events_box).addWidget(self.events)

        # Labels, help texts and the interval's range come from the command table.
        self.identify_btn = self._command_button("identify")
        self.reboot_btn = self._command_button("reboot")
        interval_arg = COMMANDS["set_interval"].args[0]
        self.interval = QSpinBox()
        self.interval.setRange(interval_arg.minimum, interval_arg.maximum)
        self.interval.setSuffix(f" {interval_arg.unit}")
        self.interval.setToolTip(interval_arg.help)
        self.interval.setValue(int(self.runtime.settings.provisioning.telemetry_interval_s))
        self.interval_btn = self._command_button("set_interval")
        self.reprovision_btn = QPushButton("Re-provision…")
        self.reprovision_btn.setToolTip(
            "Factory-reset the device so it returns to setup mode, ready to be provisioned "
            "again (e.g. for another home network)"
        )
        self.remove_btn = QPushButton("Remove…")
        self.remove_btn.setToolTip("Delete the device from the registry and revoke its login")
        self.identify_btn.clicked.connect(lambda: self.send("identify"))
        self.reboot_btn.clicked.connect(lambda: self.send("reboot"))
        self.interval_btn.clicked.connect(self.set_interval)
        self.reprovision_btn.clicked.connect(self.reprovision)
        self.remove_btn.clicked.connect(self.remove)
        self.status = QLabel()
        self.status.setWordWrap(True)

        row1 = QHBoxLayout()
        row1.addWidget(self.identify_btn)
        row1.addWidget(self.reboot_btn)
        row1.addStretch(1)
        row1.addWidget(self.interval)
        row1.addWidget(self.interval_btn)
        row2 = QHBoxLayout()
        row2.addWidget(self.reprovision_btn)
        row2.addStretch(1)
        row2.addWidget(self.remove_btn)
        commands = QGroupBox("Commands")
        cl = QVBoxLayout(commands)
        cl.addLayout(row1)
        cl.addLayout(row2)
        cl.addWidget(self.status)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.facts)
        layout.addWidget(chart_box, 3)
        layout.addWidget(events_box, 2)
        layout.addWidget(commands)
        self._command_buttons = (
            self.identify_btn,
            self.reboot_btn,
            self.interval_btn,
            self.reprovision_btn,
        )

    @staticmethod
    def _command_button(name: str) -> QPushButton:
        cmd = COMMANDS[name]
        button = QPushButton(cmd.label)
        button.setToolTip(cmd.help)
        return button

    def ops_for(self, device: Any) -> DeviceOps:
        """The device's operations through the broker it reports to: the embedded one,
        or its home's own broker (station.followers). In the job's thread: it reads the
        device's home, and says so (StationError) when that broker is out of reach."""
        rt = self.runtime
        followers = rt.followers
        if followers is not None:
            return DeviceOps(rt.registry, followers.broker_for(device, rt.broker))
        home = device.home
        if home is not None and home.broker_url:
            raise StationError(
                f"{device.node_name} reports to {home.broker_url}, which this window does "
                "not follow"
            )
        return DeviceOps(rt.registry, rt.broker)

    # -- which device --------------------------------------------------------------------

    @property
    def node_name(self) -> str | None:
        return self._node

    @property
    def device(self) -> Any:
        return self._device

    def show_device(self, row: DeviceRow | None) -> None:
        """Show `row`'s device; its history and events load in the background."""
        self._generation += 1
        self._row = row
        self._node = row.node_name if row else None
        self._device = None
        self._broker = None
        self.events.clear()
        self.status.clear()
        if row is None:
            self.title.setText("No device selected")
            self.facts.setText("Select a device in the table to see its history and commands.")
            self.chart.clear("")
            self._update_buttons()
            return
        self._show_facts()
        self.chart.clear("Loading readings…")
        self._update_buttons()
        gen, node = self._generation, row.node_name
        self.jobs.submit(
            lambda: self._load(node),
            lambda data: self._loaded(gen, data),
            lambda exc: self._load_failed(gen, exc),
        )

    def _load(self, node: str) -> DetailData:
        """Pool thread: the device, a bounded history and the latest events."""
        reg = self.runtime.registry
        device = reg.device(node)
        since = utcnow() - HISTORY
        readings = [
            (r.ts.replace(tzinfo=dt.UTC).timestamp(), r.temperature, r.humidity)
            for r in reg.readings(device, since)
        ]
        events = [(e.ts, e.kind, e.message) for e in reg.events(device, limit=EVENT_LIMIT)]
        home = device.home
        return DetailData(device, readings, events, home.broker_url if home else None)

    def _loaded(self, gen: int, data: DetailData) -> None:
        if gen != self._generation:
            return  # the user has moved on to another device
        self._device = data.device
        self._broker = data.broker
        self._show_facts()
        self.chart.set_points(data.readings)
        self._set_events(data.events)
        self._update_buttons()

    def _load_failed(self, gen: int, exc: BaseException) -> None:
        if gen != self._generation:
            return
        self.chart.clear("Could not load readings")
        self.status.setText(f"Could not load this device: {exc}")
        self._update_buttons()

    def _set_events(self, events: list[tuple[dt.datetime, str, str]]) -> None:
        self.events.clear()
        for ts, kind, message in events:
            when = ts.replace(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            self.events.addItem(f"{when}   {kind:<14} {message}")

    def event_lines(self) -> list[str]:
        return [self.events.item(i).text() for i in range(self.events.count())]

    def _show_facts(self) -> None:
        row = self._row
        if row is None:
            return
        self.title.setText(f"{row.name} — {row.node_name}" if row.name else row.node_name)
        parts = [
            f"State: {'online' if row.online else 'offline'}",
            f"Chip ID: {row.chip_id or 'not known yet'}",
            f"IP: {row.ip or '–'}",
            f"Firmware: {row.firmware or '–'}",
        ]
        if row.error:
            parts.append(f"Sensor error: {row.error}")
        text = "   ·   ".join(parts)
        if self._broker:
            text += f"\nReports to its home's own broker: {self._broker}"
        self.facts.setText(text)

    def _update_buttons(self) -> None:
        ready = self._device is not None
        online = bool(self._row and self._row.online)
        for b in self._command_buttons:
            b.setEnabled(ready and online)
        self.interval.setEnabled(ready and online)
        self.remove_btn.setEnabled(ready)
        hint = ""
        if ready and not online:
            hint = (
                "The device is offline. Commands are not queued for it (MQTT commands are "
                "not retained): they work once it is back online."
            )
        for b in self._command_buttons:
            b.setStatusTip(hint)
        if ready and not online and not self.status.text():
            self.status.setText(hint)

    # -- live ------------------------------------------------------------------------------

    def on_update(self, update: DeviceUpdate, row: DeviceRow | None = None) -> None:
        """A broker update for the device shown (the tab filters by node name)."""
        if update.node_name != self._node:
            return
        if row is not None:
            self._row = row
        was_online = self.identify_btn.isEnabled()
        self._show_facts()
        if update.kind == "state" and update.state and update.last_seen:
            self.chart.add_point(
                update.last_seen, update.state.get("temperature"), update.state.get("humidity")
            )
        else:
            self._reload_events()
        if self._device is not None and was_online != bool(self._row and self._row.online):
            self.status.clear()
            self._update_buttons()

    def _reload_events(self) -> None:
        # Coalesced: at most one events query in flight per detail panel.
        if self._device is None:
            return
        if self._events_loading:
            self._events_dirty = True
            return
        self._events_loading = True
        gen, device = self._generation, self._device
        reg = self.runtime.registry

        def load() -> list[tuple[dt.datetime, str, str]]:
            return [(e.ts, e.kind, e.message) for e in reg.events(device, limit=EVENT_LIMIT)]

        def done(events: list) -> None:
            self._events_loading = False
            if gen == self._generation:
                self._set_events(events)
                if self._events_dirty:
                    self._events_dirty = False
                    self._reload_events()

        def failed(exc: BaseException) -> None:
            self._events_loading = False
            log.warning("could not reload events: %s", exc)

        self.jobs.submit(load, done, failed)

    # -- commands --------------------------------------------------------------------------

    def send(self, cmd: str, **extra: Any) -> None:
        """PROTOCOL.md section 2: the command, checked against the command table, on the
        device's cmd topic (station.device_ops does it; the GUI only shows the result)."""
        device, node = self._device, self._node
        if device is None or node is None:
            return
        label = COMMANDS[cmd].label if cmd in COMMANDS else cmd
        self.status.setText(f"Sending {label}…")

        def done(_: Any) -> None:
            log.info("sent %s to %s", cmd, node)
            if node == self._node:
                self.status.setText(f"Sent {label} to {node}.")
                self._reload_events()
            if cmd == "set_interval":
                self.intervalSet.emit(node, int(extra["value"]))
            self.commandFinished.emit(node, cmd, True)

        def failed(exc: BaseException) -> None:
            log.error("could not send %s to %s: %s", cmd, node, exc)
            if node == self._node:
                self.status.setText(f"Could not send {label}: {exc or type(exc).__name__}")
            self.commandFinished.emit(node, cmd, False)

        self.jobs.submit(lambda: self.ops_for(device).send(device, cmd, **extra), done, failed)

    def set_interval(self) -> None:
        self.send("set_interval", value=self.interval.value())

    def reprovision(self) -> None:
        device, node = self._device, self._node
        if device is None or node is None:
            return
        reset = COMMANDS["factory_reset"]
        if not self.confirm(
            "Re-provision device",
            f"Re-provision {node}?\n\n{reset.confirm} It keeps its node name; the "
            "Provision tab configures it again once its setup network is in range.",
        ):
            return
        online = bool(self._row and self._row.online)
        self.status.setText("Sending factory reset…")

        def done(result: Any) -> None:
            log.info("%s marked for re-provisioning", node)
            if node == self._node:
                self.status.setText(
                    f"{node} is returning to setup mode. Provision it again from the Provision tab."
                    if result.reset_sent
                    else f"{node} is offline: factory-reset it by hand (hold BOOT 5 s at "
                    "power-on), then provision it from the Provision tab."
                )
                self._reload_events()
            self.commandFinished.emit(node, "factory_reset", True)

        def failed(exc: BaseException) -> None:
            log.error("could not re-provision %s: %s", node, exc)
            if node == self._node:
                self.status.setText(f"Could not re-provision {node}: {exc}")
            self.commandFinished.emit(node, "factory_reset", False)

        self.jobs.submit(
            lambda: self.ops_for(device).reprovision(device, online=online), done, failed
        )

    def remove(self) -> None:
        device, node = self._device, self._node
        if device is None or node is None:
            return
        if not self.confirm(
            "Remove device",
            f"Remove {node} from the registry?\n\nIts history is deleted, its MQTT "
            "login stops working and Home Assistant forgets it. The device itself keeps its "
            "settings; to use it again, factory-reset it and provision it anew.",
        ):
            return
        self.status.setText("Removing…")

        def done(_: Any) -> None:
            log.info("removed %s from the registry", node)
            if node == self._node:
                self.show_device(None)
            self.removed.emit(node)

        def failed(exc: BaseException) -> None:
            log.error("could not remove %s: %s", node, exc)
            if node == self._node:
                self.status.setText(f"Could not remove {node}: {exc}")

        self.jobs.submit(lambda: self.ops_for(device).remove(device), done, failed)
