"""The Devices tab: the live table (filter, online-only, sort) and the selected device.

Live data arrives only through StationBridge.deviceUpdated (queued into the GUI
thread); the table loads from the registry once and then follows updates row by row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QRect,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from station.errors import StationError
from station.fleet.rollout import FINAL, DeviceProgress, Phase, RolloutResult
from station.registry.tracking import DeviceUpdate
from station.ui.bridge import StationBridge
from station.ui.device_detail import DeviceDetail
from station.ui.devices_model import (
    CHIP,
    HEADERS,
    IP,
    LAST_SEEN,
    NAME,
    NODE,
    STATE,
    UPDATE,
    DeviceFilterProxy,
    DeviceTableModel,
    UpdateCell,
)
from station.ui.fleet_update import FleetUpdateRunner, UpdateDialog

if TYPE_CHECKING:
    from station.runtime import StationRuntime

log = logging.getLogger(__name__)


class DeviceTableView(QTableView):
    """A QTableView that repaints only the cells a ranged dataChanged covers.

    QAbstractItemView repaints the whole viewport for any dataChanged spanning more
    than one cell: each row update (all columns) and the one-second "last seen" tick
    (a whole column) would then repaint every visible row; measured here that is
    25-45 ms a time (benchmarks/gui_table.py), enough to miss the 16 ms target.
    """

    def dataChanged(
        self,
        top_left: QModelIndex | QPersistentModelIndex,
        bottom_right: QModelIndex | QPersistentModelIndex,
        roles: Sequence[int] = (),
    ) -> None:
        if top_left == bottom_right or not top_left.isValid() or not bottom_right.isValid():
            super().dataChanged(top_left, bottom_right, roles)
            return
        if not self.isVisible():
            return
        x0 = self.columnViewportPosition(top_left.column())
        x1 = self.columnViewportPosition(bottom_right.column()) + self.columnWidth(
            bottom_right.column()
        )
        y0 = self.rowViewportPosition(top_left.row())
        y1 = self.rowViewportPosition(bottom_right.row()) + self.rowHeight(bottom_right.row())
        area = QRect(x0, y0, x1 - x0, y1 - y0).intersected(self.viewport().rect())
        if not area.isEmpty():
            self.viewport().update(area)


class DevicesTab(QWidget):
    countsChanged = Signal(int, int)  # devices online, devices total (for the status bar)
    updateStarted = Signal()
    updateFinished = Signal(str)  # a firmware update's summary line (for the status bar)

    def __init__(
        self, runtime: StationRuntime, bridge: StationBridge, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.runtime = runtime
        self.bridge = bridge
        self.model = DeviceTableModel(
            runtime.settings.provisioning.telemetry_interval_s, lookup=self._lookup, parent=self
        )
        self.proxy = DeviceFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self._counts = (-1, -1)

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name, node, chip ID, IP or firmware")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.proxy.set_text)
        self.online_only = QCheckBox("Online only")
        self.online_only.toggled.connect(self.proxy.set_online_only)
        self.count_label = QLabel()

        self.view = DeviceTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(NODE, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # Several rows (shift/ctrl-click) for "Update firmware…"; the detail panel shows
        # the current row.
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setAlternatingRowColors(True)
        self.view.setWordWrap(False)
        self.view.verticalHeader().setVisible(False)
        # Fixed row heights: the view never measures rows, which matters at 1000 rows.
        self.view.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = self.view.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        fm = self.view.fontMetrics()
        # Sized to typical content so the state and readings fit beside the detail.
        samples = {
            NAME: "Living room",
            NODE: "esp32_dht11_000",
            CHIP: "A4CF12EF5678",
            STATE: "● offline",
            IP: "192.168.29.100",
            UPDATE: "downloading",
            LAST_SEEN: "59 s ago",
        }
        for col, title in enumerate(HEADERS):
            text = samples.get(col, title + "00")
            self.view.setColumnWidth(
                col, max(fm.horizontalAdvance(text), fm.horizontalAdvance(title)) + 24
            )

        self.detail = DeviceDetail(runtime, self)
        self.detail.removed.connect(self._on_removed)
        self.detail.intervalSet.connect(self.model.set_interval)
        self.view.selectionModel().currentRowChanged.connect(self._on_current)

        # Firmware updates: the action (button, context menu), the bar while one runs.
        self.updater = FleetUpdateRunner(runtime, self)
        self.updater.started.connect(self._update_started)
        self.updater.stage.connect(self._update_stage)
        self.updater.progress.connect(self._update_progress)
        self.updater.finished.connect(self._update_finished)
        self.updater.failed.connect(self._update_failed)
        self.update_dialog: UpdateDialog | None = None
        self._update_version = ""
        self._update_phases: dict[str, Phase] = {}
        self._update_stage_text = ""
        self._closing = False
        self.update_action = QAction("Update firmware…", self)
        self.update_action.setToolTip("Build a new firmware and update the selected devices")
        self.update_action.triggered.connect(self.open_update_dialog)
        self.update_button = QPushButton("Update firmware…")
        self.update_button.setToolTip(self.update_action.toolTip())
        self.update_button.clicked.connect(self.update_action.trigger)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.selectionModel().selectionChanged.connect(self._sync_update_action)
        self.update_bar = QFrame()
        self.update_bar.setFrameShape(QFrame.Shape.StyledPanel)
        self.update_label = QLabel()
        self.update_label.setWordWrap(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Start no more devices; those updating carry on")
        self.pause_button.clicked.connect(self._toggle_pause)
        self.cancel_update_button = QPushButton("Cancel")
        self.cancel_update_button.setToolTip(
            "Start no more devices; those updating finish (never interrupted halfway)"
        )
        self.cancel_update_button.clicked.connect(self.cancel_update)
        bar = QHBoxLayout(self.update_bar)
        bar.setContentsMargins(8, 4, 8, 4)
        bar.addWidget(self.update_label, 1)
        bar.addWidget(self.pause_button)
        bar.addWidget(self.cancel_update_button)
        self.update_bar.hide()
        # Empty until an update starts from here: the column appears with the first one.
        self.view.setColumnHidden(UPDATE, True)

        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.online_only)
        top.addWidget(self.count_label)
        top.addWidget(self.update_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.view)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([720, 440])  # the table gets the room; the detail stays readable
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.update_bar)
        layout.addWidget(splitter, 1)
        self._sync_update_action()

        # Counts change with every update; a second is fresh enough for a label and
        # keeps an O(rows) count off the per-message path.
        self._count_timer = QTimer(self)
        self._count_timer.setInterval(1000)
        self._count_timer.timeout.connect(self._update_counts)
        self._count_timer.start()
        for sig in (self.proxy.rowsInserted, self.proxy.rowsRemoved, self.proxy.modelReset):
            sig.connect(self._update_counts)

        bridge.deviceUpdated.connect(self._on_update)
        self.reload()

    # -- data ------------------------------------------------------------------------------

    def reload(self) -> None:
        """Reload every row from the registry (start-up; after bulk changes elsewhere).

        One query of the device table, on the GUI thread: a few ms for hundreds of
        devices, and it is not on the per-message path.
        """
        selected = self.detail.node_name
        self.model.load(self.runtime.registry.devices())
        if selected:
            self.select(selected)
        self._update_counts()

    def _lookup(self, node_name: str) -> Any:
        # A device seen for the first time (just provisioned): one small row query.
        try:
            return self.runtime.registry.device(node_name)
        except StationError:
            return None

    def _on_update(self, update: DeviceUpdate) -> None:
        self.model.apply(update)
        if update.node_name == self.detail.node_name:
            i = self.model.row_of(update.node_name)
            self.detail.on_update(update, None if i is None else self.model.device_row(i))

    def _on_removed(self, node_name: str) -> None:
        self.model.remove(node_name)

    def _update_counts(self, *_: object) -> None:
        online, total = self.model.online_count(), self.model.rowCount()
        shown = self.proxy.rowCount()
        text = f"{online} of {total} online"
        if shown != total:
            text += f" · {shown} shown"
        self.count_label.setText(text)
        if (online, total) != self._counts:
            self._counts = (online, total)
            self.countsChanged.emit(online, total)

    # -- selection -------------------------------------------------------------------------

    def select(self, node_name: str) -> bool:
        i = self.model.row_of(node_name)
        if i is None:
            return False
        index = self.proxy.mapFromSource(self.model.index(i, 0))
        if not index.isValid():  # filtered out
            return False
        self.view.selectionModel().setCurrentIndex(
            index,
            QItemSelectionModel.SelectionFlag.ClearAndSelect
            | QItemSelectionModel.SelectionFlag.Rows,
        )
        self.view.scrollTo(index)
        return True

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            self.detail.show_device(None)
            return
        i = self.proxy.mapToSource(current).row()
        row = self.model.device_row(i)
        if row.node_name != self.detail.node_name:
            self.detail.show_device(row)

    def selected_nodes(self) -> list[str]:
        """The selected rows' node names, in the table's order."""
        rows = sorted(self.view.selectionModel().selectedRows(), key=lambda i: i.row())
        return [self.model.node_at(self.proxy.mapToSource(i).row()) for i in rows]

    # -- firmware updates ------------------------------------------------------------------

    def _sync_update_action(self, *_: object) -> None:
        busy = self.updater.busy or self.update_dialog is not None
        enabled = bool(self.selected_nodes()) and not busy and not self._closing
        self.update_action.setEnabled(enabled)
        self.update_button.setEnabled(enabled)
        if self.updater.busy:
            why = "A firmware update is running: one at a time."
        elif not self.selected_nodes():
            why = "Select one or more devices in the table first."
        else:
            why = self.update_action.toolTip()
        self.update_button.setToolTip(why)

    def _context_menu(self, pos: QPoint) -> None:
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.addAction(self.update_action)
        menu.popup(self.view.viewport().mapToGlobal(pos))

    def open_update_dialog(self) -> None:
        nodes = self.selected_nodes()
        if not nodes or self.updater.busy or self.update_dialog is not None:
            return
        rows = [self.model.device_row(i) for n in nodes if (i := self.model.row_of(n)) is not None]
        dialog = UpdateDialog(rows, demo=self.runtime.demo is not None, parent=self)
        self.update_dialog = dialog

        def closed(code: int) -> None:
            self.update_dialog = None
            dialog.deleteLater()
            if code == UpdateDialog.DialogCode.Accepted:
                self.start_update(
                    dialog.nodes,
                    version=dialog.version.text().strip(),
                    canary=dialog.canary.value(),
                    concurrency=dialog.concurrency.value(),
                    bad_bundle=dialog.bad_bundle.isChecked(),
                )
            self._sync_update_action()

        dialog.finished.connect(closed)
        self._sync_update_action()
        dialog.open()

    def start_update(
        self,
        nodes: Sequence[str],
        *,
        version: str | None = None,
        canary: int = 1,
        concurrency: int = 4,
        bad_bundle: bool = False,
    ) -> bool:
        if self._closing or not self.updater.start(
            nodes, version=version, canary=canary, concurrency=concurrency, bad_bundle=bad_bundle
        ):
            return False
        self._update_version, self._update_phases = version or "", {}
        self.view.setColumnHidden(UPDATE, False)
        self.updateStarted.emit()
        self.pause_button.setText("Pause")
        self.pause_button.setEnabled(True)
        self.pause_button.show()
        self.cancel_update_button.setEnabled(True)
        self.cancel_update_button.show()
        self.update_bar.show()
        self._sync_update_action()
        return True

    def _update_started(self, version: str, nodes: list[str], already: list[str]) -> None:
        self._update_version = version
        self.model.clear_updates()
        self._update_phases = {n: Phase.WAITING for n in nodes}
        for node in nodes:
            self.model.set_update(node, UpdateCell(str(Phase.WAITING), version=version))
        for node in already:
            self.model.set_update(
                node, UpdateCell("up to date", f"already runs {version}", version=version)
            )
        self._show_update_state()

    def _update_stage(self, text: str) -> None:
        self._update_stage_text = text
        self._show_update_state()

    def _update_progress(self, dev: DeviceProgress) -> None:
        self._update_phases[dev.node] = dev.phase
        self.model.set_update(
            dev.node,
            UpdateCell(str(dev.phase), dev.reason, dev.canary, version=self._update_version),
        )
        self._show_update_state()

    def _show_update_state(self) -> None:
        if not self.updater.busy:
            return
        phases = list(self._update_phases.values())
        text = f"Firmware update: {self._update_stage_text}"
        if phases and self._update_stage_text.startswith("updating"):
            done = sum(p is Phase.CONFIRMED for p in phases)
            busy = sum(p is not Phase.WAITING and p not in FINAL for p in phases)
            text += f" — {done} of {len(phases)} confirmed"
            if busy:
                text += f", {busy} updating"
        if self.updater.paused:
            text += " — paused: no more devices are started"
        self.update_label.setText(text)

    def _toggle_pause(self) -> None:
        if self.updater.paused:
            self.updater.resume()
            self.pause_button.setText("Pause")
        else:
            self.updater.pause()
            self.pause_button.setText("Resume")
        self._show_update_state()

    def cancel_update(self) -> None:
        self.updater.cancel()
        self.pause_button.setEnabled(False)
        self.cancel_update_button.setEnabled(False)
        self.update_label.setText(
            "Firmware update: cancelling — no more devices are started; those updating finish"
        )

    def _update_finished(self, result: RolloutResult, summary: str) -> None:
        for dev in result.devices:
            self._update_progress(dev)
        self._end_update(summary)
        log.info("firmware update: %s", summary)
        self.updateFinished.emit(summary)

    def _update_failed(self, message: str) -> None:
        self._end_update("")
        if self._closing:
            return
        self.model.clear_updates()
        QMessageBox.warning(self, "Update firmware", message)

    def _end_update(self, text: str) -> None:
        self.pause_button.hide()
        self.cancel_update_button.hide()
        self.update_label.setText(text)
        self.update_bar.setVisible(bool(text))
        self._sync_update_action()

    def shutdown_update(self, timeout: float = 30.0) -> bool:
        """The window closes: a running update is cancelled and closed."""
        self._closing = True
        if self.update_dialog is not None:
            self.update_dialog.reject()
        return self.updater.shutdown(timeout)
