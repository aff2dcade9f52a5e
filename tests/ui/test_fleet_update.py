"""Devices tab → "Update firmware…", as an installer uses it on `station --demo`.

The station is started through its own entry point (station.cli.main -> the GUI's
start-up thread -> MainWindow) with simulated devices running the real firmware on the
unix port; a QTimer-driven script plays the user inside the event loop: provision the
batch, select two rows (a click and a ctrl-click), the dialog, Start, and then reads
the table as it is shown. The update itself is station.fleet.session.FirmwareUpdate:
a real bundle built, served through the simulated home LAN, each device confirmed by
the version it reports.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMenu, QMessageBox

from station.cli import main
from station.fleet.rollout import DeviceProgress, Phase, RolloutResult
from station.ui.bridge import StationBridge
from station.ui.devices_model import FIRMWARE, UPDATE
from station.ui.devices_tab import DevicesTab
from station.ui.fleet_update import ABANDONED, summary
from station.ui.main_window import MainWindow

pytestmark = pytest.mark.timeout(240)

DEVICES = 3


@pytest.fixture
def gui_env(user_env, monkeypatch, memory_keyring):
    """`station --demo` with DEVICES simulated sensors, offscreen, a throwaway user."""
    for key in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    for key, value in user_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    monkeypatch.setattr("station.ui.app.DEMO_DEVICES", DEVICES)


class Script:
    """Plays the installer: each step is polled from a QTimer until it returns True.
    Never blocks the event loop; the longest gap between two ticks is kept. Past the
    deadline (steps done or not: the last one closes the window) it fails."""

    def __init__(self, deadline_s: float = 150.0) -> None:
        self.steps: list[Callable[[], bool]] = []
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
            if self.steps and self.steps[0]():
                self.steps.pop(0)
        except Exception as exc:  # reported after main() returns; the app ends
            self.fail(f"step {self.step}: {type(exc).__name__}: {exc}")
            return
        if now > self.deadline:  # steps done too: the window must then close
            self.fail(f"timed out at step {self.step!r}")

    def fail(self, message: str) -> None:
        self.error = self.error or message
        self.timer.stop()
        if self.window is not None:
            self.window._set_running(False)
        QApplication.closeAllWindows()

    def max_gap(self, step: str) -> float:
        return max((gap for name, gap in self.gaps if name == step), default=0.0)


def _cell(tab: DevicesTab, node: str, col: int, role=Qt.ItemDataRole.DisplayRole):
    model = tab.model
    row = model.row_of(node)
    assert row is not None, node
    return model.data(model.index(row, col), role)


def _click_row(tab: DevicesTab, row: int, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    rect = tab.view.visualRect(tab.proxy.index(row, 0))
    QTest.mouseClick(tab.view.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())


def _provision_steps(s: Script) -> list[Callable[[], bool]]:
    """The demo batch provisioned from the Provision tab, then the Devices tab."""

    def find_window() -> bool:
        w = next(
            (
                w
                for w in QApplication.topLevelWidgets()
                if isinstance(w, MainWindow) and w.isVisible()
            ),
            None,
        )
        if w is None:
            return False
        s.window = w
        w.resize(1440, 780)
        w.tabs.setCurrentWidget(w.provision_tab)
        w.provision_tab.scan_button.click()
        return True

    def provision_all() -> bool:
        assert s.window is not None
        tab = s.window.provision_tab
        if len(tab.targets) != DEVICES:
            return False
        tab.provision_all_button.click()
        return True

    def all_online() -> bool:
        w = s.window
        assert w is not None
        model = w.devices_tab.model
        rows = [model.device_row(r) for r in range(model.rowCount())]
        if w._batch_running or len(rows) != DEVICES or not all(r.online for r in rows):
            return False
        w.tabs.setCurrentWidget(w.devices_tab)
        return True

    return [find_window, provision_all, all_online]


def _select_two_and_open_the_dialog(s: Script) -> bool:
    """Nothing selected: the action is off. A click and a ctrl-click select two rows;
    the button opens the dialog."""
    assert s.window is not None
    tab = s.window.devices_tab
    tab.view.clearSelection()
    s.seen["enabled_with_none"] = tab.update_button.isEnabled()
    s.seen["column_hidden_before"] = tab.view.isColumnHidden(UPDATE)
    _click_row(tab, 0)
    _click_row(tab, 1, Qt.KeyboardModifier.ControlModifier)
    s.seen["selected"] = tab.selected_nodes()
    s.seen["others"] = [
        tab.model.node_at(r)
        for r in range(tab.model.rowCount())
        if tab.model.node_at(r) not in tab.selected_nodes()
    ]
    s.seen["enabled_with_two"] = tab.update_button.isEnabled()
    tab.update_button.click()
    return True


def _record_progress(s: Script, tab: DevicesTab) -> list[tuple[str, Phase]]:
    seen: list[tuple[str, Phase]] = []
    tab.updater.progress.connect(lambda dev: seen.append((dev.node, dev.phase)))
    s.seen["progress"] = seen
    return seen


def test_two_selected_devices_are_updated_and_confirmed_in_the_table(gui_env, qtbot):
    s: Script

    def the_dialog() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        d = tab.update_dialog
        if d is None or not d.isVisible():
            return False
        s.seen["dialog"] = (
            d.devices.count(),
            d.version.text(),
            d.canary.value(),
            d.concurrency.value(),
            d.bad_bundle.isVisible(),  # demo mode offers the crashing firmware
        )
        s.seen["enabled_with_dialog"] = tab.update_button.isEnabled()
        _record_progress(s, tab)
        d.start_button.click()
        s.seen["bar_shown"] = tab.update_bar.isVisible()
        return True

    def watch_the_run() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab

        def first_progress(_dev) -> None:  # after the tab's own slot: as shown now
            if "running_label" not in s.seen:
                s.seen["enabled_while_running"] = tab.update_button.isEnabled()
                s.seen["controls"] = (
                    tab.pause_button.isVisible(),
                    tab.cancel_update_button.isVisible(),
                )
                s.seen["running_label"] = tab.update_label.text()

        tab.updater.progress.connect(first_progress)
        return True

    def both_confirmed() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        selected = s.seen["selected"]
        if tab.updater.busy or any(
            _cell(tab, n, FIRMWARE) != "1.0.1" for n in selected
        ):  # the firmware column follows the devices' own info
            return False
        s.seen["update"] = {n: _cell(tab, n, UPDATE) for n in selected + s.seen["others"]}
        s.seen["firmware"] = {n: _cell(tab, n, FIRMWARE) for n in selected + s.seen["others"]}
        s.seen["canary_tip"] = _cell(tab, selected[0], UPDATE, Qt.ItemDataRole.ToolTipRole)
        s.seen["status"] = s.window.statusBar().currentMessage()
        s.seen["bar"] = (tab.update_label.text(), tab.pause_button.isVisible())
        s.seen["enabled_after"] = tab.update_button.isEnabled()
        s.seen["column_hidden_after"] = tab.view.isColumnHidden(UPDATE)
        s.seen["history"] = {
            n: [
                e.data["phase"]
                for e in s.window.runtime.registry.events(s.window.runtime.registry.device(n))
                if e.kind == "firmware_update"
            ]
            for n in selected
        }
        s.seen["first_progress"] = list(s.seen["progress"])
        # Then all three, paused at once and cancelled: nothing is sent to any.
        tab.view.selectAll()
        tab.update_button.click()
        return True

    def start_paused_then_cancel() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        d = tab.update_dialog
        if d is None or not d.isVisible():
            return False
        s.seen["third_version"] = d.version.text()
        _record_progress(s, tab)
        d.start_button.click()
        tab.pause_button.click()
        tab.cancel_update_button.click()
        s.seen["cancelling"] = (
            tab.update_label.text(),
            tab.pause_button.isEnabled(),
            tab.cancel_update_button.isEnabled(),
        )
        return True

    def cancelled() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        if tab.updater.busy:
            return False
        s.seen["cancelled_status"] = s.window.statusBar().currentMessage()
        s.seen["cancelled_cells"] = [
            _cell(tab, tab.model.node_at(r), UPDATE) for r in range(tab.model.rowCount())
        ]
        s.window.close()
        return True

    s = Script()
    s.steps = [
        *_provision_steps(s),
        lambda: _select_two_and_open_the_dialog(s),
        watch_the_run,
        the_dialog,
        both_confirmed,
        start_paused_then_cancel,
        cancelled,
    ]
    try:
        code = main(["--demo"])
    finally:
        s.timer.stop()
    assert s.error is None, s.error
    assert code == 0 and s.step == "done"

    selected = s.seen["selected"]
    assert len(selected) == 2 and len(s.seen["others"]) == 1
    assert s.seen["enabled_with_none"] is False and s.seen["enabled_with_two"] is True
    assert s.seen["dialog"] == (2, "1.0.1", 1, 4, True)
    assert s.seen["enabled_with_dialog"] is False
    assert s.seen["bar_shown"] is True
    # Running: one update at a time, and the controls are there.
    assert s.seen["enabled_while_running"] is False
    assert s.seen["controls"] == (True, True)
    assert s.seen["running_label"].startswith("Firmware update: updating to 1.0.1")
    # Both confirmed, shown as such, and the firmware column says what they report.
    other = s.seen["others"][0]
    assert s.seen["update"] == {selected[0]: "confirmed", selected[1]: "confirmed", other: ""}
    assert s.seen["firmware"] == {selected[0]: "1.0.1", selected[1]: "1.0.1", other: "1.0.0"}
    assert "The canary" in s.seen["canary_tip"]
    assert s.seen["status"] == "2 confirmed on 1.0.1"
    assert s.seen["bar"] == ("2 confirmed on 1.0.1", False)
    assert s.seen["enabled_after"] is True
    # The Update column appears with the first update (empty until then).
    assert (s.seen["column_hidden_before"], s.seen["column_hidden_after"]) == (True, False)
    # The canary confirmed before the other was sent anything.
    progress = s.seen["first_progress"]
    assert progress.index((selected[1], Phase.SENT)) > progress.index(
        (selected[0], Phase.CONFIRMED)
    )
    assert s.seen["history"] == {selected[0]: ["confirmed"], selected[1]: ["confirmed"]}
    # Paused and cancelled before anything was sent: every device "cancelled", none sent.
    assert s.seen["third_version"] == "1.0.2"  # after the newest of 1.0.1 and 1.0.0
    label, pause_on, cancel_on = s.seen["cancelling"]
    assert label.startswith("Firmware update: cancelling") and not pause_on and not cancel_on
    assert s.seen["progress"] and {p for _, p in s.seen["progress"]} == {Phase.CANCELLED}
    assert s.seen["cancelled_cells"] == ["cancelled"] * DEVICES
    assert s.seen["cancelled_status"] == "Firmware 1.0.2: 3 not started — cancelled"
    # The GUI thread ran all along (the build and the rollout are on their thread).
    assert s.max_gap("both_confirmed") < 1.5, s.gaps


def test_a_firmware_crashing_at_boot_rolls_the_canary_back_and_the_other_is_not_sent(
    gui_env, qtbot
):
    s: Script

    def start_the_crashing_firmware() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        d = tab.update_dialog
        if d is None or not d.isVisible():
            return False
        _record_progress(s, tab)
        d.bad_bundle.setChecked(True)
        d.start_button.click()
        return True

    def rolled_back() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        if tab.updater.busy:
            return False
        selected = s.seen["selected"]
        nodes = selected + s.seen["others"]
        s.seen["update"] = {n: _cell(tab, n, UPDATE) for n in nodes}
        s.seen["tips"] = [_cell(tab, n, UPDATE, Qt.ItemDataRole.ToolTipRole) for n in selected]
        s.seen["firmware"] = {n: _cell(tab, n, FIRMWARE) for n in nodes}
        s.seen["status"] = s.window.statusBar().currentMessage()
        s.seen["first_progress"] = list(s.seen["progress"])
        # Then: another update, paused at once, resumed, and the window closed while the
        # canary is on its way.
        tab.view.selectAll()
        s.seen["second_selected"] = tab.selected_nodes()
        tab.update_button.click()
        return True

    def start_paused() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        d = tab.update_dialog
        if d is None or not d.isVisible():
            return False
        s.seen["second_version"] = d.version.text()
        _record_progress(s, tab)
        d.start_button.click()
        tab.pause_button.click()
        s.seen["paused_at"] = time.monotonic()
        return True

    def nothing_sent_while_paused() -> bool:
        assert s.window is not None
        tab = s.window.devices_tab
        if time.monotonic() - s.seen["paused_at"] < 4.0:
            return False
        s.seen["paused_label"] = tab.update_label.text()
        s.seen["paused_cells"] = [
            _cell(tab, tab.model.node_at(r), UPDATE) for r in range(tab.model.rowCount())
        ]
        s.seen["paused_progress"] = list(s.seen["progress"])
        assert s.seen["paused_progress"] == [], "a device was started while paused"
        s.seen["pause_text"] = tab.pause_button.text()
        window = s.window

        def close_once_sent(dev) -> None:
            if dev.phase is Phase.SENT and "closed_at" not in s.seen:
                s.seen["closed_at"] = dev.node
                QTimer.singleShot(0, window.close)

        tab.updater.progress.connect(close_once_sent)
        s.seen["updater"] = tab.updater
        tab.pause_button.click()  # Resume
        return True

    s = Script()
    s.steps = [
        *_provision_steps(s),
        lambda: _select_two_and_open_the_dialog(s),
        start_the_crashing_firmware,
        rolled_back,
        start_paused,
        nothing_sent_while_paused,
    ]
    try:
        code = main(["--demo"])
    finally:
        s.timer.stop()
    assert s.error is None, s.error
    assert code == 0 and s.step == "done"

    selected = s.seen["selected"]
    canary, second = selected
    other = s.seen["others"][0]
    assert s.seen["update"] == {canary: "rolled back", second: "cancelled", other: ""}
    canary_tip, second_tip = s.seen["tips"]
    assert "crashed at boot" in canary_tip and "The canary" in canary_tip
    assert f"the canary {canary} rolled back" in second_tip
    # The other one was never sent anything; both run what they ran.
    first_run = [p for n, p in s.seen["first_progress"] if n == second]
    assert first_run == [Phase.CANCELLED]
    assert s.seen["firmware"] == {canary: "1.0.0", second: "1.0.0", other: "1.0.0"}
    status = s.seen["status"]
    assert status.startswith(f"Firmware 1.0.1: the canary {canary} rolled back: crashed at boot")
    assert status.endswith("; rollout stopped, 1 not started"), status
    # Paused before anything was sent: nobody got a command, the bar says so.
    assert s.seen["second_version"] == "1.0.1"
    assert s.seen["paused_progress"] == []
    assert s.seen["paused_cells"] == ["waiting"] * DEVICES
    assert s.seen["paused_label"].endswith("paused: no more devices are started")
    assert s.seen["pause_text"] == "Resume"
    # Closed while the canary was updating: no other device was started, the update's
    # thread ended with the window, and the canary's outcome was written down.
    assert s.window is not None and not s.window.isVisible()
    updater = s.seen["updater"]
    assert not updater.busy
    assert not [t for t in threading.enumerate() if t.name == "firmware-update"]
    result = updater.result
    assert result is not None and result.stopped == "cancelled"
    first, *rest = result.devices
    assert first.node == s.seen["closed_at"] == s.seen["second_selected"][0] and first.canary
    # Its outcome as far as the station followed it: abandoned, or it made it in time.
    assert (first.phase, first.reason) in ((Phase.ABANDONED, ABANDONED), (Phase.CONFIRMED, ""))
    assert [(d.phase, d.started) for d in rest] == [(Phase.CANCELLED, None)] * 2


def test_a_refusal_is_a_message_not_a_traceback(qtbot, empty_runtime, monkeypatch):
    """The only device selected is offline: FirmwareUpdate refuses with one line."""
    rt = empty_runtime
    issued = rt.registry.register_device(name="Cellar")
    told: list[tuple[str, str]] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, title, text: told.append((title, text)))
    bridge = StationBridge()
    tab = DevicesTab(rt, bridge)
    qtbot.addWidget(tab)
    tab.show()
    assert not tab.update_action.isEnabled()
    tab.view.selectRow(0)
    assert tab.selected_nodes() == [issued.device.node_name]
    assert tab.update_action.isEnabled()
    # The table's context menu offers it.
    tab.view.customContextMenuRequested.emit(tab.view.visualRect(tab.proxy.index(0, 0)).center())
    menus = [m for m in tab.findChildren(QMenu) if m.isVisible()]
    assert [[a.text() for a in m.actions()] for m in menus] == [["Update firmware…"]]
    menus[0].actions()[0].trigger()
    menus[0].close()
    dialog = tab.update_dialog
    assert dialog is not None and dialog.isVisible()
    assert not dialog.bad_bundle.isVisible()  # not a demo: no crashing firmware offered
    dialog.start_button.click()
    qtbot.waitUntil(lambda: bool(told), timeout=30_000)
    assert told == [("Update firmware", "none of these devices is online now: nothing to update")]
    assert _cell(tab, issued.device.node_name, UPDATE) == ""
    assert not tab.update_bar.isVisible()
    assert tab.update_action.isEnabled()  # free for the next try


def test_the_summary_line_says_the_outcome_and_why_it_stopped():
    def result(stopped: str, *phases: Phase) -> RolloutResult:
        return RolloutResult([DeviceProgress(f"d{i}", p) for i, p in enumerate(phases)], stopped)

    ok = result("", Phase.CONFIRMED, Phase.CONFIRMED, Phase.SKIPPED)
    assert summary(ok, "1.0.1") == "2 confirmed on 1.0.1, 1 skipped (offline)"
    assert summary(ok, "1.0.1", ["d9"]) == (
        "2 confirmed on 1.0.1, 1 skipped (offline), 1 already on it"
    )
    canary = result(
        "the canary d0 rolled back: crashed at boot", Phase.ROLLED_BACK, Phase.CANCELLED
    )
    assert summary(canary, "1.0.1") == (
        "Firmware 1.0.1: the canary d0 rolled back: crashed at boot; rollout stopped, 1 not started"
    )
    alone = result("the canary d0 failed: manifest hash mismatch", Phase.FAILED)
    assert summary(alone, "2.0.0") == (
        "Firmware 2.0.0: the canary d0 failed: manifest hash mismatch; rollout stopped"
    )
    cancelled = result("cancelled", Phase.CONFIRMED, Phase.CANCELLED, Phase.CANCELLED)
    assert summary(cancelled, "1.0.1") == "Firmware 1.0.1: 1 confirmed, 2 not started — cancelled"
    partly = result("", Phase.CONFIRMED, Phase.FAILED)  # failures allowed (max_failures)
    assert summary(partly, "1.0.1") == "Firmware 1.0.1: 1 confirmed, 1 failed"
