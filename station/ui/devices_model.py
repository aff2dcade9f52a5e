"""The live device table: a QAbstractTableModel keyed by node name, and its filter proxy.

`load(devices)` fills it once from the registry; after that each broker update is
applied with `apply(update)`, which touches exactly one row (one `dataChanged`, or one
`beginInsertRows` for a device the table has not seen). Never a reset per message:
a reset loses the selection and the scroll position, and costs O(rows) per message.

Times are naive UTC, as in the registry. `clock` is injectable so tests can move
time forward to see a device turn stale.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
)
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

from station.registry.models import utcnow
from station.registry.tracking import DeviceUpdate

Index = QModelIndex | QPersistentModelIndex

# Column constants (vorta style): the order of the table.
# Firmware and its Update beside the state: what an installer watches during an update.
NAME, NODE, CHIP, STATE, FIRMWARE, UPDATE, TEMPERATURE, HUMIDITY, RSSI, IP, LAST_SEEN = range(11)
HEADERS = (
    "Name",
    "Node",
    "Chip ID",
    "State",
    "Firmware",
    "Update",  # the phase of a firmware update (station/ui/fleet_update.py); else empty
    "Temperature",
    "Humidity",
    "RSSI",
    "IP",
    "Last seen",
)
NUMERIC_COLUMNS = (TEMPERATURE, HUMIDITY, RSSI)

# Raw, comparable values for sorting: numbers as floats (a missing value is -inf, so
# every value of a column has one type and the proxy compares them natively in C++
# rather than through a Python lessThan per comparison).
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
# The node name of a row, from any column (for the view and the detail panel).
NODE_ROLE = Qt.ItemDataRole.UserRole + 2
# Named in dataChanged when what the filter looks at changed (online, the searched
# text). The proxy's filterRole is set to it, so Qt re-runs the (Python) filter only
# for those changes, not for every reading or every tick of "last seen".
FILTER_ROLE = Qt.ItemDataRole.UserRole + 3
_LOOK_ROLES = [
    Qt.ItemDataRole.DisplayRole,
    Qt.ItemDataRole.ToolTipRole,
    Qt.ItemDataRole.ForegroundRole,
    Qt.ItemDataRole.DecorationRole,
]
TICK_ROLES = [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole]
UPDATE_ROLES = [*_LOOK_ROLES, SORT_ROLE]
UPDATE_FILTER_ROLES = [*UPDATE_ROLES, FILTER_ROLE]

ONLINE, STALE, OFFLINE = "online", "stale", "offline"
STATE_COLOURS = {
    ONLINE: QColor("#2e7d32"),  # green
    STALE: QColor("#e08a00"),  # amber: connected but silent
    OFFLINE: QColor("#c62828"),  # red
}
STATE_RANK = {ONLINE: 2.0, STALE: 1.0, OFFLINE: 0.0}
# The Update column's colours, by phase (station.fleet.rollout.Phase's values).
UPDATE_COLOURS = {
    "confirmed": QColor("#2e7d32"),
    "rolled back": QColor("#c62828"),
    "failed": QColor("#c62828"),
    "skipped": QColor("#6d6d6d"),
    "cancelled": QColor("#6d6d6d"),
    "not followed": QColor("#6d6d6d"),
}
UPDATE_BUSY_COLOUR = QColor("#1565c0")  # sent, downloading, verifying, rebooting
STALE_AFTER_INTERVALS = 3
# A live re-sort (when sorted by a changing column) at most every this many ticks:
# rows that jump every second cannot be read, and each re-sort repaints the whole
# table (25-45 ms on a 2-core laptop, docs/PERFORMANCE.md).
RESORT_TICKS = 3
MISSING = -math.inf


@dataclass(frozen=True)
class UpdateCell:
    """One device's part in a firmware update, as the Update column shows it."""

    phase: str  # station.fleet.rollout.Phase's value, or "up to date"
    reason: str = ""
    canary: bool = False
    version: str = ""

    def tooltip(self) -> str:
        lines = [f"Firmware {self.version}: {self.phase}" if self.version else self.phase]
        if self.reason:
            lines.append(self.reason)
        if self.canary:
            lines.append("The canary: updated first, alone; the rest wait for it to confirm.")
        return "\n".join(lines)


