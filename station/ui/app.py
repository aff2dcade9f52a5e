"""Start the GUI: a window at once, the station (broker, registry, WiFi, and in demo
mode the simulated site) started off the GUI thread, then the main window.

Before Qt is touched on Linux, the xcb platform plugin's system libraries are checked
(a fresh desktop often lacks some, and Qt then aborts with no hint). SIGINT and
SIGTERM close the window the normal way, so the laptop goes home, the runtime stops
and its temporary folders go.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import PySide6
from PySide6.QtCore import QObject, QSocketNotifier, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QMessageBox

from station import settings as settings_mod
from station.errors import StationError
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
        rt.choose_wifi()
        if rt.radio is None:
            raise StationError("no WiFi backend could be chosen")
        report = rt.radio.recover(rt.journal())  # one radio job: nothing interleaves
        if str(report):
            log.info("%s", report)
    return rt


# Libraries PySide6's libqxcb.so (and libQt6XcbQpa) load, by Debian/Ubuntu package.
XCB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def xcb_plugin() -> Path:
    return Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"


def _ldd(path: Path) -> str | None:
    """`ldd path`, or None where it cannot tell (no ldd, no plugin)."""
    ldd = shutil.which("ldd")
    if not ldd or not path.is_file():
        return None
    try:
        return subprocess.run(
            [ldd, str(path)], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def missing_xcb_libraries(ldd_output: str | None) -> list[str]:
    """The libraries `ldd` reports as not found, each once, in its order."""
    return list(dict.fromkeys(_NOT_FOUND.findall(ldd_output or "")))


def uses_xcb(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Would Qt start the xcb platform here? (Linux, X11, no other platform chosen.)"""
    if not sys.platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return not env.get("WAYLAND_DISPLAY")  # on Wayland Qt 6 takes its wayland plugin


def xcb_problem(ldd: Callable[[Path], str | None] = _ldd) -> str | None:
    """What to tell the user if xcb cannot load, else None. `ldd` is injectable for tests."""
    missing = missing_xcb_libraries(ldd(xcb_plugin()))
    if not missing:
        return None
    packages = [p for p in dict.fromkeys(XCB_PACKAGES.get(lib) for lib in missing) if p]
    unknown = [lib for lib in missing if lib not in XCB_PACKAGES]
    lines = [
        "The station's window cannot open: Qt's X11 (xcb) platform plugin needs system "
        f"libraries this computer lacks: {', '.join(missing)}.",
    ]
    if packages:
        lines.append(
            f"On Debian/Ubuntu install them with:\n    sudo apt-get install {' '.join(packages)}"
        )
    if unknown:
        lines.append(
            "Install the packages that provide "
            + ", ".join(unknown)
            + " (Debian/Ubuntu: apt-file search <library>)."
        )
    lines.append(
        "Meanwhile everything else works without the window: `station provision --demo 6` "
        "(or `station provision --home NAME ...`) and the terminal demo "
        "(`env -u DISPLAY station`)."
    )
    return "\n".join(lines)


class _SignalCloser(QObject):
    """SIGINT / SIGTERM as a request to close the window the normal way.

    Python runs signal handlers only when the interpreter gets control, and Qt's
    event loop is C++: the C-level handler writes a byte to a socket (set_wakeup_fd)
    whose QSocketNotifier wakes the loop, and the Python handler runs right then.
    """

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        super().__init__()
        self._on_signal = on_signal
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._wsock.fileno())
        self._notifier = QSocketNotifier(self._rsock.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._drain)
        self._previous = {
            s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
        }

    def _drain(self, *_a: object) -> None:
        try:
            while self._rsock.recv(64):
                pass
        except BlockingIOError:
            pass

    def _handle(self, signum: int, _frame: object) -> None:
        # Runs in the main thread between bytecodes: defer to the event loop, so no
        # slot is interrupted half-way.
        QTimer.singleShot(0, lambda: self._on_signal(signum))

    def close(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        signal.set_wakeup_fd(self._previous_fd)
        self._notifier.setEnabled(False)
        self._rsock.close()
        self._wsock.close()


def run(args: argparse.Namespace) -> int:
    if QApplication.instance() is None and uses_xcb():
        problem = xcb_problem()
        if problem:
            print(problem, file=sys.stderr, flush=True)
            return 2
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

    def on_signal(signum: int) -> None:
        """Close the window as its close button does: the laptop goes home, run() stops
        the runtime. Ctrl-C during a batch asks like the button (a second Ctrl-C
        answers Yes); SIGTERM does not ask (nobody may be there): it stops the batch."""
        log.info("%s: closing the station", signal.Signals(signum).name)
        state.setdefault("signal", signum)
        window = state.get("window")
        if window is None:  # still starting: on_ready quits as soon as it is ready
            splash.setText("Stopping the station…")
            return
        assert isinstance(window, QMainWindow)
        modal = QApplication.activeModalWidget()
        yes = (
            modal.button(QMessageBox.StandardButton.Yes) if isinstance(modal, QMessageBox) else None
        )
        if yes is not None:  # the "Provisioning is running" question of a first signal
            yes.click()
            return
        if signum != signal.SIGINT:
            window._set_running(False)  # type: ignore[attr-defined]  # as if answered Yes
        window.close()
        if not window.isVisible():
            # Any other window too: closing the last one quits the app (Qt's
            # quitOnLastWindowClosed), one way out for every path.
            QApplication.closeAllWindows()

    def work() -> None:
        try:
            starter.ready.emit(start_runtime(args, settings, demo), notice)
        except Exception as exc:
            log.exception("station start failed")
            starter.failed.emit(str(exc))

    def on_ready(runtime: StationRuntime, text: str) -> None:
        from station.ui.main_window import MainWindow

        state["runtime"] = runtime
        if "signal" in state:  # stopped while starting: closing the last window quits
            splash.close()
            return
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
        # The box first: closing the splash (the last window) would quit the app
        # before the person has read why.
        QMessageBox.critical(None, "The station could not start", message)
        splash.close()
        app.exit(2)

    starter.ready.connect(on_ready)
    starter.failed.connect(on_failed)
    # Only the main thread may set signal handlers (tests may run the app elsewhere).
    closer = (
        _SignalCloser(on_signal) if threading.current_thread() is threading.main_thread() else None
    )
    threading.Thread(target=work, name="station-start", daemon=True).start()
    try:
        code = app.exec()
        runtime = state.get("runtime")
        if isinstance(runtime, StationRuntime):
            runtime.stop()
    finally:
        if closer is not None:
            closer.close()
        logging.getLogger().removeHandler(handler)
    if "signal" in state:
        return 128 + int(state["signal"])  # type: ignore[call-overload]
    return code
