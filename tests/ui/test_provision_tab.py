"""The Provision tab against the demo site: scan, "Provision all", errors with their
retry, pause and cancel (the laptop always ends at home), and a GUI that never stalls."""

from __future__ import annotations

import itertools
import time

import pytest
from PySide6.QtCore import QItemSelectionModel, QTimer

from station.provisioning import Status
from station.runtime import StationRuntime
from station.ui.provision_model import PROBLEM, STATUS
from station.ui.provision_tab import ProvisionTab

RUN_TIMEOUT_MS = 90_000


@pytest.fixture
def site(demo_runtime) -> StationRuntime:
    """conftest's demo station: 3 simulated devices, a home "Demo home" and its password."""
    return demo_runtime


def _home(rt: StationRuntime):
    home = rt.registry.homes()[0]
    return home, rt.secrets.home_password(home.id)


def _laptop_home(rt: StationRuntime) -> bool:
    laptop = rt.demo.air.laptop()
    return laptop.ssid == rt.demo.home_ssid and not laptop.profiles


@pytest.fixture
def tab(qtbot, site):
    password = {"value": None}

    def provider():
        home, real = _home(site)
        return home, password["value"] or real

    tab = ProvisionTab(site, provider)
    tab.password = password  # the test may hand out a wrong one
    qtbot.addWidget(tab)
    tab.resize(1000, 500)
    tab.show()
    yield tab
    assert tab.shutdown(30)


def _scan(qtbot, tab) -> None:
    with qtbot.waitSignal(_worker(tab).scanned, timeout=20_000):
        tab.scan_button.click()


def _worker(tab):
    tab._worker()
    return tab.worker


def _run_to_end(qtbot, tab, click) -> object:
    with qtbot.waitSignal(_worker(tab).finished, timeout=RUN_TIMEOUT_MS) as blocker:
        click()
    return blocker.args[0]


def _statuses(tab) -> list[str]:
    return [r.status for r in tab.model.rows()]


def test_scan_finds_the_three_devices(qtbot, tab, site):
    assert tab.scan_button.isEnabled() and not tab.start_button.isEnabled()
    _scan(qtbot, tab)
    assert sorted(t.ssid for t in tab.targets) == sorted(
        f"esp32-dht11-Setup-{c[-6:]}" for c in site.demo.chip_ids
    )
    assert "3 devices" in tab.status_label.text()
    assert tab.provision_all_button.isEnabled()


def test_provision_all_to_the_end(qtbot, tab, site):
    _scan(qtbot, tab)
    running = []
    tab.runningChanged.connect(running.append)
    summary = _run_to_end(qtbot, tab, tab.provision_all_button.click)
    assert summary.ok and len(summary.done) == 3
    assert running == [True, False]
    qtbot.waitUntil(lambda: _statuses(tab) == [Status.DONE] * 3, timeout=5000)
    assert [r.progress for r in tab.model.rows()] == [100] * 3
    assert tab.overall.value() == 100
    assert tab.model.index(0, STATUS).data() == "Done"
    assert all(d.is_provisioned for d in site.registry.devices())
    assert _laptop_home(site)
    assert "All done: 3 devices online" in tab.status_label.text()
    assert tab.clear_button.isEnabled() and not tab.pause_button.isEnabled()


def test_wrong_password_shows_the_error_and_retry_finishes(qtbot, tab, site):
    _scan(qtbot, tab)
    tab.targets = tab.targets[:1]  # one device is enough
    tab.password["value"] = "not-the-password"
    summary = _run_to_end(qtbot, tab, tab.provision_all_button.click)
    assert len(summary.failed) == 1
    qtbot.waitUntil(lambda: _statuses(tab) == [Status.FAILED], timeout=5000)
    problem = tab.model.index(0, PROBLEM).data()
    assert "password" in problem.lower() and "Retry" in problem
    assert "not-the-password" not in problem
    assert _laptop_home(site)

    tab.table.selectionModel().select(
        tab.model.index(0, 0),
        QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows,
    )
    assert tab.retry_button.isEnabled() and tab.skip_button.isEnabled()
    tab.password["value"] = None  # the right one now
    summary = _run_to_end(qtbot, tab, tab.retry_button.click)
    assert summary.ok and len(summary.done) == 1
    qtbot.waitUntil(lambda: _statuses(tab) == [Status.DONE], timeout=5000)
    assert tab.model.index(0, PROBLEM).data() == ""
    assert _laptop_home(site)


def test_pause_then_start_again(qtbot, tab, site):
    _scan(qtbot, tab)
    w = _worker(tab)

    def on_progress(p):
        if p.status == Status.WAITING and p.progress == 80 and tab.pause_button.isEnabled():
            tab.pause_button.click()

    w.progress.connect(on_progress)
    summary = _run_to_end(qtbot, tab, tab.provision_all_button.click)
    # The click reaches the worker a moment later (signals are queued): it may have
    # configured the next device meanwhile; that one is still confirmed online.
    assert summary.paused and 1 <= len(summary.done) < 3
    assert _laptop_home(site)
    assert "Paused" in tab.status_label.text()
    left = 3 - len(summary.done)
    qtbot.waitUntil(lambda: _statuses(tab).count(Status.REGISTERED) == left, timeout=5000)
    assert tab.start_button.isEnabled() and not tab.pause_button.isEnabled()
    w.progress.disconnect(on_progress)
    summary = _run_to_end(qtbot, tab, tab.start_button.click)
    assert summary.ok and len(summary.done) == left
    assert _statuses(tab) == [Status.DONE] * 3
    assert _laptop_home(site)


