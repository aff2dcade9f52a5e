"""DeviceTableModel and DeviceFilterProxy without any widget."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from PySide6.QtCore import Qt

from station.registry.tracking import DeviceUpdate
from station.ui.devices_model import (
    HUMIDITY,
    LAST_SEEN,
    NAME,
    NODE,
    RSSI,
    SORT_ROLE,
    STATE,
    STATE_COLOURS,
    TEMPERATURE,
    UPDATE,
    UPDATE_BUSY_COLOUR,
    UPDATE_COLOURS,
    DeviceFilterProxy,
    DeviceTableModel,
    UpdateCell,
    relative_time,
)

T0 = dt.datetime(2026, 11, 27, 12, 0, 0)
DISPLAY = Qt.ItemDataRole.DisplayRole


def fake_device(n: int, **kw) -> SimpleNamespace:
    """Anything with a registry Device's attributes will do."""
    fields = dict(
        node_name=f"esp32_dht11_{n:03d}",
        name=f"Sensor {n}",
        chip_id=f"A4CF12EF{n:04d}",
        topic_prefix=f"home/esp32_dht11_{n:03d}",
        online=True,
        last_seen=T0,
        ip=f"192.168.1.{n}",
        firmware="1.0.0",
        is_provisioned=True,
        last_state={"temperature": 20.0 + n, "humidity": 40.0, "rssi": -50 - n},
    )
    fields.update(kw)
    return SimpleNamespace(**fields)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def model(qapp, clock) -> DeviceTableModel:
    # tick_ms=0: no timer; tests call tick() themselves.
    m = DeviceTableModel(10, clock=clock, tick_ms=0)
    m.load([fake_device(n) for n in (1, 2, 3)])
    return m


def text(model, row: int, col: int) -> str:
    return model.data(model.index(row, col), DISPLAY)


def record(model) -> list[tuple]:
    seen: list[tuple] = []
    model.dataChanged.connect(
        lambda tl, br, roles=(): seen.append((tl.row(), br.row(), tl.column(), br.column()))
    )
    for sig in ("modelReset", "layoutChanged", "rowsInserted", "rowsRemoved"):
        getattr(model, sig).connect(lambda *a, s=sig: seen.append((s,)))
    return seen


def test_load_shows_each_device(model):
    assert model.rowCount() == 3 and model.columnCount() == 11
    assert text(model, 0, NAME) == "Sensor 1"
    assert text(model, 0, NODE) == "esp32_dht11_001"
    assert text(model, 0, STATE) == "online"
    assert text(model, 1, TEMPERATURE) == "22.0 °C"
    assert text(model, 1, HUMIDITY) == "40 %"
    assert text(model, 1, RSSI) == "-52 dBm"
    assert text(model, 2, LAST_SEEN) == "0 s ago"
    assert model.headerData(STATE, Qt.Orientation.Horizontal, DISPLAY) == "State"