@dataclass
class DeviceRow:
    node_name: str
    name: str = ""
    chip_id: str | None = None
    topic_prefix: str = ""
    online: bool = False
    last_seen: dt.datetime | None = None
    temperature: float | None = None
    humidity: float | None = None
    rssi: int | None = None
    error: str | None = None
    ip: str | None = None
    firmware: str | None = None
    provisioned: bool = False
    interval_s: float | None = None  # set_interval sent from here; else the setting
    update: UpdateCell | None = None  # in the last firmware update started here
    search: str = ""  # lower-case text the filter matches against

    @classmethod
    def from_device(cls, device: Any) -> DeviceRow:
        """From a registry Device (or anything with the same attributes)."""
        row = cls(
            node_name=device.node_name,
            name=device.name or "",
            chip_id=device.chip_id,
            topic_prefix=device.topic_prefix,
            online=bool(device.online),
            last_seen=device.last_seen,
            ip=device.ip,
            firmware=device.firmware,
            provisioned=bool(getattr(device, "is_provisioned", False)),
        )
        row.set_state(getattr(device, "last_state", None) or {})
        row.reindex()
        return row

    def set_state(self, state: dict) -> None:
        self.temperature = state.get("temperature")
        self.humidity = state.get("humidity")
        self.rssi = state.get("rssi")
        self.error = state.get("error")

    def reindex(self) -> None:
        parts = (self.name, self.node_name, self.chip_id, self.ip, self.firmware)
        self.search = " ".join(p for p in parts if p).lower()


def relative_time(then: dt.datetime | None, now: dt.datetime) -> str:
    if then is None:
        return "never"
    secs = max(0, int((now - then).total_seconds()))
    if secs < 60:
        return f"{secs} s ago"
    if secs < 3600:
        return f"{secs // 60} min ago"
    if secs < 86400:
        return f"{secs // 3600} h ago"
    return f"{secs // 86400} d ago"


