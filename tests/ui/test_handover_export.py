"""File → Export handover report, as an installer uses it after a demo batch: the
menu entry, the save dialog, the report written off the GUI thread (the window keeps
ticking), and what the user is told."""

from __future__ import annotations

import csv
import subprocess

from PySide6.QtWidgets import QFileDialog, QMessageBox

from station.ui.log_panel import QtLogHandler
from station.ui.main_window import MainWindow


def test_export_after_a_demo_batch_writes_the_pdf_and_csv(
    qtbot, demo_runtime, tmp_path, monkeypatch
):
    window = MainWindow(demo_runtime, QtLogHandler(), "Demo mode")
    qtbot.addWidget(window)
    window.show()
    tab = window.provision_tab
    tab.scan_button.click()
    qtbot.waitUntil(lambda: len(tab.targets) == 3, timeout=20_000)
    tab.provision_all_button.click()
    qtbot.waitUntil(lambda: window.devices_tab.model.online_count() == 3, timeout=60_000)
    qtbot.waitUntil(lambda: not window._batch_running, timeout=20_000)

    target = tmp_path / "out" / "Demo-home-handover"
    target.parent.mkdir()
    asked: list[str] = []

    def save_dialog(_parent, _title, suggested, _filter):
        asked.append(suggested)
        return str(target), "PDF (*.pdf)"

    told: list[str] = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    monkeypatch.setattr(QMessageBox, "information", lambda _p, _t, text: told.append(text))
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: told.append("!" + text))
    assert window.export_action.text() == "Export &handover report…"
    window.export_action.trigger()
    assert asked and asked[0].endswith("Demo-home-handover.pdf")
    ticks = []
    timer = window.startTimer(20)
    window.timerEvent = lambda _e: ticks.append(1)  # the GUI thread runs meanwhile
    qtbot.waitUntil(lambda: bool(told), timeout=30_000)
    window.killTimer(timer)
    pdf, csv_path = target.with_suffix(".pdf"), target.with_suffix(".csv")
    assert told == [f"Written for 3 device(s):\n{pdf}\n{csv_path}"]
    assert ticks, "the GUI thread did not run while the report was written"
    with csv_path.open(encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    chips = {d.chip_id for d in demo_runtime.registry.devices()}
    assert len(rows) == 3
    assert {r[next(k for k in r if "chip" in k.lower())] for r in rows} == chips
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    pages = next(line for line in info.stdout.splitlines() if line.startswith("Pages:"))
    assert pages.split()[1] == "2", info.stdout  # the device table, the QR labels
    window.close()
