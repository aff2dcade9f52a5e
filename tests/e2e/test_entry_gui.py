"""The desktop station started as `station --demo` starts it, driven as a user drives it.

station.cli.main(["--demo"]) -> gui_cmd.run_gui -> station.ui.app.run, with its
`station-start` thread: the very path on which the demo's devices once died within a
second. Offscreen; only the firmware timings are shortened (STATION_DEMO_TIMING=fast).
A QTimer-driven script inside the event loop plays the user: Provision tab, "Scan for
devices", "Provision all", wait for every device online with a reading, close.
"""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import time

import pytest

# Before pytest-qt's qapp exists (as tests/ui/conftest.py does): offscreen, no X.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from support import micropython_pids, still_running

from station.cli import main
from station.ui.app import DEMO_DEVICES
from station.ui.main_window import MainWindow

pytestmark = pytest.mark.timeout(300)


def _event_loops_still_run(qtbot) -> bool:
    """After run() returned, the shared QApplication still runs event loops for the
    tests that follow (a quit left pending would end each at once)."""
    waited = []
    for _ in range(2):  # the first wait may consume a leftover quit event
        t0 = time.monotonic()
        qtbot.wait(200)
        waited.append(time.monotonic() - t0)
    return min(waited) >= 0.15


def _shown_main_windows() -> list[MainWindow]:
    # Visible only: an earlier test's closed window may still be a top-level widget.
    shown = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    return [w for w in shown if isinstance(w, MainWindow)]


