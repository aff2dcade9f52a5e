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
    QRect,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from station.errors import StationError
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
    DeviceFilterProxy,
    DeviceTableModel,
)

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
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
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

        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.online_only)
        top.addWidget(self.count_label)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.view)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([720, 440])  # the table gets the room; the detail stays readable
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

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
