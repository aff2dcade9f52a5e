"""The provisioning queue as a table: one row per job, updated row by row from Progress."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from station.provisioning import Progress, Status, Step
from station.provisioning.steps import OPEN, TITLES
from station.ui.worker import JobRow

_ROOT = QModelIndex()

AP, NODE, STEP, PROGRESS, STATUS, PROBLEM = range(6)
HEADERS = ("Setup network", "Node", "Step", "Progress", "Status", "Problem and what to do")

STATUS_WORDS: dict[str, str] = {
    Status.QUEUED: "Queued",
    Status.REGISTERED: "Ready",
    Status.RUNNING: "Working…",
    Status.WAITING: "Waiting for it online",
    Status.DONE: "Done",
    Status.FAILED: "Failed",
    Status.SKIPPED: "Skipped",
    Status.CANCELLED: "Cancelled",
}
STATUS_COLOURS: dict[str, str] = {
    Status.DONE: "#1b7f3b",
    Status.FAILED: "#b3261e",
    Status.SKIPPED: "#6b6b6b",
    Status.CANCELLED: "#6b6b6b",
}
RETRYABLE = (Status.FAILED, Status.SKIPPED, Status.CANCELLED)
SKIPPABLE = (Status.QUEUED, Status.REGISTERED, Status.FAILED)

# Seconds per step before any device of this station has been timed (real hardware:
# joining an AP takes 2-6 s, the device's trial ~10 s, its restart + MQTT ~10 s).
DEFAULT_STEP_S: dict[str, float] = {
    Step.PREPARE: 0.2,
    Step.CONNECT: 5.0,
    Step.CONFIGURE: 12.0,
    Step.RECONNECT: 10.0,
}
STEP_ORDER = (Step.PREPARE, Step.CONNECT, Step.CONFIGURE, Step.RECONNECT)


def next_hint(row: JobRow) -> str:
    """The error in words, ending with what to do next (the queue's buttons)."""
    if row.status == Status.FAILED:
        text = row.error or "It stopped without a reason."
        return f"{text} Select it and click Retry, or Skip it."
    if row.status == Status.CANCELLED:
        return "Cancelled before it was configured. Select it and click Retry."
    if row.status == Status.SKIPPED:
        return "Skipped. Select it and click Retry to provision it after all."
    return ""


def step_averages(rows: list[JobRow]) -> dict[str, float]:
    """Mean seconds per step over the jobs that have timed that step."""
    sums: dict[str, list[float]] = {}
    for row in rows:
        for step, secs in (row.timings or {}).items():
            if isinstance(secs, (int, float)) and secs >= 0:
                sums.setdefault(str(step), []).append(float(secs))
    averages = dict(DEFAULT_STEP_S)
    for step, values in sums.items():
        averages[step] = sum(values) / len(values)
    return averages


def remaining_seconds(rows: list[JobRow]) -> float:
    """Rough time left: every open job's steps not yet timed, at the measured averages.

    Devices waiting to come online do so in parallel, so step 4 counts once per batch
    rather than once per device.
    """
    averages = step_averages(rows)
    total = 0.0
    waiting = 0.0
    for row in rows:
        if row.status not in OPEN:
            continue
        done = set((row.timings or {}).keys())
        for step in STEP_ORDER:
            if step in done:
                continue
            if step == Step.RECONNECT:
                waiting = max(waiting, averages[step])
            else:
                total += averages[step]
    return total + waiting


def overall_progress(rows: list[JobRow]) -> int:
    """Mean progress, counting skipped/cancelled/failed rows as finished with the queue."""
    if not rows:
        return 0
    values = [
        100 if r.status in (Status.DONE, Status.SKIPPED, Status.CANCELLED) else r.progress
        for r in rows
    ]
    return round(sum(values) / len(values))


class ProvisionQueueModel(QAbstractTableModel):
    """Rows are JobRow snapshots keyed by provisioning id; updates emit per-row dataChanged."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[JobRow] = []
        self._index: dict[str, int] = {}

    # -- Qt interface ------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return HEADERS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == AP:
                return row.ap_ssid
            if col == NODE:
                return row.node_name
            if col == STEP:
                try:
                    return TITLES[Step(row.step)]
                except ValueError:
                    return row.step
            if col == PROGRESS:
                return row.progress
            if col == STATUS:
                return STATUS_WORDS.get(row.status, row.status)
            if col == PROBLEM:
                return next_hint(row)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == PROBLEM:
                return next_hint(row) or None
            if col in (STEP, STATUS):
                return row.message or None
        if role == Qt.ItemDataRole.ForegroundRole and col in (STATUS, PROBLEM):
            colour = STATUS_COLOURS.get(row.status)
            return QColor(colour) if colour else None
        if role == Qt.ItemDataRole.UserRole:
            return row
        return None

    # -- updates -----------------------------------------------------------------------

    def rows(self) -> list[JobRow]:
        return list(self._rows)

    def ids(self) -> list[str]:
        return [r.provisioning_id for r in self._rows]

    def row_of(self, pid: str) -> JobRow | None:
        i = self._index.get(pid)
        return None if i is None else self._rows[i]

    def merge(self, rows: list[JobRow]) -> None:
        """Update rows in place, append new ones (never a reset: selection survives)."""
        for new in rows:
            i = self._index.get(new.provisioning_id)
            if i is None:
                self._append(new)
            else:
                if not new.message:
                    new.message = self._rows[i].message
                self._rows[i] = new
                self._changed(i)

    def apply(self, p: Progress) -> None:
        i = self._index.get(p.provisioning_id)
        if i is None:
            self._append(
                JobRow(
                    p.provisioning_id,
                    p.ap_ssid or "",
                    p.node_name,
                    str(p.step),
                    p.progress,
                    p.status,
                    p.error,
                    {},
                    p.message,
                )
            )
            return
        row = self._rows[i]
        row.step, row.progress, row.status = str(p.step), p.progress, p.status
        row.error, row.message = p.error, p.message
        self._changed(i)

    def set_timings(self, pid: str, timings: dict[str, float]) -> None:
        row = self.row_of(pid)
        if row is not None:
            row.timings = dict(timings)

    def remove_finished(self) -> None:
        """Clear done/skipped rows (a reset is fine: the person asked for it)."""
        self.beginResetModel()
        self._rows = [r for r in self._rows if r.status not in (Status.DONE, Status.SKIPPED)]
        self._index = {r.provisioning_id: i for i, r in enumerate(self._rows)}
        self.endResetModel()

    def _append(self, row: JobRow) -> None:
        n = len(self._rows)
        self.beginInsertRows(QModelIndex(), n, n)
        self._rows.append(row)
        self._index[row.provisioning_id] = n
        self.endInsertRows()

    def _changed(self, i: int) -> None:
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(HEADERS) - 1))


class ProgressDelegate(QStyledItemDelegate):
    """A progress bar in the cell, with the seed's percentage as text."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        value = index.data(Qt.ItemDataRole.DisplayRole)
        if not isinstance(value, int):
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.minimum, bar.maximum, bar.progress = 0, 100, value
        bar.text = f"{value} %"
        bar.textVisible = True
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)
