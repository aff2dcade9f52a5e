"""The Provision tab: scan for setup APs, a queue with a progress bar per device, controls.

Everything that touches WiFi or HTTP runs in a QueueWorker; this widget only reacts to
its signals. With the manual WiFi backend the worker's questions ("Connect to …",
"Please reconnect to your home WiFi …") appear in a panel above the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from station.errors import StationError
from station.followers import Route
from station.provisioning import Progress, RunSummary, SetupTarget, Status, is_setup_ap
from station.provisioning.steps import OPEN
from station.registry import Home
from station.runtime import StationRuntime
from station.ui.provision_model import (
    PROBLEM,
    PROGRESS,
    RETRYABLE,
    SKIPPABLE,
    ProgressDelegate,
    ProvisionQueueModel,
    overall_progress,
    remaining_seconds,
)
from station.ui.worker import (
    ConfirmBridge,
    JobRow,
    QueueWorker,
    broker_route,
    confirm_bridge,
)
from station.wifi.manual import Instruction

log = logging.getLogger(__name__)

HomeProvider = Callable[[], "tuple[Home, str] | None"]


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest:02d} s"


class InstructionPanel(QFrame):
    """The manual backend's question: the seed's text and its button."""

    def __init__(self, bridge: ConfirmBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action = QPushButton()
        self.action.setDefault(True)
        self.stop = QPushButton("Cancel")
        self.action.clicked.connect(lambda: self._answer(True))
        self.stop.clicked.connect(lambda: self._answer(False))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.stop)
        buttons.addWidget(self.action)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        self.hide()

    def show_instruction(self, instruction: Instruction) -> None:
        self.title.setText(f"Step {instruction.step}: {instruction.title}")
        self.text.setText(instruction.text)
        self.action.setText(instruction.action)
        self.show()
        self.action.setFocus()

    def _answer(self, ok: bool) -> None:
        self.hide()
        self.bridge.answer(ok)


class ProvisionTab(QWidget):
    runningChanged = Signal(bool)

    def __init__(
        self,
        runtime: StationRuntime,
        home_provider: HomeProvider,
        parent: QWidget | None = None,
        *,
        bridge: ConfirmBridge | None = None,
    ) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self.home_provider = home_provider
        self.bridge = bridge or confirm_bridge(runtime)
        self.bridge.asked.connect(self._on_asked)
        self.worker: QueueWorker | None = None
        self.targets: list[SetupTarget] = []  # found by the last scan, not yet queued
        self._pause_requested = False
        self._failure: str | None = None  # what the running batch's worker reported
        self._adding: list[SetupTarget] = []  # the targets the running batch adds
        self._build()
        self.model.rowsInserted.connect(self._update_state)
        self.model.dataChanged.connect(self._update_state)
        # Timings arrive with the registry rows: reload them now and then, not per event.
        self._reload = QTimer(self, singleShot=True, interval=300)
        self._reload.timeout.connect(self._load)
        if runtime.wifi is not None:
            self._load()
        self._update_state()

    # -- layout --------------------------------------------------------------------------

    def _build(self) -> None:
        self.scan_button = QPushButton("Scan for devices")
        self.scan_button.setToolTip("Look for devices in setup mode (esp32-dht11-Setup-…)")
        self.provision_all_button = QPushButton("Provision all")
        self.provision_all_button.setToolTip("Queue every device found and provision them")
        self.found_label = QLabel("Scan to find devices in setup mode.")
        self.found_label.setWordWrap(True)
        self.ssid_edit = QLineEdit()
        self.ssid_edit.setPlaceholderText("or type a device network, e.g. esp32-dht11-Setup-12AB34")
        self.add_button = QPushButton("Add")
        self.add_button.setToolTip("Add a device by its network name (needed without scanning)")
        top = QHBoxLayout()
        top.addWidget(self.scan_button)
        top.addWidget(self.provision_all_button)
        top.addSpacing(12)
        top.addWidget(self.ssid_edit, 1)
        top.addWidget(self.add_button)

        self.instruction = InstructionPanel(self.bridge)

        self.model = ProvisionQueueModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(PROBLEM, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(PROGRESS, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(PROGRESS, 120)
        self.table.selectionModel().selectionChanged.connect(self._update_state)

        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Finish the device in hand, go back home, then stop")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop now; this computer goes back to the home WiFi")
        self.retry_button = QPushButton("Retry")
        self.skip_button = QPushButton("Skip")
        self.clear_button = QPushButton("Clear finished")
        controls = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.cancel_button):
            controls.addWidget(b)
        controls.addSpacing(12)
        for b in (self.retry_button, self.skip_button):
            controls.addWidget(b)
        controls.addStretch(1)
        controls.addWidget(self.clear_button)

        self.overall = QProgressBar()
        self.overall.setRange(0, 100)
        self.overall.setFormat("Overall %p %")
        self.remaining_label = QLabel()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        bottom = QHBoxLayout()
        bottom.addWidget(self.overall, 1)
        bottom.addWidget(self.remaining_label)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.found_label)
        layout.addWidget(self.instruction)
        layout.addWidget(self.table, 1)
        layout.addLayout(controls)
        layout.addLayout(bottom)
        layout.addWidget(self.status_label)

        self.scan_button.clicked.connect(self.scan)
        self.provision_all_button.clicked.connect(self.provision_all)
        self.add_button.clicked.connect(self.add_typed)
        self.ssid_edit.returnPressed.connect(self.add_typed)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.retry_button.clicked.connect(self.retry_selected)
        self.skip_button.clicked.connect(self.skip_selected)
        self.clear_button.clicked.connect(self.model.remove_finished)

    # -- the worker ----------------------------------------------------------------------

    def _worker(self) -> QueueWorker | None:
        if self.worker is None:
            confirm_bridge(self.runtime)  # a manual backend chosen late gets the bridge too
            try:
                station = self.runtime.provisioning_station()
            except StationError as exc:
                self._say(f"Provisioning is not available: {exc}", error=True)
                return None
            w = QueueWorker(station, self.bridge, self, route=self._route)
            w.progress.connect(self._on_progress)
            w.scanned.connect(self._on_scanned)
            w.jobsLoaded.connect(self._on_rows)
            w.finished.connect(self._on_finished)
            w.failed.connect(self._on_failed)
            w.busyChanged.connect(self._update_state)
            w.runningChanged.connect(self._on_running)
            self.worker = w
        return self.worker

    def _route(self, home: Home) -> Route:
        """Worker thread, at the start of a run: the embedded broker, or the home's own
        broker through its follower (checked now; StationError if it cannot take
        devices, and nothing is touched)."""
        return broker_route(self.runtime, home)

    def _load(self) -> None:
        w = self._worker()
        if w is not None:
            w.load(self.model.ids())

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def _busy(self) -> bool:
        return self.worker is not None and self.worker.is_busy()

    def _home(self) -> tuple[Home, str] | None:
        selected = self.home_provider()
        if selected is None:
            self._say("Select a home (customer site) with its WiFi password first.", error=True)
        return selected

    # -- actions -------------------------------------------------------------------------

    def scan(self) -> None:
        w = self._worker()
        if w is not None and w.scan():
            # The scan is a job in the radio's queue: say what it waits for, if anything.
            busy = w.radio.state().busy
            after = f" (after: {busy})" if busy and busy != "scanning for devices" else ""
            self._say(f"Scanning for devices in setup mode…{after}")

    def add_typed(self) -> None:
        ssid = self.ssid_edit.text().strip()
        prefix = self.runtime.settings.provisioning.setup_ssid_prefix
        if not is_setup_ap(ssid, prefix):
            self._say(
                f"“{ssid}” is not a device setup network. They are named "
                f"{prefix}-XXXXXX (see the label on the device).",
                error=True,
            )
            return
        if all(t.ssid != ssid for t in self.targets):
            self.targets.append(SetupTarget(ssid))
        self.ssid_edit.clear()
        self._show_targets()

    def provision_all(self) -> None:
        """Queue everything found (step 1 each) and provision the whole queue."""
        self._run(add=self._unqueued_targets())

    def start(self) -> None:
        self._run()

    def _run(self, add: list[SetupTarget] | None = None, retry: list[str] | None = None) -> None:
        w = self._worker()
        selected = self._home()
        if w is None or selected is None:
            return
        home, password = selected
        self._pause_requested = False
        self._failure = None
        self._adding = list(add or [])
        self.bridge.owner = self
        if w.run(home, password, add=add, shown=self.model.ids(), retry=retry or ()):
            self.targets = [t for t in self.targets if t not in (add or [])]
            self._show_targets()
            where = f", devices report to {home.broker_url}" if home.broker_url else ""
            self._say(f"Provisioning for {home.name} ({home.wifi_ssid}{where})…")
        self._update_state()

    def pause(self) -> None:
        if self.worker is not None and self.is_running():
            self._pause_requested = True
            self.worker.pause()
            self._say("Pausing after the device in hand; then back to the home WiFi…")
            self._update_state()

    def cancel(self) -> None:
        if self.worker is not None and self.is_running():
            self.worker.cancel()
            self.instruction.hide()
            self._say("Cancelling; this computer is going back to the home WiFi…")

    def retry_selected(self) -> None:
        pids = [r.provisioning_id for r in self._selected() if r.status in RETRYABLE]
        if not pids or self.worker is None:
            return
        if self.is_running():
            for pid in pids:
                self.worker.retry(pid, self.model.ids())
        elif not self._busy():
            self._run(retry=pids)  # back in the queue and run, with today's home password

    def skip_selected(self) -> None:
        if self.worker is None:
            return
        for row in self._selected():
            if row.status in SKIPPABLE:
                self.worker.skip(row.provisioning_id, self.model.ids())

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel a running batch and wait (blocking, at close only) for the laptop to be
        home. Returns False if the worker did not finish in time."""
        self.instruction.hide()
        self._reload.stop()
        if self.worker is None:
            return True
        self.bridge.close()  # nobody will answer questions any more
        return self.worker.shutdown(timeout)

    # -- worker signals ------------------------------------------------------------------

    def _on_progress(self, p: Progress) -> None:
        self.model.apply(p)
        if p.error:
            self._say(f"{p.node_name}: {p.error}", error=True)
            self.table.resizeRowsToContents()
        if p.progress in (60, 80, 100):
            self._reload.start()  # a step ended: fresh timings for the estimate

    def _on_scanned(self, targets: list[SetupTarget]) -> None:
        self.targets = targets
        self._show_targets()
        n = len(targets)
        self._say(f"Found {n} device{'s' if n != 1 else ''} in setup mode." if n else "")

    def _on_rows(self, rows: list[JobRow]) -> None:
        self.model.merge(rows)
        self.table.resizeRowsToContents()  # errors wrap over two or three lines
        self._update_state()

    def _on_failed(self, text: str) -> None:
        self._failure = text
        self._say(text, error=True)

    def _on_finished(self, summary: RunSummary) -> None:
        self.instruction.hide()
        self._load()
        nothing = not (summary.done or summary.failed or summary.cancelled or summary.paused)
        if nothing and self._failure:
            # The run did not start (the home's broker cannot take devices, the registry
            # is unreachable): its words stay, and the devices found stay ready to add.
            self.targets += [t for t in self._adding if t not in self.targets]
            self._adding = []
            self._show_targets()
            self._say(self._failure, error=True, log_it=False)  # logged when it came
            return
        done, failed = len(summary.done), len(summary.failed)
        if summary.cancelled:
            text = "Cancelled. This computer is back on the home WiFi. Retry to continue."
        elif summary.paused:
            text = "Paused. This computer is back on the home WiFi. Start to continue."
        elif failed:
            text = f"{done} done, {failed} failed: the table says what to do for each."
        else:
            text = f"All done: {done} device{'s' if done != 1 else ''} online."
        self._say(text, error=bool(failed) and not summary.cancelled)

    def _on_running(self, running: bool) -> None:
        self._update_state()
        self.runningChanged.emit(running)

    def _on_asked(self, instruction: Instruction) -> None:
        if self.bridge.owner is self:
            self.instruction.show_instruction(instruction)

    # -- state ---------------------------------------------------------------------------

    def _selected(self) -> list[JobRow]:
        sel: QItemSelectionModel = self.table.selectionModel()
        rows = sorted({i.row() for i in sel.selectedRows()})
        return [self.model.rows()[r] for r in rows if r < self.model.rowCount()]

    def _unqueued_targets(self) -> list[SetupTarget]:
        shown = {r.ap_ssid for r in self.model.rows() if r.status in OPEN}
        return [t for t in self.targets if t.ssid not in shown]

    def _show_targets(self) -> None:
        if self.targets:
            names = ", ".join(t.ssid for t in self.targets[:6])
            more = f" and {len(self.targets) - 6} more" if len(self.targets) > 6 else ""
            self.found_label.setText(f"Ready to add: {names}{more}.")
        else:
            self.found_label.setText("")
        self.found_label.setVisible(bool(self.targets))
        self._update_state()

    def _update_state(self, *_args: object) -> None:
        running, busy = self.is_running(), self._busy()
        rows = self.model.rows()
        open_rows = [r for r in rows if r.status in OPEN]
        selected = self._selected()
        self.scan_button.setEnabled(not busy)
        self.add_button.setEnabled(not busy)
        self.provision_all_button.setEnabled(
            not busy and bool(self._unqueued_targets() or open_rows)
        )
        self.start_button.setEnabled(not busy and bool(open_rows))
        self.pause_button.setEnabled(running and not self._pause_requested)
        self.cancel_button.setEnabled(running)
        self.retry_button.setEnabled(
            any(r.status in RETRYABLE for r in selected) and (running or not busy)
        )
        self.skip_button.setEnabled(any(r.status in SKIPPABLE for r in selected))
        self.clear_button.setEnabled(
            not running and any(r.status in (Status.DONE, Status.SKIPPED) for r in rows)
        )
        self.overall.setValue(overall_progress(rows))
        if open_rows and running:
            self.remaining_label.setText(f"About {_duration(remaining_seconds(rows))} left")
        else:
            self.remaining_label.setText("")

    def _say(self, text: str, error: bool = False, log_it: bool = True) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #b3261e" if error else "")
        if text and log_it:
            (log.warning if error else log.info)("%s", text)
