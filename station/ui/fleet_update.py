"""Devices tab → "Update firmware…": the dialog (devices, version, canary, concurrency)
and the runner that drives one station.fleet.session.FirmwareUpdate off the GUI thread.

Everything of FirmwareUpdate blocks: its construction reads the registry and may start
a home's broker, prepare() builds the bundle (seconds), run() lasts until every device
is final (minutes). So the runner does all of it on a thread of its own, one update at
a time; what the rollout reports (`on_progress`, called on the rollout's and the
brokers' threads with the rollout's lock held) is copied and relayed to the GUI thread
by a queued signal. Pause, resume and cancel go to the update from the GUI thread (they
only set flags under the rollout's lock).

The demo's "a firmware that crashes at boot" (FirmwareUpdate's bad_bundle) is a
checkbox of the dialog shown only in demo mode: it is what shows the canary at work (it
rolls back by itself, no other device is sent anything) to someone trying the demo, and
the GUI tests reach it through the same dialog. A real station never offers it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from station.errors import StationError
from station.fleet.rollout import DeviceProgress, Phase, RolloutResult
from station.fleet.session import FirmwareUpdate, next_version
from station.ui.devices_model import DeviceRow

if TYPE_CHECKING:
    from station.runtime import StationRuntime

log = logging.getLogger(__name__)

# Said of a device still updating when the window closes: the station stops following
# it, the device finishes (or rolls back) by itself.
ABANDONED = "the station was closed before it confirmed; the device finishes on its own"

_PHASE_WORDS = (
    (Phase.CONFIRMED, "confirmed"),
    (Phase.ROLLED_BACK, "rolled back"),
    (Phase.FAILED, "failed"),
    (Phase.SKIPPED, "skipped (offline)"),
    (Phase.CANCELLED, "not started"),
)


def summary(result: RolloutResult, version: str, already: Sequence[str] = ()) -> str:
    """One line for the status bar: "2 confirmed on 1.0.1", or why the rollout stopped
    and what that left ("Firmware 1.0.1: the canary esp32_dht11_001 rolled back:
    crashed at boot; rollout stopped, 1 not started")."""
    counts = [f"{n} {word}" for phase, word in _PHASE_WORDS if (n := result.count(phase))]
    if already:
        counts.append(f"{len(already)} already on it")
    if result.ok:
        first, *rest = counts
        return f"{first} on {version}" + (f", {', '.join(rest)}" if rest else "")
    if result.stopped and result.stopped != "cancelled":
        # What stopped it first; then what that left ("2 not started").
        rest = [c for c in counts if not c.endswith(("rolled back", "failed"))]
        tail = f", {', '.join(rest)}" if rest else ""
        return f"Firmware {version}: {result.stopped}; rollout stopped{tail}"
    text = f"Firmware {version}: {', '.join(counts)}"
    return text + (" — cancelled" if result.stopped else "")


class UpdateDialog(QDialog):
    """The devices chosen, the version to build, canary count and concurrency."""

    def __init__(
        self, rows: Sequence[DeviceRow], demo: bool = False, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Update firmware")
        self.nodes = [r.node_name for r in rows]
        n = len(rows)
        intro = QLabel(
            f"Build a firmware and update {n} device{'s' if n != 1 else ''}: the canary "
            "first, alone; the others only once it has rebooted into the new firmware "
            "and said so over MQTT."
        )
        intro.setWordWrap(True)
        self.devices = QListWidget()
        for r in rows:
            label = f"{r.name} ({r.node_name})" if r.name else r.node_name
            state = "online" if r.online else "offline"
            self.devices.addItem(f"{label} — firmware {r.firmware or '?'}, {state}")
        self.devices.setMaximumHeight(min(160, 22 * n + 8))
        self.version = QLineEdit(next_version([r.firmware for r in rows]))
        self.version.setToolTip("Dotted numbers; the next patch version by default.")
        self.canary = QSpinBox()
        self.canary.setRange(0, n)
        self.canary.setValue(min(1, n))
        self.canary.setToolTip("Devices updated first, alone: if one fails, nothing else is sent.")
        self.concurrency = QSpinBox()
        self.concurrency.setRange(1, 64)
        self.concurrency.setValue(4)
        self.concurrency.setToolTip("At most this many devices update at a time after the canary.")
        self.bad_bundle = QCheckBox("Demo: roll out a firmware that crashes at boot")
        self.bad_bundle.setToolTip(
            "Shows the canary at work: it rolls back to its firmware by itself, and no "
            "other device is sent anything."
        )
        self.bad_bundle.setVisible(demo)

        form = QFormLayout()
        form.addRow("Version to build", self.version)
        form.addRow("Canary devices", self.canary)
        form.addRow("At a time", self.concurrency)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.start_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.start_button.setText("Start")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.devices)
        layout.addLayout(form)
        if demo:
            layout.addWidget(self.bad_bundle)
        layout.addWidget(buttons)
        self.resize(460, self.sizeHint().height())


class FleetUpdateRunner(QObject):
    """start(...) runs one FirmwareUpdate on a thread; the signals arrive in the GUI
    thread. At most one at a time (start returns False while one runs)."""

    started = Signal(str, list, list)  # version, nodes to update, nodes already on it
    stage = Signal(str)  # what it does now ("building firmware 1.0.1…")
    progress = Signal(object)  # DeviceProgress, a copy
    finished = Signal(object, str)  # RolloutResult, summary line
    failed = Signal(str)  # refused or broken before anything was sent (StationError's text)
    # Emitted on the worker's thread; connected to the public ones, so those are
    # queued into this object's (the GUI) thread.
    _started = Signal(str, list, list)
    _stage = Signal(str)
    _progress = Signal(object)
    _finished = Signal(object, str)
    _failed = Signal(str)

    def __init__(self, runtime: StationRuntime, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runtime = runtime
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._update: FirmwareUpdate | None = None
        self._paused = False
        self._cancelled = False
        self._closing = False
        self._running = False
        self.result: RolloutResult | None = None  # the last update's, once it ended
        self._started.connect(self.started.emit)
        self._stage.connect(self.stage.emit)
        self._progress.connect(self.progress.emit)
        self._finished.connect(self.finished.emit)
        self._failed.connect(self.failed.emit)

    @property
    def busy(self) -> bool:
        """From start() until just before `finished` or `failed` is emitted."""
        return self._running

    @property
    def paused(self) -> bool:
        return self._paused

    def start(
        self,
        nodes: Sequence[str],
        *,
        version: str | None = None,
        canary: int = 1,
        concurrency: int = 4,
        bad_bundle: bool = False,
    ) -> bool:
        if self.busy or self._closing:
            return False
        with self._lock:
            self._update = None
            self._paused = self._cancelled = False
        self.result = None
        nodes = list(nodes)
        rt = self.runtime
        self._running = True

        def work() -> None:
            update: FirmwareUpdate | None = None
            outcome: tuple[str, tuple[object, ...]]
            try:
                self._stage.emit("checking the devices…")
                update = FirmwareUpdate(
                    rt,
                    nodes,
                    version=version or None,
                    canary=canary,
                    concurrency=concurrency,
                    on_progress=self._on_progress,
                    bad_bundle=bad_bundle,
                )
                with self._lock:
                    self._update = update
                    if self._paused:
                        update.pause()
                    if self._cancelled or self._closing:
                        update.cancel()
                self._started.emit(update.version, list(update.nodes), list(update.already))
                if not self._closing:
                    self._stage.emit(f"building firmware {update.version}…")
                    update.prepare()
                self._stage.emit(f"updating to {update.version}")
                result = self.result = update.run()
                outcome = ("finished", (result, summary(result, update.version, update.already)))
            except StationError as exc:
                outcome = ("failed", (str(exc),))
            except Exception as exc:  # a bug: said and logged, never a dead thread
                log.exception("firmware update failed")
                outcome = ("failed", (f"the firmware update failed: {exc}",))
            finally:
                if update is not None:
                    update.close()
            # Not busy any more before the GUI hears of the end: its slots may start the
            # next update.
            self._running = False
            signal = self._finished if outcome[0] == "finished" else self._failed
            signal.emit(*outcome[1])

        self._thread = threading.Thread(target=work, name="firmware-update", daemon=True)
        self._thread.start()
        return True

    def _on_progress(self, dev: DeviceProgress) -> None:
        # The rollout's lock is held: a copy, and a queued signal; nothing else.
        self._progress.emit(dataclasses.replace(dev, timings=dict(dev.timings)))

    # -- controls (GUI thread) --------------------------------------------------------------

    def pause(self) -> None:
        with self._lock:
            self._paused = True
            update = self._update
        if update is not None:
            update.pause()

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            update = self._update
        if update is not None:
            update.resume()

    def cancel(self) -> None:
        """No device is started after this; those updating finish."""
        with self._lock:
            self._cancelled = True
            update = self._update
        if update is not None:
            update.cancel()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """The window closes: start no more devices, stop following those updating now
        (each finishes or rolls back by itself), and wait for the thread (the bundle
        build, if it is at that, and the history written). True if it ended."""
        with self._lock:
            self._closing = True
        self.cancel()
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        update = self._update
        if update is not None:  # run() returns now rather than at device_timeout_s
            update.abandon(ABANDONED)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the firmware update did not stop within %.0f s", timeout)
            return False
        return True
