"""The GUI over the radio's owner (station.wifi.radio), on the demo site: the status bar
reads the owner's state and never calls the backend while the radio is busy, and WiFi
work asked for while someone else holds the radio waits until the laptop is home."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtWidgets import QWizard

from station.runtime import StationRuntime
from station.ui.log_panel import QtLogHandler
from station.ui.main_window import STATUS_REFRESH_MS, MainWindow
from station.ui.provision_tab import ProvisionTab
from station.ui.wizard import ProvisionWizard
from station.wifi import Excursion, http_json_probe

pytestmark = pytest.mark.timeout(120)

CONFIGURE = 2


def _count_calls(rt: StationRuntime, method: str) -> list[str]:
    """Record each call of the raw backend's `method`, with the laptop's network then."""
    raw = rt.radio.backend
    real = getattr(raw, method)
    seen: list[str] = []

    def counted(*args, **kwargs):
        seen.append(rt.demo.air.laptop().ssid)
        return real(*args, **kwargs)

    setattr(raw, method, counted)
    return seen


def test_status_bar_during_a_trip_reads_state_and_never_calls_the_backend(qtbot, demo_runtime):
    rt = demo_runtime
    window = MainWindow(rt, QtLogHandler())
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(
        lambda: window.network_label.text() == f"Network: {rt.demo.home_ssid}", timeout=10_000
    )
    device = rt.demo.air.setup_ap(rt.demo.chip_ids[0]).ssid
    on_device, go_on, errors = threading.Event(), threading.Event(), []

    def batch() -> None:
        try:
            with rt.radio.hold("provisioning batch") as wifi, Excursion(wifi) as trip:
                trip.connect(device, "12345678", timeout=10, probe=http_json_probe())
                on_device.set()
                go_on.wait(30)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=batch)
    worker.start()
    assert on_device.wait(20), errors
    current = _count_calls(rt, "current")
    remember = _count_calls(rt, "remember_home")
    slowest = 0.0
    for _ in range(20):
        started = time.monotonic()
        window._refresh_status()
        slowest = max(slowest, time.monotonic() - started)
    qtbot.wait(STATUS_REFRESH_MS + 500)  # the timer's own refresh, too
    assert window.network_label.text() == f"Network: {device} (busy: provisioning batch)"
    assert current == [] and remember == []
    assert slowest < 0.05  # never waits for the radio
    go_on.set()
    worker.join(20)
    assert errors == []
    qtbot.waitUntil(
        lambda: window.network_label.text() == f"Network: {rt.demo.home_ssid}", timeout=10_000
    )
    window.close()


def test_a_scan_asked_while_a_wizard_is_on_the_device_waits_until_home(qtbot, demo_runtime):
    rt = demo_runtime
    home = rt.registry.homes()[0]
    wizard = ProvisionWizard(rt, home, rt.secrets.home_password(home.id))
    qtbot.addWidget(wizard)
    wizard.show()
    qtbot.waitUntil(lambda: wizard.prepare_page.target.count() == 3, timeout=20_000)
    wizard.button(QWizard.WizardButton.NextButton).click()
    qtbot.waitUntil(lambda: wizard.currentId() == CONFIGURE, timeout=30_000)
    device = wizard.prepare_page.target.currentText()
    assert rt.demo.air.laptop().ssid == device

    tab = ProvisionTab(rt, lambda: (home, rt.secrets.home_password(home.id)))
    qtbot.addWidget(tab)
    scans = _count_calls(rt, "scan")
    found: list[list] = []
    tab._worker().scanned.connect(found.append)
    tab.scan_button.click()
    assert tab.status_label.text().endswith(f"(after: single device ({device}))")
    qtbot.wait(500)
    assert scans == [] and found == []  # queued behind the wizard's trip
    assert rt.radio.state().queued == ("scanning for devices",)

    worker = wizard.worker
    wizard.reject()  # closed on the device network: its worker goes home, then the scan
    qtbot.waitUntil(lambda: len(found) == 1, timeout=20_000)
    assert scans == [rt.demo.home_ssid] and len(found[0]) == 3
    assert not worker.is_busy()
    laptop = rt.demo.air.laptop()
    assert laptop.ssid == rt.demo.home_ssid and not laptop.profiles
    assert tab.shutdown(30)


def test_quitting_with_a_wizard_on_the_device_frees_the_radio_at_home(qtbot, demo_runtime):
    rt = demo_runtime
    window = MainWindow(rt, QtLogHandler())
    qtbot.addWidget(window)
    window.show()
    window.open_wizard()
    (wizard,) = window.findChildren(ProvisionWizard)
    qtbot.waitUntil(lambda: wizard.prepare_page.target.count() == 3, timeout=20_000)
    wizard.button(QWizard.WizardButton.NextButton).click()
    qtbot.waitUntil(lambda: wizard.currentId() == CONFIGURE, timeout=30_000)
    assert rt.demo.air.laptop().ssid != rt.demo.home_ssid
    assert rt.radio.state().busy.startswith("single device (")
    window.close()
    assert rt.radio.close(20)  # the wizard's job ended, at home
    laptop = rt.demo.air.laptop()
    assert laptop.ssid == rt.demo.home_ssid and not laptop.profiles