def _local(ts: dt.datetime) -> str:
    return ts.replace(tzinfo=dt.UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


class DeviceTableModel(QAbstractTableModel):
    def __init__(
        self,
        telemetry_interval_s: float = 10.0,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        lookup: Callable[[str], Any] | None = None,
        tick_ms: int = 1000,
        parent: QObject | None = None,
    ) -> None:
        """`lookup(node_name)` returns the registry Device (or None) for a device first
        seen in an update, so its row gets a name and chip id; without it the row
        starts from the update alone."""
        super().__init__(parent)
        self.telemetry_interval_s = float(telemetry_interval_s)
        self.clock = clock
        self.lookup = lookup
        self._rows: list[DeviceRow] = []
        self._pos: dict[str, int] = {}  # node name -> row
        self._states: list[str] = []  # state shown last, to notice stale flips on a tick
        self._icons: dict[str, QIcon] = {}
        # Sorting lives here, not in the proxy: the proxy would compare through a
        # Python data() call per comparison and re-sort (a layoutChanged and a full
        # repaint) on every message. Here a sort is one list.sort() and live re-sorting
        # is at most once per tick, and only when the order really changed.
        self._sort_column = -1
        self._sort_order = Qt.SortOrder.AscendingOrder
        self._sort_dirty = False
        self._ticks = 0
        # "Last seen" ticks: one dataChanged for that column per second, not per row.
        self._timer = QTimer(self)
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self.tick)
        if tick_ms > 0:
            self._timer.start()

    # -- feeding -----------------------------------------------------------------------

    def load(self, devices: Iterable[Any]) -> None:
        """Replace every row (once at start-up, or on an explicit reload)."""
        self.beginResetModel()
        self._rows = [DeviceRow.from_device(d) for d in devices]
        self._pos = {r.node_name: i for i, r in enumerate(self._rows)}
        now = self.clock()
        self._states = [self._state(r, now) for r in self._rows]
        self._sort_rows()
        self.endResetModel()

    def apply(self, update: DeviceUpdate) -> None:
        """One broker update: one row's dataChanged, or one inserted row."""
        i = self._pos.get(update.node_name)
        if i is None:
            self._insert(update)
            return
        row = self._rows[i]
        filtered = self._merge(row, update)
        self._states[i] = self._state(row, self.clock())
        roles = UPDATE_FILTER_ROLES if filtered else UPDATE_ROLES
        self._sort_dirty = self._sort_dirty or self._sort_column not in (-1, NAME, NODE)
        self.dataChanged.emit(self.index(i, 0), self.index(i, len(HEADERS) - 1), roles)

    def _merge(self, row: DeviceRow, update: DeviceUpdate) -> bool:
        """Fold `update` into `row`; True if a filtered-on value changed."""
        filtered = row.online != update.online
        row.online = update.online
        if update.last_seen is not None:
            row.last_seen = update.last_seen
        if update.topic_prefix:
            row.topic_prefix = update.topic_prefix
        if update.provisioned:
            row.provisioned = True
        if update.state is not None:
            row.set_state(update.state)
        if update.info:
            info = update.info
            row.chip_id = info.get("chip_id", row.chip_id)
            row.ip = info.get("ip", row.ip)
            row.firmware = info.get("firmware", row.firmware)
            before = row.search
            row.reindex()
            filtered = filtered or row.search != before
        return filtered

    def _insert(self, update: DeviceUpdate) -> None:
        device = self.lookup(update.node_name) if self.lookup is not None else None
        if device is not None:
            row = DeviceRow.from_device(device)
        else:
            row = DeviceRow(node_name=update.node_name, topic_prefix=update.topic_prefix)
        self._merge(row, update)
        row.reindex()
        i = len(self._rows)
        self.beginInsertRows(QModelIndex(), i, i)
        self._rows.append(row)
        self._pos[row.node_name] = i
        self._states.append(self._state(row, self.clock()))
        self.endInsertRows()
        self._sort_dirty = self._sort_column != -1

    def remove(self, node_name: str) -> bool:
        i = self._pos.get(node_name)
        if i is None:
            return False
        self.beginRemoveRows(QModelIndex(), i, i)
        del self._rows[i]
        del self._states[i]
        self._pos = {r.node_name: n for n, r in enumerate(self._rows)}
        self.endRemoveRows()
        return True

    def set_interval(self, node_name: str, seconds: float) -> None:
        """A device told to report every `seconds`: judge its staleness by that."""
        i = self._pos.get(node_name)
        if i is None:
            return
        self._rows[i].interval_s = float(seconds)
        self._states[i] = self._state(self._rows[i], self.clock())
        self.dataChanged.emit(self.index(i, STATE), self.index(i, STATE), UPDATE_ROLES)

    def set_update(self, node_name: str, cell: UpdateCell | None) -> None:
        """A device's phase in a firmware update (None: not in one): its Update cell."""
        i = self._pos.get(node_name)
        if i is None or self._rows[i].update == cell:
            return
        self._rows[i].update = cell
        self._sort_dirty = self._sort_dirty or self._sort_column == UPDATE
        self.dataChanged.emit(self.index(i, UPDATE), self.index(i, UPDATE), UPDATE_ROLES)

    def clear_updates(self) -> None:
        """Every Update cell emptied (a new update starts)."""
        for row in self._rows:
            if row.update is not None:
                self.set_update(row.node_name, None)

    def update_of(self, node_name: str) -> UpdateCell | None:
        i = self._pos.get(node_name)
        return None if i is None else self._rows[i].update

    def tick(self) -> None:
        """Once a second: the relative "last seen" column, plus any row turned stale,
        and the live re-sort."""
        if not self._rows:
            return
        self._ticks += 1
        if self._ticks % RESORT_TICKS == 0:
            self.resort()
        now = self.clock()
        for i, row in enumerate(self._rows):
            state = self._state(row, now)
            if state != self._states[i]:
                self._states[i] = state
                self._sort_dirty = self._sort_dirty or self._sort_column == STATE
                self.dataChanged.emit(self.index(i, STATE), self.index(i, STATE), UPDATE_ROLES)
        # Text only: no re-filter and no re-sort (the timestamps behind it did not move).
        last = len(self._rows) - 1
        self.dataChanged.emit(self.index(0, LAST_SEEN), self.index(last, LAST_SEEN), TICK_ROLES)

    # -- sorting ---------------------------------------------------------------------------

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self._sort_column, self._sort_order = column, order
        self._sort_dirty = True
        self.resort()

    def sort_spec(self) -> tuple[int, Qt.SortOrder]:
        return self._sort_column, self._sort_order

    def resort(self) -> bool:
        """Re-sort if values changed since the last sort; True if rows moved."""
        if not self._sort_dirty or self._sort_column < 0 or len(self._rows) < 2:
            self._sort_dirty = False
            return False
        self._sort_dirty = False
        new_order = self._sorted_order()
        if new_order == list(range(len(self._rows))):
            return False
        self.layoutAboutToBeChanged.emit()
        # Taken after the signal: receivers (the proxy) create persistent indexes there.
        persistent = self.persistentIndexList()
        old_to_new = [0] * len(new_order)
        for new, old in enumerate(new_order):
            old_to_new[old] = new
        self._apply_order(new_order)
        self.changePersistentIndexList(
            persistent, [self.index(old_to_new[p.row()], p.column()) for p in persistent]
        )
        self.layoutChanged.emit()
        return True

    def _sorted_order(self) -> list[int]:
        col, rows = self._sort_column, self._rows
        keys = [(self._sort_value(rows[i], col, i), rows[i].node_name) for i in range(len(rows))]
        desc = self._sort_order == Qt.SortOrder.DescendingOrder
        return sorted(range(len(rows)), key=keys.__getitem__, reverse=desc)

    def _apply_order(self, order: list[int]) -> None:
        self._rows = [self._rows[i] for i in order]
        self._states = [self._states[i] for i in order]
        self._pos = {r.node_name: n for n, r in enumerate(self._rows)}

    def _sort_rows(self) -> None:
        """Sort in place without signals (inside a reset)."""
        self._sort_dirty = False
        if self._sort_column >= 0 and len(self._rows) > 1:
            self._apply_order(self._sorted_order())

    # -- queries -----------------------------------------------------------------------

    def row_of(self, node_name: str) -> int | None:
        return self._pos.get(node_name)

    def device_row(self, row: int) -> DeviceRow:
        return self._rows[row]

    def node_at(self, row: int) -> str:
        return self._rows[row].node_name

    def state_of(self, node_name: str) -> str | None:
        i = self._pos.get(node_name)
        return None if i is None else self._states[i]

    def interval_of(self, row: DeviceRow) -> float:
        return row.interval_s or self.telemetry_interval_s

    def _state(self, row: DeviceRow, now: dt.datetime) -> str:
        if not row.online:
            return OFFLINE
        limit = STALE_AFTER_INTERVALS * self.interval_of(row)
        if row.last_seen is None or (now - row.last_seen).total_seconds() > limit:
            return STALE
        return ONLINE

    def online_count(self) -> int:
        return sum(1 for r in self._rows if r.online)

    # -- Qt model interface ------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal:
            if role == Qt.ItemDataRole.DisplayRole:
                return HEADERS[section]
            if role == Qt.ItemDataRole.TextAlignmentRole and section in NUMERIC_COLUMNS:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, col = index.row(), index.column()
        row = self._rows[r]
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col, r)
        if role == SORT_ROLE:
            return self._sort_value(row, col, r)
        if role == NODE_ROLE:
            return row.node_name
        if col == STATE:
            state = self._states[r]
            if role == Qt.ItemDataRole.ForegroundRole:
                return STATE_COLOURS[state]
            if role == Qt.ItemDataRole.DecorationRole:
                return self._icon(state)
        if col == UPDATE and row.update is not None and role == Qt.ItemDataRole.ForegroundRole:
            if row.update.phase in ("waiting", "up to date"):
                return None  # nothing happening to it: the table's own colour
            return UPDATE_COLOURS.get(row.update.phase, UPDATE_BUSY_COLOUR)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(row, col, r)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in NUMERIC_COLUMNS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def _display(self, row: DeviceRow, col: int, r: int) -> str:
        if col == NAME:
            return row.name
        if col == NODE:
            return row.node_name
        if col == CHIP:
            return row.chip_id or ""
        if col == STATE:
            return self._states[r]
        if col == TEMPERATURE:
            return "" if row.temperature is None else f"{row.temperature:.1f} °C"
        if col == HUMIDITY:
            return "" if row.humidity is None else f"{row.humidity:.0f} %"
        if col == RSSI:
            return "" if row.rssi is None else f"{row.rssi} dBm"
        if col == IP:
            return row.ip or ""
        if col == FIRMWARE:
            return row.firmware or ""
        if col == UPDATE:
            return "" if row.update is None else row.update.phase
        if col == LAST_SEEN:
            return relative_time(row.last_seen, self.clock())
        return ""

    def _sort_value(self, row: DeviceRow, col: int, r: int) -> Any:
        if col == STATE:
            return STATE_RANK[self._states[r]]
        if col in NUMERIC_COLUMNS:
            value = (row.temperature, row.humidity, row.rssi)[NUMERIC_COLUMNS.index(col)]
            return MISSING if value is None else float(value)
        if col == LAST_SEEN:
            # Most recent first when sorted descending; never seen sorts last.
            return MISSING if row.last_seen is None else row.last_seen.timestamp()
        if col == IP and row.ip:
            # Numerically by octet, so 10.0.0.9 sorts before 10.0.0.10.
            try:
                a, b, c, d = (int(x) for x in row.ip.split("."))
                return float((a << 24) | (b << 16) | (c << 8) | d)
            except ValueError:
                return MISSING
        if col == IP:
            return MISSING
        return self._display(row, col, r).lower()

    def _tooltip(self, row: DeviceRow, col: int, r: int) -> str | None:
        if col == STATE:
            state = self._states[r]
            seen = relative_time(row.last_seen, self.clock())
            if state == OFFLINE:
                if not row.provisioned and row.last_seen is None:
                    return "Offline: has not connected to the broker yet"
                return f"Offline: disconnected from the broker (last message {seen})"
            if state == STALE:
                n = STALE_AFTER_INTERVALS
                return (
                    f"Stale: connected, but no reading for more than {n} telemetry "
                    f"intervals ({n * self.interval_of(row):.0f} s); last message {seen}"
                )
            return f"Online: last message {seen}"
        if col in (TEMPERATURE, HUMIDITY) and row.error:
            return f"Sensor error: {row.error}"
        if col == LAST_SEEN and row.last_seen is not None:
            return _local(row.last_seen)
        if col == UPDATE and row.update is not None:
            return row.update.tooltip()
        if col == NODE and row.topic_prefix:
            return f"MQTT topics under {row.topic_prefix}/"
        return None

    def _icon(self, state: str) -> QIcon:
        # Built lazily: data() runs in the GUI thread, where QPixmap may be created.
        icon = self._icons.get(state)
        if icon is None:
            pix = QPixmap(12, 12)
            pix.fill(Qt.GlobalColor.transparent)
            p = QPainter(pix)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(STATE_COLOURS[state])
            p.drawEllipse(1, 1, 10, 10)
            p.end()
            icon = self._icons[state] = QIcon(pix)
        return icon


