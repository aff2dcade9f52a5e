"""The main window as an installer meets it in demo mode: provision the batch from the
Provision tab, watch the Devices tab fill live, and close safely."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from station.ui.devices_model import TEMPERATURE, DeviceTableModel
from station.ui.log_panel import QtLogHandler
from station.ui.main_window import MainWindow


def _reading(model: DeviceTableModel, r: int) -> bool:
    row = model.device_row(r)
    return row.online and row.temperature is not None and row.humidity is not None


def test_demo_batch_fills_the_device_table(qtbot, demo_runtime):
    window = MainWindow(demo_runtime, QtLogHandler(), "Demo mode")
    qtbot.addWidget(window)
    window.show()
    assert window.homes.current().name == "Demo home"
    tab = window.provision_tab
    window.tabs.setCurrentWidget(tab)
    tab.scan_button.click()
    qtbot.waitUntil(lambda: len(tab.targets) == 3, timeout=20_000)
    tab.provision_all_button.click()
    devices = window.devices_tab.model
    qtbot.waitUntil(lambda: devices.online_count() == 3, timeout=60_000)
    qtbot.waitUntil(lambda: not window._batch_running, timeout=20_000)
    assert devices.rowCount() == 3
    # Real readings, not the empty placeholder: the host board's DHT11 reads 19-24 °C
    # (firmware/board/host_board.py), and humidity is a percentage.
    qtbot.waitUntil(lambda: all(_reading(devices, r) for r in range(3)), timeout=20_000)
    for r in range(3):
        row = devices.device_row(r)
        assert 15.0 <= row.temperature <= 30.0 and 0.0 < row.humidity <= 100.0, row
        assert row.error is None
        assert devices.data(devices.index(r, TEMPERATURE)).endswith(" °C")
    assert window.devices_label.text() == "Devices: 3 online / 3"
    qtbot.waitUntil(
        lambda: (
            "3 clients" in window.broker_label.text() or "4 clients" in window.broker_label.text()
        ),
        timeout=5_000,
    )
    # The status bar's real network, not its "…" placeholder.
    home_label = "Network: " + demo_runtime.demo.home_ssid
    qtbot.waitUntil(lambda: window.network_label.text() == home_label, timeout=10_000)
    laptop = demo_runtime.demo.air.laptop()
    assert laptop.ssid == demo_runtime.demo.home_ssid and not laptop.profiles
    window.close()


def test_closing_during_a_batch_asks_first(qtbot, demo_runtime, monkeypatch):
    window = MainWindow(demo_runtime, QtLogHandler())
    qtbot.addWidget(window)
    window.show()
    asked = []

    def answer(*args, **_kw):
        asked.append(args[1])
        return QMessageBox.StandardButton.No if len(asked) == 1 else QMessageBox.StandardButton.Yes

    monkeypatch.setattr("station.ui.main_window.QMessageBox.question", answer)
    tab = window.provision_tab
    tab.scan_button.click()
    qtbot.waitUntil(lambda: len(tab.targets) == 3, timeout=20_000)
    tab.provision_all_button.click()
    qtbot.waitUntil(lambda: window._batch_running, timeout=20_000)
    window.close()
    assert window.isVisible() and asked == ["Provisioning is running"]
    window.close()
    assert not window.isVisible() and len(asked) == 2
    laptop = demo_runtime.demo.air.laptop()
    assert laptop.ssid == demo_runtime.demo.home_ssid and not laptop.profiles
