"""Start the GUI: a window at once, the station (broker, registry, WiFi, and in demo
mode the simulated site) started off the GUI thread, then the main window."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QLabel, QMessageBox

from station import settings as settings_mod
from station.runtime import StationRuntime
from station.ui.log_panel import QtLogHandler

log = logging.getLogger(__name__)

DEMO_DEVICES = 6
# Process start, not import time: what a user waits for from the double-click.
try:
    import psutil

    STARTED_AT = time.perf_counter() - (time.time() - psutil.Process().create_time())
except Exception:  # psutil is a dev extra; fall back to import time
    STARTED_AT = time.perf_counter()


class _Starter(QObject):
    ready = Signal(object, str)  # runtime, notice
    failed = Signal(str)


def decide_demo(args: argparse.Namespace, settings: settings_mod.Settings) -> tuple[int, str]:
    """How many simulated devices (0 = a real station) and the banner text, if any."""
    if getattr(args, "demo", False):
        return DEMO_DEVICES, (
            "Demo mode: a simulated home WiFi and "
            f"{DEMO_DEVICES} simulated sensors running the real firmware."
        )
    if settings.provisioning.wifi_backend != "auto":
        return 0, ""
    from station.wifi.select import select_backend

    try:
        sel = select_backend()
    except Exception as exc:  # no backend at all: the demo still shows the product
        return DEMO_DEVICES, f"No WiFi control on this computer ({exc}). Showing the demo."
    if sel.name == "manual":
        return DEMO_DEVICES, (
            "No automatic WiFi control on this computer, so this is the demo: a simulated "
            f"home WiFi and {DEMO_DEVICES} simulated sensors running the real firmware. "
            "(Start with --help for the real station's options.)"
        )
    return 0, ""


def start_runtime(
    args: argparse.Namespace, settings: settings_mod.Settings, demo: int
) -> StationRuntime:
    rt = StationRuntime.start(settings, db=getattr(args, "db", None), demo_devices=demo)
    if not demo:
        from station.wifi.guard import recover

        rt.choose_wifi()
        report = recover(rt.wifi, rt.journal())
        if str(report):
            log.info("%s", report)
    return rt


def run(args: argparse.Namespace) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("ESP32 Provisioning Station")
    handler = QtLogHandler()
    logging.getLogger().addHandler(handler)
    try:
        settings = settings_mod.load(Path(args.config) if getattr(args, "config", None) else None)
    except Exception as exc:
        QMessageBox.critical(None, "Settings", str(exc))
        return 2
    demo, notice = decide_demo(args, settings)

    splash = QLabel(
        "Starting the ESP32 Provisioning Station…"
        + ("\n\nStarting the simulated sensors (real firmware)…" if demo else "")
    )
    splash.setAlignment(Qt.AlignmentFlag.AlignCenter)
    splash.setWindowTitle("ESP32 Provisioning Station")
    splash.setMinimumSize(420, 140)
    splash.show()
    log.info("first window after %.2f s", time.perf_counter() - STARTED_AT)

    starter = _Starter()
    state: dict[str, object] = {}

    def work() -> None:
        try:
            starter.ready.emit(start_runtime(args, settings, demo), notice)
        except Exception as exc:
            log.exception("station start failed")
            starter.failed.emit(str(exc))

    def on_ready(runtime: StationRuntime, text: str) -> None:
        from station.ui.main_window import MainWindow

        state["runtime"] = runtime
        window = MainWindow(runtime, handler, text)
        state["window"] = window
        window.show()
        splash.close()
        log.info("station ready after %.2f s", time.perf_counter() - STARTED_AT)
        # For benchmarks and smoke tests: quit on their own once ready.
        quit_after = os.environ.get("STATION_QUIT_AFTER_READY")
        if quit_after:
            QTimer.singleShot(int(float(quit_after) * 1000), window.close)

    def on_failed(message: str) -> None:
        splash.close()
        QMessageBox.critical(None, "The station could not start", message)
        app.exit(2)

    starter.ready.connect(on_ready)
    starter.failed.connect(on_failed)
    threading.Thread(target=work, name="station-start", daemon=True).start()
    code = app.exec()
    runtime = state.get("runtime")
    if isinstance(runtime, StationRuntime):
        runtime.stop()
    logging.getLogger().removeHandler(handler)
    return code
