"""Regenerate docs/screenshot.png: the real main window in demo mode, after a batch
was provisioned, captured from a real X display (Xvfb) or offscreen.

    xvfb-run -s "-screen 0 1400x900x24" .venv/bin/python docs/make_screenshot.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from station.provisioning import BulkQueue
from station.runtime import StationRuntime
from station.settings import Settings
from station.sim.demo import FAST_TIMING
from station.ui.log_panel import QtLogHandler
from station.ui.main_window import MainWindow

OUT = Path(__file__).with_name("screenshot.png")


def main() -> int:
    os.environ.setdefault("STATION_DATA_DIR", "/tmp/station-screenshot-data")
    app = QApplication(sys.argv[:1])
    rt = StationRuntime.start(Settings(), demo_devices=6, demo_timing=FAST_TIMING)
    try:
        home = rt.registry.homes()[0]
        queue = BulkQueue(rt.provisioning_station())
        queue.add(queue.scan()[:5], home)  # one left in setup mode, for the Provision tab
        queue.run(home, rt.secrets.home_password(home.id))
        handler = QtLogHandler()
        window = MainWindow(rt, handler, "Demo mode: a simulated home WiFi and 6 simulated "
                                         "sensors running the real firmware.")
        window.show()
        deadline = time.monotonic() + 6  # let readings arrive and the table fill
        while time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.05)
        window.devices_tab.view.selectRow(0)
        QTimer.singleShot(1500, app.quit)
        app.exec()
        window.grab().save(str(OUT))
        print(f"wrote {OUT}")
        window.close()
    finally:
        rt.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
