"""The worker plumbing without a station: the manual backend's confirm bridge, signals
from worker threads arriving in the GUI thread, and the queue model's estimates."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication, QMessageBox

from station.provisioning import Progress, Status, Step
from station.ui.provision_model import (
    PROBLEM,
    PROGRESS,
    ProvisionQueueModel,
    overall_progress,
    remaining_seconds,
)
from station.ui.worker import ConfirmBridge, JobRow, _Relay
from station.wifi.manual import CONNECT_ACTION, connect_instruction


def _ask_in_thread(bridge: ConfirmBridge, instruction) -> tuple[threading.Thread, list]:
    result: list = []
    t = threading.Thread(target=lambda: result.append(bridge.confirm(instruction)), daemon=True)
    t.start()
    return t, result


def test_bridge_asks_the_gui_thread_and_returns_its_answer(qtbot):
    bridge = ConfirmBridge()
    bridge.owner = object()  # someone shows the questions: no fallback box
    gui = QThread.currentThread()
    seen = []
    bridge.asked.connect(lambda ins: seen.append((ins, QThread.currentThread() is gui)))
    instruction = connect_instruction("esp32-dht11-Setup-12AB34", "12345678")
    with qtbot.waitSignal(bridge.asked, timeout=2000):
        t, result = _ask_in_thread(bridge, instruction)
    assert seen == [(instruction, True)]
    assert bridge.waiting() and t.is_alive()  # the worker waits for the person
    bridge.answer(True)
    t.join(2)
    assert result == [True]
    assert instruction.action == CONNECT_ACTION
    assert "(password: 12345678)" in instruction.text


def test_bridge_abort_and_close(qtbot):
    bridge = ConfirmBridge()
    bridge.owner = object()
    instruction = connect_instruction("esp32-dht11-Setup-12AB34", "12345678")
    with qtbot.waitSignal(bridge.asked, timeout=2000):
        t, result = _ask_in_thread(bridge, instruction)
    bridge.abort()  # Cancel: the open question is answered "no"
    t.join(2)
    assert result == [False]
    bridge.close()  # the window is going: later questions are refused at once
    t, result = _ask_in_thread(bridge, instruction)
    t.join(2)
    assert result == [False]


def test_bridge_refuses_to_block_the_gui_thread(qtbot):
    bridge = ConfirmBridge()
    with pytest.raises(RuntimeError):
        bridge.confirm(connect_instruction("esp32-dht11-Setup-12AB34", "12345678"))


def test_bridge_without_owner_shows_a_message_box(qtbot):
    bridge = ConfirmBridge()
    instruction = connect_instruction("esp32-dht11-Setup-12AB34", "12345678")
    with qtbot.waitSignal(bridge.asked, timeout=2000):
        t, result = _ask_in_thread(bridge, instruction)
    boxes: list[QMessageBox] = []
    qtbot.waitUntil(
        lambda: bool(
            boxes.extend(w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox))
            or boxes
        ),
        timeout=2000,
    )
    box = boxes[0]
    assert box.text() == instruction.text
    action = next(b for b in box.buttons() if b.text() == CONNECT_ACTION)
    action.click()
    t.join(2)
    assert result == [True]


class _Probe(_Relay):
    from PySide6.QtCore import Signal

    progress = Signal(object)


def test_thousands_of_worker_signals_arrive_in_order_in_the_gui_thread(qtbot):
    """Also the guard against the PySide6 6.12.0 crash (FIELD-NOTES.md) on this path."""
    relay = _Probe()
    gui = QThread.currentThread()
    got: list[int] = []
    wrong_thread: list[int] = []

    def on(p: Progress) -> None:
        got.append(p.progress)
        if QThread.currentThread() is not gui:
            wrong_thread.append(p.progress)

    relay.progress.connect(on)
    n = 5000

    def work() -> None:
        for i in range(n):
            relay._emit(
                "progress",
                Progress("pid", "node", "ap", Step.CONFIGURE, i, Status.RUNNING, "m"),
            )

    t = threading.Thread(target=work)
    t.start()
    qtbot.waitUntil(lambda: len(got) == n, timeout=20_000)
    t.join()
    assert got == list(range(n)) and not wrong_thread


def _row(pid: str, status: str, progress: int, timings: dict | None = None, error=None) -> JobRow:
    return JobRow(
        pid,
        f"esp32-dht11-Setup-{pid}",
        f"node_{pid}",
        "connect",
        progress,
        status,
        error,
        timings or {},
    )


def test_model_updates_rows_in_place_and_says_what_to_do(qtbot):
    model = ProvisionQueueModel()
    model.merge([_row("A", Status.REGISTERED, 40), _row("B", Status.REGISTERED, 40)])
    changed = []
    model.dataChanged.connect(lambda a, b: changed.append((a.row(), b.row())))
    model.apply(
        Progress(
            "B",
            "node_B",
            "esp32-dht11-Setup-B",
            Step.CONFIGURE,
            60,
            Status.FAILED,
            "configure failed",
            "The home WiFi password is wrong.",
        )
    )
    assert changed == [(1, 1)]
    assert model.index(1, PROGRESS).data() == 60
    hint = model.index(1, PROBLEM).data()
    assert hint.startswith("The home WiFi password is wrong.") and "Retry" in hint
    assert model.index(0, PROBLEM).data() == ""


def test_estimates_from_step_timings():
    rows = [
        _row("A", Status.DONE, 100, {"prepare": 0.1, "connect": 2, "configure": 4, "reconnect": 6}),
        _row("B", Status.REGISTERED, 40, {"prepare": 0.1}),
        _row("C", Status.REGISTERED, 40, {"prepare": 0.1}),
    ]
    # B and C: connect + configure each, and one shared wait for them to come online.
    assert remaining_seconds(rows) == pytest.approx(2 * (2 + 4) + 6)
    assert overall_progress(rows) == 60
    assert remaining_seconds([rows[0]]) == 0
