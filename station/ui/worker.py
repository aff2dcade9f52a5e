"""Provisioning off the GUI thread: the bulk queue, one device, and the manual-WiFi bridge.

Every WiFi or HTTP call runs off the GUI thread; results come back as Qt signals. The
facade objects here live in the GUI thread, and worker threads never emit their public
signals directly: they post to the facade, which emits in the GUI thread (see _Relay; a
cross-thread signal delivered to a freed PySide helper receiver crashed the tests).

WiFi work goes to the adapter's owner (station.wifi.radio): QueueWorker's scans and runs
and DeviceWorker's scan and join-configure-go-home are jobs in the radio's one queue, so
a batch, a wizard (even one closed while its worker goes home) and the status bar never
use the radio at once. Work without the radio runs in single-thread pools: QueueWorker's
"side" pool (loading rows, skip, retry: not stuck behind a run that takes minutes),
DeviceWorker's pool (step 1, waiting for `online`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QThreadPool, Signal
from PySide6.QtWidgets import QApplication, QMessageBox

from station.device_client import DeviceError, HeardNetwork
from station.errors import StationError
from station.followers import Route
from station.provisioning import (
    BulkQueue,
    Progress,
    Provisioner,
    ProvisioningError,
    RunSummary,
    SetupTarget,
    Station,
    Ticket,
)
from station.registry import OPEN, Home, Status
from station.registry.status import TO_CONFIGURE
from station.wifi.base import Link
from station.wifi.errors import Cancelled
from station.wifi.guard import Excursion
from station.wifi.manual import Instruction
from station.wifi.radio import radio_of

log = logging.getLogger(__name__)


def broker_route(runtime: Any, home: Home) -> Route:
    """Worker threads, before a device is registered: where `home`'s devices report.
    The embedded broker, or the home's own broker through its follower
    (station.followers), checked now: StationError when it cannot take devices."""
    if not home.broker_url:
        return Route(runtime.broker, *runtime.broker_address())
    return runtime.follow_external_brokers().route(home)


def use_route(station: Station, route: Route) -> None:
    station.broker, station.broker_host, station.broker_port = route.broker, route.host, route.port
    station.broker_ca = route.ca


def _pool() -> QThreadPool:
    pool = QThreadPool()
    pool.setMaxThreadCount(1)
    pool.setExpiryTimeout(-1)  # keep the thread: starting one per task costs time
    return pool


class _Relay(QObject):
    """Worker threads call `_emit(name, *args)`; the public signal is emitted in the GUI
    thread. So every public signal here is a GUI-thread signal: any slot (a lambda, a
    test's waitSignal) may connect to it, and nothing queued outlives this object
    (Qt drops pending events of a deleted receiver; PySide's helper receivers for
    plain callables do not)."""

    _post = Signal(str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._post.connect(self._deliver)  # queued when posted from a worker thread

    def _deliver(self, name: str, args: tuple) -> None:
        getattr(self, name).emit(*args)

    def _emit(self, name: str, *args: Any) -> None:
        try:
            self._post.emit(name, args)
        except RuntimeError:  # the widget that owned this was deleted: nobody to tell
            log.debug("dropped %s: its receiver is gone", name)


# -- the manual WiFi backend's confirmation, answered in the GUI -----------------------


class ConfirmBridge(_Relay):
    """`confirm(Instruction) -> bool` for the manual backend, answered by the GUI.

    The backend calls `confirm` in a worker thread; it emits `asked` (queued to the GUI
    thread) and waits until the GUI calls `answer`. `abort()` answers the open question
    with "no" (a cancel); `close()` also refuses every later one (the window is going).
    """

    asked = Signal(object)  # Instruction
    answered = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._event: threading.Event | None = None
        self._answer = False
        self._closed = False
        self.owner: object | None = None  # the widget that shows the questions now
        self.asked.connect(self._fallback)

    def _fallback(self, instruction: Instruction) -> None:
        """Nobody shows questions (the wizard that asked was closed, say): a plain
        message box, so the person is still told to go back to the home WiFi."""
        if self.owner is not None or QApplication.instance() is None:
            return
        box = QMessageBox(QMessageBox.Icon.Information, instruction.title, instruction.text)
        ok = box.addButton(instruction.action, QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _r: self.answer(box.clickedButton() is ok))
        self.answered.connect(box.close)
        box.open()

    def confirm(self, instruction: Instruction) -> bool:
        if QThread.currentThread() is self.thread():
            # Waiting here would freeze the window that must answer.
            raise RuntimeError("ConfirmBridge.confirm must be called from a worker thread")
        event = threading.Event()
        with self._lock:
            if self._closed:
                return False
            self._event, self._answer = event, False
        self._emit("asked", instruction)
        event.wait()
        with self._lock:
            self._event = None
            return self._answer

    def answer(self, ok: bool) -> None:
        """GUI thread: the person clicked the action (True) or cancelled (False)."""
        with self._lock:
            event = self._event
            if event is None:
                return
            self._answer = bool(ok)
            event.set()
        self.answered.emit(bool(ok))

    def waiting(self) -> bool:
        with self._lock:
            return self._event is not None

    def abort(self) -> None:
        self.answer(False)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.abort()


def confirm_bridge(runtime: Any) -> ConfirmBridge:
    """The station's one bridge (the manual backend has one confirm callback).

    Whoever starts work that may ask sets `bridge.owner` to itself, and only the owner
    shows the questions. Call in the GUI thread.
    """
    bridge = getattr(runtime, "confirm_bridge", None)
    if bridge is None:
        bridge = ConfirmBridge()
        runtime.confirm_bridge = bridge
    wifi = getattr(runtime, "wifi", None)
    if wifi is not None and hasattr(wifi, "confirm") and wifi.confirm is None:
        wifi.confirm = bridge.confirm  # the backend was chosen before any window existed
    return bridge


# -- rows for the queue table --------------------------------------------------------------


@dataclass
class JobRow:
    """A snapshot of one ProvisioningJob: the GUI never holds live database objects."""

    provisioning_id: str
    ap_ssid: str
    node_name: str
    step: str
    progress: int
    status: Status
    error: str | None
    timings: dict[str, float]
    message: str = ""

    @classmethod
    def from_job(cls, job: Any) -> JobRow:
        return cls(
            job.provisioning_id,
            job.ap_ssid or "",
            job.device.node_name,
            job.step,
            job.progress,
            Status(job.status),
            job.error,
            dict(job.timings or {}),
        )


def job_rows(queue: BulkQueue, also: list[str] | tuple[str, ...] = ()) -> list[JobRow]:
    """Open jobs plus the given ones (rows already shown that may have finished)."""
    jobs = {j.provisioning_id: j for j in queue.jobs(OPEN)}
    for pid in also:
        if pid not in jobs:
            job = queue.station.registry.job(pid)
            if job is not None:
                jobs[pid] = job
    ordered = sorted(jobs.values(), key=lambda j: (j.queue_position or 0, j.id))
    return [JobRow.from_job(j) for j in ordered]


# -- the bulk queue ----------------------------------------------------------------------------


class QueueWorker(_Relay):
    """The BulkQueue, run in worker threads; controls are safe to call from the GUI."""

    progress = Signal(object)  # station.provisioning.Progress
    scanned = Signal(list)  # list[SetupTarget]
    _done = Signal(object)  # (signal name, result): a radio task ended (internal)
    jobsLoaded = Signal(list)  # list[JobRow]
    finished = Signal(object)  # RunSummary
    failed = Signal(str)  # an unexpected problem, in words
    runningChanged = Signal(bool)
    busyChanged = Signal(bool)  # a scan or a run of this worker is in the radio's queue

    def __init__(
        self,
        station: Station,
        bridge: ConfirmBridge | None = None,
        parent: QObject | None = None,
        *,
        route: Callable[[Home], Route] | None = None,
    ) -> None:
        """`route(home)` (called in the worker thread at the start of each run): where
        that home's devices report (station.followers.Route); it raises StationError
        when that broker cannot take devices, and the run does not start."""
        super().__init__(parent)
        self.station = station
        self.bridge = bridge
        self.route = route
        self.queue = BulkQueue(station, self._on_progress)
        self.radio = radio_of(station.wifi)
        self._radio_job: Future[Any] | None = None
        self._side = _pool()
        self._running = False
        self._busy = False
        self._closed = False  # after shutdown(): no new work
        self._done.connect(self._on_done)  # queued: emitted by the pool thread

    # Called in the worker thread by the provisioner.
    def _on_progress(self, p: Progress) -> None:
        self._emit("progress", p)

    def is_running(self) -> bool:
        return self._running

    def is_busy(self) -> bool:
        return self._busy

    def _set_busy(self, busy: bool, running: bool = False) -> None:
        if busy != self._busy:
            self._busy = busy
            self.busyChanged.emit(busy)
        if running != self._running:
            self._running = running
            self.runningChanged.emit(running)

    def _radio_task(self, fn: Callable[[], Any], signal: str, default: Any, label: str) -> bool:
        """Queue `fn` with the radio's owner; its result is emitted as `signal` once idle.
        While another user holds the radio (a wizard going home) it waits its turn."""
        if self._busy or self._closed:
            return False  # the GUI disables the buttons, this is the backstop
        self._set_busy(True, signal == "finished")

        def body() -> Any:
            try:
                return fn()
            except Exception as exc:  # a crash must reach the installer, not vanish
                log.exception("provisioning worker failed")
                self._emit("failed", str(exc) or type(exc).__name__)
                return default

        def done(job: Future[Any]) -> None:
            # After the radio let go of the job, so a slot sees the radio free.
            result = default if job.cancelled() or job.exception() else job.result()
            try:
                self._done.emit((signal, result))
            except RuntimeError:  # the tab was deleted: nobody to tell
                log.debug("dropped %s: its receiver is gone", signal)

        try:
            self._radio_job = self.radio.submit(body, label)
        except Exception as exc:  # the radio is closed: the station is stopping
            self._set_busy(False, False)
            self.failed.emit(str(exc))
            return False
        self._radio_job.add_done_callback(done)
        return True

    def _side_task(self, fn: Callable[[], None]) -> None:
        if self._closed:
            return

        def body() -> None:
            try:
                fn()
            except Exception as exc:
                log.exception("provisioning worker failed")
                self._emit("failed", str(exc) or type(exc).__name__)

        self._side.start(body)

    def _on_done(self, outcome: tuple[str, Any]) -> None:
        # The result only once idle again, so a slot may start the next scan or run.
        self._set_busy(False, False)
        signal, result = outcome
        getattr(self, signal).emit(result)

    # -- work ------------------------------------------------------------------------

    def scan(self) -> bool:
        return self._radio_task(self.queue.scan, "scanned", [], "scanning for devices")

    def load(self, also: list[str] | tuple[str, ...] = ()) -> None:
        also = tuple(also)
        self._side_task(lambda: self._emit("jobsLoaded", job_rows(self.queue, also)))

    def run(
        self,
        home: Home,
        password: str,
        add: list[SetupTarget] | None = None,
        names: dict[str, str] | None = None,
        shown: list[str] | tuple[str, ...] = (),
        retry: list[str] | tuple[str, ...] = (),
    ) -> bool:
        """Put `retry` back in the queue, step 1 for `add`, then every open job.

        Returns False if the radio is busy (a scan or a run).
        """
        shown, retry = tuple(shown), tuple(retry)

        def body() -> RunSummary:
            try:
                for pid in retry:
                    self.queue.retry(pid)
                if self.route is not None:
                    self._use(self.route(home), home)
                if retry:
                    self._emit("jobsLoaded", job_rows(self.queue, (*shown, *retry)))
                if add:
                    added = self.queue.add(list(add), home, names)
                    self._emit(
                        "jobsLoaded",
                        job_rows(self.queue, (*shown, *[j.provisioning_id for j in added])),
                    )
                return self.queue.run(home, password)
            except ProvisioningError as exc:  # step 1 failed: the registry is unreachable
                self._emit("failed", str(exc))
                return RunSummary()
            except StationError as exc:  # the home's broker cannot take devices
                self._emit("failed", str(exc))
                return RunSummary()

        return self._radio_task(body, "finished", RunSummary(), "provisioning batch")

    def _use(self, route: Route, home: Home) -> None:
        """Worker thread, before anything is registered: the batch's devices report
        where `route` says. The queue configures every open job with this home's WiFi
        and broker, so queued devices of a home with another broker stop it here."""
        others = sorted(
            {
                job_home.name
                for job in self.queue.jobs(TO_CONFIGURE)
                if (job_home := job.home or job.device.home) is not None
                and job_home.id != home.id
                and (job_home.broker_url or None) != (home.broker_url or None)
            }
        )
        if others:
            raise StationError(
                f"the queue holds devices of {', '.join(others)}, whose devices report to "
                f"another broker than {home.name}'s: select that home and provision them, "
                "or skip them, first"
            )
        use_route(self.station, route)

    # -- controls (GUI thread; the queue's own controls are thread-safe) -----------------

    def pause(self) -> None:
        self.queue.pause()

    def cancel(self) -> None:
        self.queue.cancel()
        if self.bridge is not None:
            self.bridge.abort()  # a pending "connect to the device" question: no

    def skip(self, pid: str, shown: list[str] | tuple[str, ...] = ()) -> None:
        shown = tuple(shown)

        def body() -> None:
            self.queue.skip(pid)
            self._emit("jobsLoaded", job_rows(self.queue, (*shown, pid)))

        self._side_task(body)

    def retry(self, pid: str, shown: list[str] | tuple[str, ...] = ()) -> None:
        shown = tuple(shown)

        def body() -> None:
            self.queue.retry(pid)
            self._emit("jobsLoaded", job_rows(self.queue, (*shown, pid)))

        self._side_task(body)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel, and wait (blocking: only at close) until the laptop is home."""
        self._closed = True
        self.queue.cancel()
        if self.bridge is not None:
            self.bridge.close()
        job = self._radio_job
        ok = job is None or not wait_futures([job], timeout).not_done
        return self._side.waitForDone(int(timeout * 1000)) and ok


# -- one device, step by step (the wizard) ----------------------------------------------------


class DeviceWorker(_Relay):
    """The seed's steps for one device, driven by the wizard's buttons.

    Steps 2 and 3 run as one task inside an Excursion, so the laptop goes home on every
    path: it joins the AP, reports `connected`, then waits for the home WiFi details
    from the Configure screen (`send_configuration`), as often as a wrong password
    needs, and goes home after the device restarts or on cancel.
    """

    progress = Signal(object)  # Progress
    scanned = Signal(list)  # list[SetupTarget]
    prepared = Signal(str, str)  # provisioning id, node name
    connected = Signal()
    deviceNetworks = Signal(object)  # list[HeardNetwork] the device hears, or None
    configureFailed = Signal(str)  # still on the device's network: fix and send again
    configured = Signal()  # restarted; the laptop is home again
    online = Signal(str)  # chip id
    onlineTimeout = Signal(str)
    failed = Signal(str)  # the flow stopped; what to do next
    busyChanged = Signal(bool)

    def __init__(
        self,
        station: Station,
        bridge: ConfirmBridge | None = None,
        parent: QObject | None = None,
        *,
        route: Callable[[Home], Route] | None = None,
    ) -> None:
        """`route(home)`: as QueueWorker's, called in the worker before step 1."""
        super().__init__(parent)
        self.station = station
        self.bridge = bridge
        self.route = route
        self.cancel_event = threading.Event()
        self.provisioner = Provisioner(
            station, lambda p: self._emit("progress", p), self.cancel_event
        )
        self.ticket: Ticket | None = None
        self.radio = radio_of(station.wifi)
        self._radio_jobs: list[Future[None]] = []
        self._pool = _pool()
        self._config_ready = threading.Event()
        self._config: tuple[str, str] | None = None
        self._busy = 0
        self._busy_lock = threading.Lock()

    def _task(self, fn: Callable[[], None], radio: str | None = None) -> None:
        """Run `fn` off the GUI thread: as a job of the radio's owner when it uses the
        WiFi (`radio` is its label), else in this worker's pool."""

        def body() -> None:
            try:
                fn()
            except Cancelled:
                log.info("single-device provisioning cancelled")
            except StationError as exc:  # a step failed, the home's broker cannot take it
                self._emit("failed", str(exc))
            except Exception as exc:
                log.exception("single-device provisioning failed")
                self._emit("failed", str(exc) or type(exc).__name__)
            finally:
                self._mark(-1)

        self._mark(+1)  # busy from now: a radio job may wait behind a batch
        if radio is None:
            self._pool.start(body)
            return
        try:
            job = self.radio.submit(body, radio)
        except Exception as exc:  # the radio is closed: the station is stopping
            self._mark(-1)
            self.failed.emit(str(exc))
            return
        self._radio_jobs = [j for j in self._radio_jobs if not j.done()] + [job]

    def _mark(self, delta: int) -> None:
        with self._busy_lock:
            before = self._busy > 0
            self._busy += delta
            after = self._busy > 0
        if before != after:
            self._emit("busyChanged", after)

    def is_busy(self) -> bool:
        with self._busy_lock:
            return self._busy > 0

    def scan(self) -> None:
        queue = BulkQueue(self.station)
        self._task(lambda: self._emit("scanned", queue.scan()), radio="scanning for devices")

    def prepare(self, target: SetupTarget, home: Home | None, name: str = "") -> None:
        """Step 1 (20 -> 40 %)."""

        def body() -> None:
            if self.route is not None and home is not None:
                use_route(self.station, self.route(home))  # StationError: not touched
            self.ticket = self.provisioner.prepare(target, home, name)
            self._emit("prepared", self.ticket.pid, self.ticket.device.node_name)

        self._task(body)

    def connect_and_configure(self) -> None:
        """Steps 2-3: join, then wait for `send_configuration` (40 -> 80 %)."""
        ticket = self.ticket
        assert ticket is not None, "prepare() first"
        s = self.station
        self._config_ready.clear()

        def body() -> None:
            with Excursion(
                s.wifi,
                s.journal,
                cancel=self.cancel_event,
                return_timeout=s.settings.wifi_connect_timeout_s,
            ) as trip:
                link = self.provisioner.connect(trip, ticket)
                # Step 3 offers the networks the device itself hears (GET /api/scan).
                self._emit("deviceNetworks", self._device_networks(link, ticket))
                self._emit("connected")
                while True:
                    self._wait_config()
                    ssid, password = self._config or ("", "")
                    try:
                        self.provisioner.send_configuration(ticket, link, ssid, password)
                        break
                    except ProvisioningError as exc:
                        # Still on the device's network, device in setup mode: let the
                        # person correct the details and send again.
                        self._emit("configureFailed", str(exc))
            # Back home (the manual backend asked the person to reconnect).
            self._emit("configured")

        # One radio job from the join to the return home: a closed wizard's worker still
        # holds the radio until the laptop is home.
        self._task(body, radio=f"single device ({ticket.target.ssid})")

    def _device_networks(self, link: Link, ticket: Ticket) -> list[HeardNetwork] | None:
        """The device's own scan, or None if it cannot tell (the flow goes on)."""
        try:
            return self.station.client(link, ticket.target.ssid).scan()
        except DeviceError as exc:
            log.info("the device's network scan failed: %s", exc)
            return None

    def _wait_config(self) -> None:
        while not self._config_ready.wait(0.1):
            if self.cancel_event.is_set():
                raise Cancelled("Provisioning cancelled.")
        self._config_ready.clear()

    def send_configuration(self, ssid: str, password: str) -> None:
        """GUI thread: the Configure screen's "Send Configuration to Device"."""
        self._config = (ssid, password)
        self._config_ready.set()

    def check_online(self, timeout: float | None = None) -> None:
        """Step 4: wait for the device's first `online` (80 -> 100 %); may be repeated."""
        ticket = self.ticket
        assert ticket is not None

        def body() -> None:
            self.cancel_event.clear()
            result = self.provisioner.wait_online([ticket], timeout=timeout)
            if result.get(ticket.pid):
                device = self.station.registry.device(ticket.device.node_name)
                self._emit("online", device.chip_id or "")
            else:
                job = self.station.registry.job(ticket.pid)
                self._emit("onlineTimeout", (job.error if job else None) or "not online yet")

        self._task(body)

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.bridge is not None:
            self.bridge.abort()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel and wait for the laptop to be home (the bridge may be shared: only
        its open question is refused)."""
        self.cancel()
        ok = not wait_futures(self._radio_jobs, timeout).not_done
        return self._pool.waitForDone(int(timeout * 1000)) and ok


__all__ = [
    "ConfirmBridge",
    "DeviceWorker",
    "JobRow",
    "QueueWorker",
    "job_rows",
]
