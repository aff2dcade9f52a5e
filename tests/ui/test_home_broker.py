"""A home whose devices report to its own broker, as an installer meets it in the window.

The station is started as `station --demo` starts it (station.cli.main -> the GUI's
start-up thread -> MainWindow), with a real Mosquitto 2.0.11 and its dynamic-security
plugin standing in for the customer's broker, and simulated devices running the real
firmware. A QTimer-driven script plays the user inside the event loop: the home dialog
(a bad URL first), the broker check, "Scan" and "Provision all", the live table, a
command, and editing the home back to the embedded broker.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from mosquitto import Mosquitto
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from station import external_broker, followers
from station.cli import main
from station.ui.homes import HomeDialog
from station.ui.main_window import MainWindow

pytestmark = pytest.mark.timeout(300)

ADMIN = ("admin", "admin-secret")
DEVICES = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mosq(tmp_path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN) as m:
        yield m


@pytest.fixture
def gui_env(user_env, monkeypatch, memory_keyring):
    """`station --demo` with DEVICES simulated sensors, offscreen, a throwaway user and
    an OS keyring (in memory); follower retries every half second."""
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    for key, value in user_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr("station.ui.app.DEMO_DEVICES", DEVICES)
    monkeypatch.setattr(followers, "RETRY_S", 0.5)
    return memory_keyring


@pytest.fixture
def starts(monkeypatch) -> list[str]:
    """The thread of every ExternalBroker start (a broker check or a follower's start),
    each made a second slower, as a distant broker would be."""
    seen: list[str] = []
    real = external_broker.ExternalBroker.start

    def slow_start(self):
        seen.append(threading.current_thread().name)
        time.sleep(1.0)
        return real(self)

    monkeypatch.setattr(external_broker.ExternalBroker, "start", slow_start)
    return seen


def _shown_main_window() -> MainWindow | None:
    shown = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    return next((w for w in shown if isinstance(w, MainWindow)), None)


def _dialog() -> HomeDialog | None:
    modal = QApplication.activeModalWidget()
    return modal if isinstance(modal, HomeDialog) and modal.isVisible() else None


class Script:
    """Plays the installer: each step is polled from a QTimer until it returns True.
    Never blocks the event loop; the longest gap between two ticks is kept."""

    def __init__(self, steps: list[Callable[[], bool]], deadline_s: float = 200.0) -> None:
        self.steps = list(steps)
        self.deadline = time.monotonic() + deadline_s
        self.error: str | None = None
        self.window: MainWindow | None = None
        self.seen: dict[str, object] = {}
        self.last_tick = 0.0
        self.gaps: list[tuple[str, float]] = []
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(50)

    @property
    def step(self) -> str:
        return self.steps[0].__name__ if self.steps else "done"

    def tick(self) -> None:
        now = time.monotonic()
        if self.last_tick:
            self.gaps.append((self.step, now - self.last_tick))
        self.last_tick = now
        try:
            if self.steps and self.steps[0]():  # one step a tick: the GUI reacts between
                self.steps.pop(0)
        except Exception as exc:  # reported after main() returns; the app ends
            self.fail(f"step {self.step}: {type(exc).__name__}: {exc}")
            return
        if not self.steps:
            self.timer.stop()
        elif now > self.deadline:
            self.fail(f"timed out at step {self.step!r}")

    def fail(self, message: str) -> None:
        self.error = self.error or message
        self.timer.stop()
        if self.window is not None:
            self.window._set_running(False)
        QApplication.closeAllWindows()

    def max_gap(self, step: str) -> float:
        return max((gap for name, gap in self.gaps if name == step), default=0.0)


def test_a_home_on_its_own_mosquitto_from_the_home_dialog_to_live_devices(
    gui_env, mosq, starts, qtbot, caplog
):
    caplog.set_level("DEBUG")
    good_url = f"mqtt://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}"
    bad_url = f"mqtt://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:port{mosq.port}"
    stored_url = f"mqtt://127.0.0.1:{mosq.port}"
    s: Script
    checks: list = []

    def find_window() -> bool:
        w = _shown_main_window()
        if w is None:
            return False
        s.window = w
        w.homes.checked.connect(checks.append)
        QTimer.singleShot(0, w.homes.add_button.click)  # exec() runs in its own slot
        return True

    def bad_url_is_refused_in_the_dialog() -> bool:
        d = _dialog()
        if d is None:
            return False
        demo = s.window.runtime.demo
        d.name.setText("Customer")
        d.ssid.setText(demo.home_ssid)
        d.password.setText(demo.home_password)
        d.external.setChecked(True)
        d.broker_url.setText(bad_url)
        d.save_button.click()
        assert d.isVisible(), "a bad URL closed the dialog"
        assert d.error.isVisible()
        error = d.error.text()
        s.seen["error"] = error
        # Everything typed is still there.
        typed = (d.name.text(), d.ssid.text(), d.password.text(), d.broker_url.text())
        assert typed == ("Customer", demo.home_ssid, demo.home_password, bad_url)
        assert d.external.isChecked()
        assert not any(h.name == "Customer" for h in s.window.runtime.registry.homes())
        d.broker_url.setText(good_url)
        d.save_button.click()
        assert not d.isVisible(), d.error.text()
        return True

    def broker_check_answers() -> bool:
        if not checks:
            s.seen.setdefault("checking", s.window.homes.broker_state.text())
            return False
        w = s.window
        result = checks[0]
        s.seen["check"] = result
        home = w.runtime.registry.home("Customer")
        s.seen["home_url"] = home.broker_url
        assert w.homes.current().name == "Customer"
        w.tabs.setCurrentWidget(w.provision_tab)
        w.provision_tab.scan_button.click()
        return True

    def scan_finds_the_devices() -> bool:
        tab = s.window.provision_tab
        if len(tab.targets) != DEVICES:
            return False
        tab.provision_all_button.click()
        s.seen["provisioning"] = tab.status_label.text()
        return True

    def devices_online_with_readings() -> bool:
        w = s.window
        model = w.devices_tab.model
        rows = [model.device_row(r) for r in range(model.rowCount())]
        live = [r for r in rows if r.online and r.temperature is not None and r.humidity]
        if len(live) != DEVICES or w._batch_running:
            return False
        s.seen["rows"] = rows
        s.seen["embedded_clients"] = w.runtime.broker.clients_connected
        s.seen["status"] = (w.home_brokers_label.text(), w.homes.broker_state.text())
        s.seen["devices_label"] = w.devices_label.text()
        s.seen["tab_status"] = w.provision_tab.status_label.text()
        node = rows[0].node_name
        chip = w.runtime.registry.device(node).chip_id
        s.seen["node"], s.seen["chip"] = node, chip
        s.seen["led_before"] = w.runtime.demo.air.led(chip).get("changes", 0)
        w.tabs.setCurrentWidget(w.devices_tab)
        assert w.devices_tab.select(node)
        return True

    def identify_from_the_detail_panel() -> bool:
        detail = s.window.devices_tab.detail
        if detail.device is None or not detail.identify_btn.isEnabled():
            return False
        finished: list = []
        detail.commandFinished.connect(lambda *a: finished.append(a))
        s.seen["finished"] = finished
        detail.identify_btn.click()
        return True

    def the_device_blinks() -> bool:
        w = s.window
        led = w.runtime.demo.air.led(s.seen["chip"]).get("changes", 0)
        if led <= s.seen["led_before"] or not s.seen["finished"]:
            return False
        s.seen["command_status"] = w.devices_tab.detail.status.text()
        QTimer.singleShot(0, w.homes.edit.click)
        return True

    def edit_back_to_the_embedded_broker() -> bool:
        d = _dialog()
        if d is None:
            return False
        assert d.external.isChecked() and d.broker_url.text() == stored_url
        assert ADMIN[1] not in d.broker_url.text() + d.login_note.text()
        s.seen["login_note"] = d.login_note.text()
        d.embedded.setChecked(True)
        d.save_button.click()
        assert not d.isVisible(), d.error.text()
        return True

    def the_cli_warning_about_its_devices() -> bool:
        w = s.window
        notice = w.homes.notice
        if len(checks) < 2 or notice is None:
            return False
        s.seen["notice"] = notice.text()
        s.seen["after_edit"] = w.runtime.registry.home("Customer").broker_url
        notice.close()
        return True

    def followers_gone() -> bool:
        w = s.window
        w._refresh_status()
        if w.followers.states():
            return False
        s.seen["label_hidden"] = not w.home_brokers_label.isVisible()
        runtime = w.runtime
        w.close()
        s.seen["closed"] = not w.isVisible()
        s.seen["runtime"] = runtime
        return True

    s = Script(
        [
            find_window,
            bad_url_is_refused_in_the_dialog,
            broker_check_answers,
            scan_finds_the_devices,
            devices_online_with_readings,
            identify_from_the_detail_panel,
            the_device_blinks,
            edit_back_to_the_embedded_broker,
            the_cli_warning_about_its_devices,
            followers_gone,
        ]
    )
    try:
        code = main(["--demo"])
    finally:
        s.timer.stop()
    assert s.error is None, s.error
    assert code == 0 and s.step == "done"

    # The dialog said what was wrong with the URL, without the password.
    assert "broker 'mqtt://admin:***@127.0.0.1:port" in s.seen["error"], s.seen["error"]
    assert "Port could not be cast" in s.seen["error"]
    # Saved: the URL without its login; the login in the keyring only.
    assert s.seen["home_url"] == stored_url
    assert any(ADMIN[1] in v for v in gui_env.items.values())
    # The check ran off the GUI thread, and the window kept running meanwhile (each
    # broker start was made a second slower).
    assert s.seen["checking"] in (
        f"Broker {stored_url}: checking…",
        f"Broker {stored_url}: connecting…",
    )
    check = s.seen["check"]
    assert check.ok, check.text
    assert check.text == f"Broker {stored_url}: reachable, admin login and dynamic security work."
    assert check.thread == "broker-check"
    assert starts and "MainThread" not in starts
    assert all(name.startswith("follow-") for name in starts), starts
    assert s.max_gap("broker_check_answers") < 0.5, s.gaps
    # Provisioned through Mosquitto, followed there: online, with readings.
    assert f"devices report to {stored_url}" in s.seen["provisioning"]
    assert s.seen["tab_status"] == f"All done: {DEVICES} devices online."
    rows = s.seen["rows"]
    for row in rows:
        assert row.online and row.error is None, row
        assert 15.0 <= row.temperature <= 30.0 and 0.0 < row.humidity <= 100.0, row
    assert s.seen["embedded_clients"] == 0  # none of them is on the embedded broker
    log = mosq.log_path.read_text()
    for row in rows:  # Mosquitto's clients, with their own logins
        assert f"as {row.node_name} " in log and f"u'{row.node_name}'" in log
    assert s.seen["status"] == (
        "Home broker: followed",
        f"Broker {stored_url}: following its devices",
    )
    assert s.seen["devices_label"] == f"Devices: {DEVICES} online / {DEVICES}"
    # The command went through that broker to the device, which blinked.
    assert s.seen["finished"] == [(s.seen["node"], "identify", True)]
    assert s.seen["command_status"].startswith("Sent "), s.seen["command_status"]
    assert s.seen["command_status"].endswith(f" to {s.seen['node']}.")
    # Edited back to the embedded broker: the CLI's words about its devices; the
    # follower stopped.
    assert "keyring" in s.seen["login_note"]
    assert s.seen["after_edit"] is None
    assert (
        f"Its {DEVICES} provisioned device(s) report where they were configured until they "
        "are moved (station fleet rehome, no visit) or provisioned again." in s.seen["notice"]
    )
    assert s.seen["label_hidden"] and s.seen["closed"]
    # Closed cleanly: no follower thread left, and never a secret in a log line.
    assert not [t.name for t in threading.enumerate() if t.name.startswith("follow")]
    assert ADMIN[1] not in caplog.text


def test_an_unreachable_home_broker_is_a_warning_shown_and_retried(gui_env, tmp_path, qtbot):
    port = _free_port()  # nothing listens there yet
    url = f"mqtt://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{port}"
    stored_url = f"mqtt://127.0.0.1:{port}"
    s: Script
    checks: list = []
    later: list[Mosquitto] = []

    def find_window() -> bool:
        w = _shown_main_window()
        if w is None:
            return False
        s.window = w
        w.homes.checked.connect(checks.append)
        QTimer.singleShot(0, w.homes.add_button.click)
        return True

    def add_the_home() -> bool:
        d = _dialog()
        if d is None:
            return False
        demo = s.window.runtime.demo
        d.name.setText("Later")
        d.ssid.setText(demo.home_ssid)
        d.password.setText(demo.home_password)
        d.external.setChecked(True)
        d.broker_url.setText(url)
        d.save_button.click()
        assert not d.isVisible(), d.error.text()  # saved: a warning, not a refusal
        return True

    def the_warning() -> bool:
        w = s.window
        if not checks or w.homes.notice is None:
            return False
        s.seen["check"] = checks[0]
        s.seen["notice"] = (w.homes.notice.text(), w.homes.notice.icon())
        w.homes.notice.close()
        return True

    def shown_as_not_reachable() -> bool:
        w = s.window
        w._refresh_status()
        text = w.homes.broker_state.text()
        if "retrying" not in text:
            return False
        s.seen["state"] = text
        s.seen["state_tip"] = w.homes.broker_state.toolTip()
        s.seen["bar"] = w.home_brokers_label.text()
        w.tabs.setCurrentWidget(w.provision_tab)
        w.provision_tab.scan_button.click()
        return True

    def scan() -> bool:
        tab = s.window.provision_tab
        if len(tab.targets) != DEVICES:
            return False
        tab.provision_all_button.click()
        return True

    def the_batch_does_not_start() -> bool:
        w = s.window
        tab = w.provision_tab
        if tab._busy() or "cannot take devices" not in tab.status_label.text():
            return False
        s.seen["refused"] = tab.status_label.text()
        s.seen["registered"] = w.runtime.registry.devices()
        s.seen["targets"] = len(tab.targets)
        later.append(Mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, port=port).start())
        return True

    def followed_once_it_is_up() -> bool:
        w = s.window
        w._refresh_status()
        if w.home_brokers_label.text() != "Home broker: followed":
            return False
        s.seen["state_after"] = w.homes.broker_state.text()
        w.close()
        return True

    s = Script(
        [
            find_window,
            add_the_home,
            the_warning,
            shown_as_not_reachable,
            scan,
            the_batch_does_not_start,
            followed_once_it_is_up,
        ]
    )
    try:
        code = main(["--demo"])
    finally:
        s.timer.stop()
        for m in later:
            m.stop()
    assert s.error is None, s.error
    assert code == 0
    check = s.seen["check"]
    assert not check.ok and check.thread == "broker-check"
    assert check.text.startswith("Warning: home 'Later': its broker cannot take devices")
    assert f"cannot reach the MQTT broker at 127.0.0.1:{port}" in check.text
    assert check.text.endswith("Batches for this home will not start until it can.")
    text, icon = s.seen["notice"]
    assert text == check.text and icon == icon.Warning
    assert s.seen["state"].startswith(f"Broker {stored_url}: not reachable, retrying in ")
    assert "Connection refused" in s.seen["state_tip"]
    assert s.seen["bar"] == "Home brokers: 1 of 1 not reachable"
    assert "home 'Later': its broker" in s.seen["refused"]
    assert "nothing was configured" in s.seen["refused"]
    assert s.seen["registered"] == [] and s.seen["targets"] == DEVICES
    assert s.seen["state_after"] == f"Broker {stored_url}: following its devices"
    assert ADMIN[1] not in check.text + s.seen["refused"] + s.seen["state"]


def test_the_single_device_wizard_provisions_through_the_homes_broker(qtbot, demo_runtime, mosq):
    from PySide6.QtWidgets import QWizard

    from station.broker_target import parse
    from station.ui.wizard import COMPLETE, CONFIGURE, ProvisionWizard

    rt = demo_runtime
    target = parse(f"mqtt://127.0.0.1:{mosq.port}")
    rt.secrets.set_broker_login(target.key, *ADMIN)
    home = rt.registry.edit_home(rt.registry.homes()[0], broker_url=target.url)
    wizard = ProvisionWizard(rt, home, rt.secrets.home_password(home.id))
    qtbot.addWidget(wizard)
    wizard.show()
    prepare = wizard.prepare_page
    qtbot.waitUntil(lambda: prepare.target.count() == 3, timeout=20_000)
    wizard.button(QWizard.WizardButton.NextButton).click()
    qtbot.waitUntil(lambda: wizard.currentId() == CONFIGURE, timeout=60_000)
    wizard.button(QWizard.WizardButton.NextButton).click()
    qtbot.waitUntil(lambda: wizard.currentId() == COMPLETE, timeout=60_000)
    [device] = rt.registry.devices()
    assert device.is_provisioned and device.home.id == home.id
    assert f"as {device.node_name} " in mosq.log_path.read_text()  # Mosquitto's client
    assert rt.broker.clients_connected == 0
    wizard.close()


def test_queued_devices_of_a_home_with_another_broker_stop_the_batch(qtbot, demo_runtime, mosq):
    """The queue configures every open job with the selected home's WiFi and broker: a
    device queued for the embedded-broker home must not be sent to another broker."""
    from station.broker_target import parse
    from station.ui.provision_tab import ProvisionTab

    rt = demo_runtime
    demo_home = rt.registry.homes()[0]
    target = parse(f"mqtt://127.0.0.1:{mosq.port}")
    rt.secrets.set_broker_login(target.key, *ADMIN)
    own = rt.registry.add_home("Own broker", demo_home.wifi_ssid, broker_url=target.url)
    password = rt.secrets.home_password(demo_home.id)
    tab = ProvisionTab(rt, lambda: (own, password))
    qtbot.addWidget(tab)
    with qtbot.waitSignal(tab._worker().scanned, timeout=20_000):
        tab.scan_button.click()
    tab.worker.queue.add(tab.targets[:1], demo_home)  # queued for the other home
    with qtbot.waitSignal(tab.worker.finished, timeout=60_000):
        tab.start_button.click()
    text = tab.status_label.text()
    assert "the queue holds devices of Demo home" in text, text
    assert "select that home and provision them, or skip them, first" in text
    [device] = rt.registry.devices()
    assert device.home.id == demo_home.id and not device.is_provisioned
    assert tab.shutdown(10)


def test_an_mqtts_home_from_the_dialog_to_devices_online_over_tls(gui_env, tmp_path, qtbot):
    """The same with the broker's TLS listener and its CA file chosen in the dialog: the
    station checks the broker with the CA, and every device is given it (`tls`, `ca`)."""
    from tls_ca import TestCA

    ca = TestCA(tmp_path / "ca")
    ca_file = tmp_path / "home-ca.pem"
    ca_file.write_text(ca.pem)
    mosq = Mosquitto(tmp_path / "tls", dynsec_admin=ADMIN, tls=ca.issue("broker")).start()
    stored_url = f"mqtts://127.0.0.1:{mosq.port}"
    s: Script
    checks: list = []

    def find_window() -> bool:
        w = _shown_main_window()
        if w is None:
            return False
        s.window = w
        w.homes.checked.connect(checks.append)
        QTimer.singleShot(0, w.homes.add_button.click)
        return True

    def add_the_tls_home() -> bool:
        d = _dialog()
        if d is None:
            return False
        demo = s.window.runtime.demo
        d.name.setText("Secure")
        d.ssid.setText(demo.home_ssid)
        d.password.setText(demo.home_password)
        d.external.setChecked(True)
        d.broker_url.setText(f"mqtts://{ADMIN[0]}:{ADMIN[1]}@127.0.0.1:{mosq.port}")
        d.ca_path.setText(str(ca_file))
        d.save_button.click()
        assert not d.isVisible(), d.error.text()
        return True

    def checked_then_scan() -> bool:
        if not checks:
            return False
        s.seen["check"] = checks[0]
        w = s.window
        w.tabs.setCurrentWidget(w.provision_tab)
        w.provision_tab.scan_button.click()
        return True

    def provision_all() -> bool:
        tab = s.window.provision_tab
        if len(tab.targets) != DEVICES:
            return False
        tab.provision_all_button.click()
        return True

    def online_with_readings() -> bool:
        w = s.window
        model = w.devices_tab.model
        rows = [model.device_row(r) for r in range(model.rowCount())]
        live = [r for r in rows if r.online and r.temperature is not None]
        if w._batch_running or len(live) != DEVICES:
            return False
        s.seen["rows"] = rows
        s.seen["configs"] = [d.config() for d in w.runtime.demo.fleet.devices]
        home = w.runtime.registry.home("Secure")
        s.seen["home"] = (home.broker_url, home.broker_ca)
        w.close()
        return True

    s = Script(
        [find_window, add_the_tls_home, checked_then_scan, provision_all, online_with_readings]
    )
    try:
        code = main(["--demo"])
    finally:
        s.timer.stop()
        mosq.stop()
    assert s.error is None, s.error
    assert code == 0
    assert s.seen["check"].ok, s.seen["check"].text
    assert s.seen["home"] == (stored_url, ca.pem)
    log = mosq.log_path.read_text()
    for row in s.seen["rows"]:
        assert row.online and f"as {row.node_name} " in log
    mqtt_settings = [(c or {}).get("mqtt", {}) for c in s.seen["configs"]]
    assert all(m.get("tls") for m in mqtt_settings), mqtt_settings