def test_the_update_column_shows_a_devices_phase_and_reason_in_one_cell(model):
    assert headers(model)[UPDATE] == "Update"
    assert [text(model, r, UPDATE) for r in range(3)] == ["", "", ""]  # in no update
    seen = record(model)
    cell = UpdateCell("rolled back", "crashed at boot", canary=True, version="1.0.1")
    model.set_update("esp32_dht11_002", cell)
    assert seen == [(1, 1, UPDATE, UPDATE)]  # that cell only
    assert text(model, 1, UPDATE) == "rolled back"
    index = model.index(1, UPDATE)
    tip = model.data(index, Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Firmware 1.0.1: rolled back\ncrashed at boot\nThe canary")
    assert model.data(index, Qt.ItemDataRole.ForegroundRole) == UPDATE_COLOURS["rolled back"]
    assert model.update_of("esp32_dht11_002") == cell
    model.set_update("esp32_dht11_001", UpdateCell("downloading", version="1.0.1"))
    busy = model.data(model.index(0, UPDATE), Qt.ItemDataRole.ForegroundRole)
    assert busy == UPDATE_BUSY_COLOUR != UPDATE_COLOURS["confirmed"]
    model.set_update("esp32_dht11_001", UpdateCell("waiting", version="1.0.1"))
    assert model.data(model.index(0, UPDATE), Qt.ItemDataRole.ForegroundRole) is None
    del seen[1:]
    model.set_update("esp32_dht11_002", cell)  # the same again: no repaint
    assert len(seen) == 1
    model.clear_updates()
    assert text(model, 1, UPDATE) == "" and model.update_of("esp32_dht11_002") is None
    assert model.data(index, Qt.ItemDataRole.ToolTipRole) is None
    assert seen[1:] == [(0, 0, UPDATE, UPDATE), (1, 1, UPDATE, UPDATE)]  # the two shown


def headers(model) -> list[str]:
    return [model.headerData(c, Qt.Orientation.Horizontal, DISPLAY) for c in range(11)]


def test_update_changes_only_its_row(model, clock):
    seen = record(model)
    clock.now = T0 + dt.timedelta(seconds=5)
    model.apply(
        DeviceUpdate(
            node_name="esp32_dht11_002",
            topic_prefix="home/esp32_dht11_002",
            kind="state",
            online=True,
            last_seen=clock.now,
            state={"temperature": 25.25, "humidity": 55.0, "rssi": -70},
        )
    )
    assert seen == [(1, 1, 0, LAST_SEEN)]  # one dataChanged, row 1 only, no reset or layout change
    assert text(model, 1, TEMPERATURE) == "25.2 °C"
    assert text(model, 1, RSSI) == "-70 dBm"
    assert text(model, 0, TEMPERATURE) == "21.0 °C"


def test_info_update_changes_ip_and_firmware(model):
    model.apply(
        DeviceUpdate(
            "esp32_dht11_003",
            "home/esp32_dht11_003",
            "info",
            True,
            T0,
            info={"ip": "10.0.0.7", "firmware": "1.1.0", "chip_id": "A4CF12EF0003"},
        )
    )
    row = model.device_row(2)
    assert (row.ip, row.firmware) == ("10.0.0.7", "1.1.0")


def test_new_device_is_inserted(model):
    seen = record(model)
    looked_up: list[str] = []

    def lookup(node: str):
        looked_up.append(node)
        return fake_device(9, online=False, last_seen=None, last_state=None)

    model.lookup = lookup
    model.apply(DeviceUpdate("esp32_dht11_009", "home/esp32_dht11_009", "online", True, T0))
    assert seen == [("rowsInserted",)]
    assert looked_up == ["esp32_dht11_009"]
    assert model.rowCount() == 4
    assert text(model, 3, NAME) == "Sensor 9"
    assert text(model, 3, STATE) == "online"  # the update wins over the looked-up row
    # A second update for it is an ordinary row change.
    seen.clear()
    model.apply(DeviceUpdate("esp32_dht11_009", "home/esp32_dht11_009", "offline", False, T0))
    assert seen == [(3, 3, 0, LAST_SEEN)]


def test_new_device_without_lookup(qapp, clock):
    m = DeviceTableModel(10, clock=clock, tick_ms=0)
    m.apply(DeviceUpdate("esp32_dht11_001", "home/esp32_dht11_001", "online", True, T0))
    assert m.rowCount() == 1 and text(m, 0, NODE) == "esp32_dht11_001"


def test_offline_update(model):
    model.apply(DeviceUpdate("esp32_dht11_001", "home/esp32_dht11_001", "offline", False, T0))
    index = model.index(0, STATE)
    assert model.data(index) == "offline"
    assert model.data(index, Qt.ItemDataRole.ForegroundRole) == STATE_COLOURS["offline"]
    assert model.data(index, Qt.ItemDataRole.DecorationRole) is not None
    assert "disconnected" in model.data(index, Qt.ItemDataRole.ToolTipRole)


def test_stale_after_three_intervals(model, clock):
    seen = record(model)
    clock.now = T0 + dt.timedelta(seconds=30)  # exactly 3 intervals: not yet
    model.tick()
    assert model.state_of("esp32_dht11_001") == "online"
    # Only the "last seen" column ticks.
    assert seen == [(0, 2, LAST_SEEN, LAST_SEEN)]
    assert text(model, 0, LAST_SEEN) == "30 s ago"

    # Device 2 keeps talking; 1 and 3 go silent.
    model.apply(
        DeviceUpdate("esp32_dht11_002", "home/esp32_dht11_002", "state", True, clock.now, {})
    )
    seen.clear()
    clock.now = T0 + dt.timedelta(seconds=31)
    model.tick()
    assert model.state_of("esp32_dht11_001") == "stale"
    assert model.state_of("esp32_dht11_002") == "online"
    assert model.state_of("esp32_dht11_003") == "stale"
    assert seen == [
        (0, 0, STATE, STATE),
        (2, 2, STATE, STATE),
        (0, 2, LAST_SEEN, LAST_SEEN),
    ]
    index = model.index(0, STATE)
    assert model.data(index, Qt.ItemDataRole.ForegroundRole) == STATE_COLOURS["stale"]
    assert "Stale" in model.data(index, Qt.ItemDataRole.ToolTipRole)
    # A reading brings it back.
    model.apply(
        DeviceUpdate("esp32_dht11_001", "home/esp32_dht11_001", "state", True, clock.now, {})
    )
    assert model.state_of("esp32_dht11_001") == "online"


def test_stale_uses_interval_set_on_device(model, clock):
    model.set_interval("esp32_dht11_001", 60)
    clock.now = T0 + dt.timedelta(seconds=100)
    model.tick()
    assert model.state_of("esp32_dht11_001") == "online"
    assert model.state_of("esp32_dht11_002") == "stale"


def test_offline_is_never_stale(model, clock):
    model.apply(DeviceUpdate("esp32_dht11_001", "home/esp32_dht11_001", "offline", False, T0))
    clock.now = T0 + dt.timedelta(hours=1)
    model.tick()
    assert model.state_of("esp32_dht11_001") == "offline"


def test_remove(model):
    assert model.remove("esp32_dht11_002")
    assert [model.node_at(i) for i in range(model.rowCount())] == [
        "esp32_dht11_001",
        "esp32_dht11_003",
    ]
    assert model.row_of("esp32_dht11_003") == 1
    assert not model.remove("esp32_dht11_002")


def sorted_nodes(proxy, col: int, order=Qt.SortOrder.AscendingOrder) -> list[str]:
    proxy.sort(col, order)
    return [proxy.data(proxy.index(r, NODE)) for r in range(proxy.rowCount())]


def test_numbers_sort_as_numbers(qapp, clock):
    m = DeviceTableModel(10, clock=clock, tick_ms=0)
    temps = {1: 9.5, 2: 100.0, 3: 10.0, 4: None, 5: -3.0}
    m.load(
        [
            fake_device(n, last_state=None if t is None else {"temperature": t, "rssi": -n * 20})
            for n, t in temps.items()
        ]
    )
    proxy = DeviceFilterProxy()
    proxy.setSourceModel(m)
    # As text "100.0" < "9.5"; as numbers it is last. A missing reading sorts first.
    assert sorted_nodes(proxy, TEMPERATURE) == [
        "esp32_dht11_004",
        "esp32_dht11_005",
        "esp32_dht11_001",
        "esp32_dht11_003",
        "esp32_dht11_002",
    ]
    assert proxy.data(proxy.index(0, TEMPERATURE), SORT_ROLE) == float("-inf")
    assert sorted_nodes(proxy, RSSI, Qt.SortOrder.DescendingOrder)[:2] == [
        "esp32_dht11_001",
        "esp32_dht11_002",
    ]
    # The sort follows live updates (dynamic sort).
    m.apply(
        DeviceUpdate(
            "esp32_dht11_004", "home/esp32_dht11_004", "state", True, T0, {"temperature": 50.0}
        )
    )
    proxy.sort(TEMPERATURE, Qt.SortOrder.AscendingOrder)
    nodes = [proxy.data(proxy.index(r, NODE)) for r in range(proxy.rowCount())]
    assert nodes[-2:] == ["esp32_dht11_004", "esp32_dht11_002"]


def test_ip_sorts_by_octets(qapp, clock):
    m = DeviceTableModel(10, clock=clock, tick_ms=0)
    m.load([fake_device(n, ip=f"10.0.0.{n}") for n in (10, 9, 100)])
    proxy = DeviceFilterProxy()
    proxy.setSourceModel(m)
    assert sorted_nodes(proxy, 7) == ["esp32_dht11_009", "esp32_dht11_010", "esp32_dht11_100"]


def test_filter_text_and_online_only(model):
    proxy = DeviceFilterProxy()
    proxy.setSourceModel(model)
    assert proxy.rowCount() == 3
    proxy.set_text("sensor 2")
    assert proxy.rowCount() == 1
    proxy.set_text("A4CF12EF0003")  # chip id, case-insensitive
    assert proxy.data(proxy.index(0, NODE)) == "esp32_dht11_003"
    proxy.set_text("192.168.1.")
    assert proxy.rowCount() == 3
    proxy.set_text("")
    proxy.set_online_only(True)
    model.apply(DeviceUpdate("esp32_dht11_001", "home/esp32_dht11_001", "offline", False, T0))
    assert proxy.rowCount() == 2  # the row left the filtered view on its own update
    model.apply(DeviceUpdate("esp32_dht11_001", "home/esp32_dht11_001", "online", True, T0))
    assert proxy.rowCount() == 3
    proxy.set_online_only(False)
    proxy.set_text("nothing like this")
    assert proxy.rowCount() == 0


def test_timer_ticks_last_seen(qtbot, clock):
    m = DeviceTableModel(10, clock=clock, tick_ms=20)
    m.load([fake_device(1)])
    clock.now = T0 + dt.timedelta(minutes=5)
    with qtbot.waitSignal(m.dataChanged, timeout=2000):
        pass
    assert text(m, 0, LAST_SEEN) == "5 min ago"


def test_relative_time():
    assert relative_time(None, T0) == "never"
    assert relative_time(T0, T0 + dt.timedelta(seconds=59)) == "59 s ago"
    assert relative_time(T0, T0 + dt.timedelta(minutes=2)) == "2 min ago"
    assert relative_time(T0, T0 + dt.timedelta(hours=3)) == "3 h ago"
    assert relative_time(T0, T0 + dt.timedelta(days=2)) == "2 d ago"
    assert relative_time(T0 + dt.timedelta(seconds=5), T0) == "0 s ago"  # clock skew


def test_live_resort_on_tick_keeps_selection_rows(qapp, clock):
    """Sorted by a changing column, rows move on a tick (every RESORT_TICKS), in one
    layoutChanged, and persistent indexes (a view's selection) follow their device."""
    from PySide6.QtCore import QPersistentModelIndex

    from station.ui.devices_model import RESORT_TICKS

    m = DeviceTableModel(10, clock=clock, tick_ms=0)
    m.load([fake_device(n) for n in (1, 2, 3)])  # temperatures 21, 22, 23
    proxy = DeviceFilterProxy()
    proxy.setSourceModel(m)
    proxy.sort(TEMPERATURE, Qt.SortOrder.AscendingOrder)
    held = QPersistentModelIndex(proxy.index(0, NODE))
    assert held.data() == "esp32_dht11_001"
    m.apply(
        DeviceUpdate(
            "esp32_dht11_001", "home/esp32_dht11_001", "state", True, T0, {"temperature": 99.0}
        )
    )
    layouts: list[int] = []
    m.layoutChanged.connect(lambda *a: layouts.append(1))
    for _ in range(RESORT_TICKS):
        m.tick()
    assert layouts == [1]
    assert [proxy.index(r, NODE).data() for r in range(3)] == [
        "esp32_dht11_002",
        "esp32_dht11_003",
        "esp32_dht11_001",
    ]
    assert held.row() == 2 and held.data() == "esp32_dht11_001"
    for _ in range(RESORT_TICKS):
        m.tick()
    assert layouts == [1]  # nothing changed: no second layout change
