"""Regenerate docs/screenshot.png: what a user gets from `station --demo`, captured
after the demo batch was provisioned from the Provision tab and readings arrived.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshot.py

With `--fleet-update`, docs/screenshot-fleet-update.png instead: after the batch, the
last two devices are sent the demo's firmware that crashes at boot (the canary rolls
back, the other is never sent anything), then the first four are updated to 1.0.1
two at a time; the window is captured while that runs (the canary confirmed, two
devices updating, one waiting), from the progress signal itself.

The station starts through its real entry point (station.cli.main -> gui_cmd.run_gui
-> station.ui.app.run, start-up thread included), with a throwaway user (HOME, data,
settings) so nothing of yours shows. A QTimer inside the event loop plays the user:
Provision tab, "Scan for devices", "Provision all", then the Devices tab with the
first device selected. STATION_DEMO_TIMING=fast only shortens the firmware's waits.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).with_name("screenshot.png")
FLEET_OUT = Path(__file__).with_name("screenshot-fleet-update.png")
DEVICES = 6
SETTLE_S = 12  # after the batch: a few readings per device, and the chart gets a line


def main(argv: list[str]) -> int:
    fleet = "--fleet-update" in argv
    user = Path(tempfile.mkdtemp(prefix="station-screenshot-"))
    os.environ.update(
        HOME=str(user),
        XDG_CONFIG_HOME=str(user / ".config"),
        XDG_DATA_HOME=str(user / ".local/share"),
        STATION_DATA_DIR=str(user / "data"),
        STATION_CONFIG=str(user / "settings.json"),
        STATION_DEMO_TIMING="fast",
    )
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from station.cli import main as station
    from station.ui.main_window import MainWindow

    # The event loop must exist before the station blocks in it, to carry the timer;
    # run() takes an existing QApplication as its own.
    app = QApplication.instance() or QApplication(sys.argv[:1])  # kept alive by this name
    state: dict[str, object] = {"step": "window", "deadline": time.monotonic() + 180}

    def tick() -> None:
        step = state["step"]
        if time.monotonic() > state["deadline"]:
            state["error"] = f"timed out at step {step}"
            QApplication.quit()
            return
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        if not windows or not windows[0].isVisible():
            return
        w = windows[0]
        tab, model = w.provision_tab, w.devices_tab.model
        if step == "window":
            w.resize(1440, 780)
            w.tabs.setCurrentWidget(tab)
            tab.scan_button.click()
            state["step"] = "scan"
        elif step == "scan" and len(tab.targets) == DEVICES:
            tab.provision_all_button.click()
            state["step"] = "provision"
        elif step == "provision":
            rows = [model.device_row(r) for r in range(model.rowCount())]
            live = [r for r in rows if r.online and r.temperature is not None]
            if len(live) == DEVICES and not w._batch_running:
                w.tabs.setCurrentWidget(w.devices_tab)
                w.devices_tab.view.selectRow(0)
                state["step"], state["at"] = "settle", time.monotonic() + SETTLE_S
                if fleet:
                    state["step"] = "crashing"
                    _update(w, rows=range(DEVICES - 2, DEVICES), bad=True)
        elif step == "crashing" and not w.devices_tab.updater.busy:
            if w.devices_tab.update_dialog is None:  # started and ended
                state["step"] = "update"
                tab = w.devices_tab

                def on_progress(_dev: object) -> None:
                    phases = [tab.model.update_of(tab.model.node_at(r)) for r in range(4)]
                    shown = [c.phase if c else "" for c in phases]
                    busy = [p for p in shown if p in ("downloading", "verifying", "rebooting")]
                    if "done" not in state and "confirmed" in shown and len(busy) == 2:
                        state["done"] = True
                        w.grab().save(str(FLEET_OUT))
                        print(f"wrote {FLEET_OUT}: {shown}")

                tab.updater.progress.connect(on_progress)
                _update(w, rows=range(4), concurrency=2)
                tab.view.selectRow(0)  # the canary: its detail; the other rows' colours show
        elif step == "update" and not w.devices_tab.updater.busy:
            if w.devices_tab.update_dialog is None:
                if "done" not in state:
                    state["error"] = "the update ended before the moment to capture"
                state["step"] = "done"
                w.close()
        elif step == "settle" and time.monotonic() > state["at"]:
            w.grab().save(str(OUT))
            print(f"wrote {OUT}")
            state["step"] = "done"
            w.close()

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(250)
    try:
        code = station(["--demo"])
    finally:
        shutil.rmtree(user, ignore_errors=True)
    del app
    if "error" in state:
        print(state["error"], file=sys.stderr)
        return 1
    return code


def _update(w: object, rows: range, bad: bool = False, concurrency: int = 4) -> None:
    """Select `rows` in the devices table, open "Update firmware…", Start."""
    from PySide6.QtCore import QItemSelectionModel

    tab = w.devices_tab  # type: ignore[attr-defined]
    select = tab.view.selectionModel()
    select.clearSelection()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for r in rows:
        select.select(tab.proxy.index(r, 0), flags)
    tab.update_button.click()
    dialog = tab.update_dialog
    dialog.bad_bundle.setChecked(bad)
    dialog.concurrency.setValue(concurrency)
    dialog.start_button.click()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