class DeviceFilterProxy(QSortFilterProxyModel):
    """Text filter (name, node, chip id, IP, firmware) and an online-only switch;
    sort requests go to the source model.

    "Online only" keeps stale rows: they are connected, just silent, which is exactly
    what an installer needs to see.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._online_only = False
        self.setSortRole(SORT_ROLE)
        self.setFilterRole(FILTER_ROLE)
        self.setDynamicSortFilter(True)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sorting is done by DeviceTableModel (see there); the proxy keeps its order."""
        model = self.sourceModel()
        if isinstance(model, DeviceTableModel):
            model.sort(column, order)
        else:
            super().sort(column, order)

    def set_text(self, text: str) -> None:
        text = text.strip().lower()
        if text != self._text:
            self._refilter(lambda: setattr(self, "_text", text))

    def set_online_only(self, on: bool) -> None:
        if on != self._online_only:
            self._refilter(lambda: setattr(self, "_online_only", on))

    def _refilter(self, change: Callable[[], None]) -> None:
        # Qt 6.10 replaced invalidateRowsFilter() (now deprecated) with this pair.
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            change()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            change()
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        if not isinstance(model, DeviceTableModel):
            return True
        row = model.device_row(source_row)
        if self._online_only and not row.online:
            return False
        return not self._text or self._text in row.search