def test_cancel_leaves_the_laptop_home(qtbot, tab, site):
    _scan(qtbot, tab)
    w = _worker(tab)
    away = []

    def on_progress(p):
        if p.status == Status.RUNNING and p.progress == 60 and not away:
            away.append(site.demo.air.laptop().ssid)
            tab.cancel_button.click()

    w.progress.connect(on_progress)
    summary = _run_to_end(qtbot, tab, tab.provision_all_button.click)
    assert summary.cancelled
    assert away and away[0] != site.demo.home_ssid  # it was on a device's network
    assert _laptop_home(site)
    assert "Cancelled" in tab.status_label.text()
    qtbot.waitUntil(lambda: Status.CANCELLED in _statuses(tab), timeout=5000)


def test_the_gui_thread_keeps_running_during_a_batch(qtbot, tab, site):
    _scan(qtbot, tab)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    summary = _run_to_end(qtbot, tab, tab.provision_all_button.click)
    timer.stop()
    assert summary.ok
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 100
    assert max(gaps) < 0.5, f"the GUI thread stalled for {max(gaps):.2f} s"


def test_shutdown_mid_run_returns_home(qtbot, tab, site):
    _scan(qtbot, tab)
    w = _worker(tab)
    with qtbot.waitSignal(w.progress, timeout=20_000, check_params_cb=lambda p: p.progress == 60):
        tab.provision_all_button.click()
    assert tab.is_running()
    assert tab.shutdown(30)
    assert _laptop_home(site)


def test_no_home_selected_says_so(qtbot, site):
    tab = ProvisionTab(site, lambda: None)
    qtbot.addWidget(tab)
    _scan(qtbot, tab)
    tab.provision_all_button.click()
    assert "Select a home" in tab.status_label.text()
    assert not tab.is_running()
    assert tab.shutdown(10)


def test_a_batch_for_a_home_whose_broker_cannot_take_devices_does_not_start(qtbot, site):
    """The Provision tab provisions a home with its own broker through that broker; one
    it cannot use (here: no admin login for it) stops the batch before anything is
    touched, says why, and keeps the devices found ready to add."""
    home, password = _home(site)
    home = site.registry.edit_home(home, broker_url="mqtt://192.168.1.10:1883")
    tab = ProvisionTab(site, lambda: (home, password))
    qtbot.addWidget(tab)
    _scan(qtbot, tab)
    found = list(tab.targets)
    with qtbot.waitSignal(_worker(tab).finished, timeout=60_000):
        tab.provision_all_button.click()
    text = tab.status_label.text()
    assert "its broker mqtt://192.168.1.10:1883 cannot take devices now" in text
    assert "nothing was configured" in text and "no admin login" in text
    assert not tab.is_running()
    assert site.registry.devices() == []  # nothing registered, nothing configured
    assert tab.targets == found and tab.provision_all_button.isEnabled()
    assert _laptop_home(site)
    assert tab.shutdown(10)


def test_manual_backend_questions_appear_in_the_tab(qtbot, site):
    from tests.ui.test_wizard import PersonOnSimulatedAir

    site.wifi = PersonOnSimulatedAir(site.demo.air)  # the GUI provides the confirm
    home, password = _home(site)
    tab = ProvisionTab(site, lambda: (home, password))
    qtbot.addWidget(tab)
    tab.show()
    assert site.wifi.confirm == tab.bridge.confirm
    ap = site.demo.air.setup_ap(site.demo.chip_ids[0]).ssid
    tab.ssid_edit.setText("my-phone-hotspot")
    tab.add_button.click()
    assert "not a device setup network" in tab.status_label.text()
    tab.ssid_edit.setText(ap)
    tab.add_button.click()
    assert [t.ssid for t in tab.targets] == [ap]
    panel = tab.instruction
    with qtbot.waitSignal(_worker(tab).finished, timeout=RUN_TIMEOUT_MS) as blocker:
        tab.provision_all_button.click()
        qtbot.waitUntil(panel.isVisible, timeout=20_000)
        assert f"connect to {ap} (password: 12345678)" in panel.text.text()
        assert panel.action.text() == "I'm Connected to Device WiFi"
        panel.action.click()
        qtbot.waitUntil(lambda: panel.isVisible() and "home WiFi" in panel.text.text())
        assert panel.action.text() == "Check Device Connection"
        panel.action.click()
    assert blocker.args[0].ok
    assert _statuses(tab) == [Status.DONE]
    assert _laptop_home(site)
    assert tab.shutdown(10)
