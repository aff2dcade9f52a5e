"""The main window as an installer meets it in demo mode: provision the batch from the
Provision tab, watch the Devices tab fill live, and close safely."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from station.ui.log_panel import QtLogHandler
from station.ui.main_window import MainWindow


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
    assert window.devices_label.text() == "Devices: 3 online / 3"
    qtbot.waitUntil(lambda: "3 clients" in window.broker_label.text()
                    or "4 clients" in window.broker_label.text(), timeout=5_000)
    assert window.network_label.text() == "Network: " + demo_runtime.demo.home_ssid \
        or window.network_label.text() == "Network: …"
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
        return QMessageBox.StandardButton.No if len(asked) == 1 else \
            QMessageBox.StandardButton.Yes

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