class User:
    """Plays the installer from a QTimer: one step per tick, never blocking the loop."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline = time.monotonic() + deadline_s
        self.step = "find window"
        self.window: MainWindow | None = None
        self.seen: dict[str, object] = {"pids": set()}
        self.error: str | None = None
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(200)

    def tick(self) -> None:
        try:
            self._tick()
        except Exception as exc:  # report it after run() returns, and let the app end
            self.fail(f"{type(exc).__name__}: {exc}")
        if self.error is None and time.monotonic() > self.deadline:
            self.fail(f"timed out at step {self.step!r}")

    def fail(self, message: str) -> None:
        self.error = self.error or message
        self.timer.stop()
        # Closing every window quits the app, as it does for a user.
        if self.window is not None:
            self.window._set_running(False)  # no question box: just close
        QApplication.closeAllWindows()

    def _tick(self) -> None:
        if self.step == "find window":
            windows = _shown_main_windows()
            if windows:
                self.window = w = windows[0]
                w.tabs.setCurrentWidget(w.provision_tab)
                w.provision_tab.scan_button.click()
                self.step = "scan"
            return
        w = self.window
        assert w is not None
        tab, model = w.provision_tab, w.devices_tab.model
        if self.step == "scan":
            if len(tab.targets) == DEMO_DEVICES:
                tab.provision_all_button.click()
                self.step = "provision"
        elif self.step == "provision":
            self.seen["pids"] |= micropython_pids()
            rows = [model.device_row(r) for r in range(model.rowCount())]
            readings = [r for r in rows if r.online and r.temperature is not None]
            done = len(readings) == DEMO_DEVICES and not w._batch_running
            if done and all(r.humidity is not None for r in rows):
                self.seen["rows"] = rows
                self.seen["home_ssid"] = w.runtime.demo.home_ssid
                self.seen["air"] = w.runtime.demo.air.root
                self.step = "close"
        elif self.step == "close":
            self.timer.stop()
            runtime = w.runtime
            w.close()  # the user closes the window; closeEvent brings the laptop home
            self.seen["closed"] = not w.isVisible()
            # Read where the laptop is now, before run() stops the runtime and its
            # temporary folder (the air) goes.
            self.seen["laptop"] = runtime.demo.air.laptop()
            self.step = "done"


def test_gui_demo_through_the_station_entry_point(user_env, monkeypatch, qtbot):
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    for key, value in user_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    # The QApplication (pytest-qt's, through qtbot) exists before run() blocks in its
    # event loop, to carry the user's timer; run() takes an existing one as its own.
    assert QApplication.instance() is not None
    user = User(deadline_s=120)
    code = main(["--demo"])

    assert user.error is None, user.error
    assert code == 0 and user.step == "done"
    assert _event_loops_still_run(qtbot)
    rows = user.seen["rows"]
    assert len(rows) == DEMO_DEVICES
    for row in rows:
        assert row.online and row.error is None, row
        assert 15.0 <= row.temperature <= 30.0 and 0.0 < row.humidity <= 100.0, row
    assert user.seen["closed"] is True
    laptop = user.seen["laptop"]
    assert laptop.ssid == user.seen["home_ssid"] and not laptop.profiles
    # Every MicroPython process of the run is gone, and so is the demo's temporary folder.
    assert len(user.seen["pids"]) >= DEMO_DEVICES
    assert still_running(user.seen["pids"]) == set()
    assert micropython_pids() == set()
    assert not os.path.exists(user.seen["air"])
    assert glob.glob(os.path.join(user_env["TMPDIR"], "station-demo-*")) == []


class Interrupter:
    """Starts the batch as a user would, then sends `signals` to this process while it
    runs (the second one once the question box is up)."""

    def __init__(self, signals: list[int]) -> None:
        self.signals = signals
        self.deadline = time.monotonic() + 120
        self.step = "find window"
        self.window: MainWindow | None = None
        self.questions: list[str] = []
        self.laptop = None
        self.home_ssid = ""
        self.error: str | None = None
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(100)
        QApplication.instance().lastWindowClosed.connect(self.closed)

    def closed(self) -> None:
        if self.window is not None and self.laptop is None:
            self.laptop = self.window.runtime.demo.air.laptop()

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            self.error = f"timed out at step {self.step!r}"
            self.timer.stop()
            if self.window is not None:
                self.window._set_running(False)
            QApplication.closeAllWindows()
            return
        if self.step == "find window":
            windows = _shown_main_windows()
            if windows:
                self.window = w = windows[0]
                self.home_ssid = w.runtime.demo.home_ssid
                w.provision_tab.scan_button.click()
                self.step = "scan"
            return
        w = self.window
        if self.step == "scan" and len(w.provision_tab.targets) == DEMO_DEVICES:
            w.provision_tab.provision_all_button.click()
            self.step = "provision"
        elif self.step == "provision" and w._batch_running:
            os.kill(os.getpid(), self.signals.pop(0))
            self.step = "signalled"
        elif self.step == "signalled":
            modal = QApplication.activeModalWidget()
            if modal is not None and modal.windowTitle() not in self.questions:
                self.questions.append(modal.windowTitle())
                if self.signals:
                    os.kill(os.getpid(), self.signals.pop(0))


@pytest.mark.parametrize(
    ("signals", "questions"),
    [
        ([signal.SIGTERM], []),  # nobody may be there to answer: no question
        ([signal.SIGINT, signal.SIGINT], ["Provisioning is running"]),  # asks; again = Yes
    ],
    ids=["SIGTERM", "SIGINT-twice"],
)
def test_a_signal_during_a_batch_closes_and_brings_the_laptop_home(
    user_env, monkeypatch, qtbot, signals, questions
):
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    for key, value in user_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert QApplication.instance() is not None  # pytest-qt's, through qtbot
    user = Interrupter(list(signals))
    try:
        code = main(["--demo"])
    finally:
        user.timer.stop()
        QApplication.instance().lastWindowClosed.disconnect(user.closed)
    assert user.error is None, user.error
    assert code == 128 + signals[0]
    assert _event_loops_still_run(qtbot)
    assert user.questions == questions
    assert user.laptop is not None
    assert user.laptop.ssid == user.home_ssid and not user.laptop.profiles
    assert micropython_pids() == set()
    assert glob.glob(os.path.join(user_env["TMPDIR"], "station-demo-*")) == []
