"""The bulk queue: many devices, one radio, and a registry that survives crashes.

Jobs live in the registry (ProvisioningJob, ordered by queue_position), so a crash
or restart loses nothing: `run()` picks up every open job. Scheduling: configure up
to `batch_size` devices hopping from AP to AP (and no longer than `max_away_s`
after the first of them restarted), go home once, then confirm each of them on the
broker as it appears. A job is never registered twice for the same
setup AP, and a device already told to restart is only waited for, never
configured again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from station.provisioning.events import Listener
from station.provisioning.flow import (
    Provisioner,
    ProvisioningError,
    SetupTarget,
    Station,
    Ticket,
    is_setup_ap,
)
from station.registry import Device, Home, ProvisioningJob
from station.registry.models import utcnow
from station.registry.status import OPEN, TO_CONFIGURE, Status, Step
from station.wifi.errors import Cancelled
from station.wifi.guard import Excursion

log = logging.getLogger(__name__)

# Another station's job touched this recently is its work in progress (shared registry).
BUSY_ELSEWHERE_S = 120.0


@dataclass
class RunSummary:
    done: list[str] = field(default_factory=list)  # provisioning ids
    failed: list[str] = field(default_factory=list)
    cancelled: bool = False
    paused: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.cancelled and not self.paused


class BulkQueue:
    def __init__(self, station: Station, listener: Listener | None = None) -> None:
        self.station = station
        self.cancel_event = threading.Event()
        self.pause_event = threading.Event()
        self.provisioner = Provisioner(station, listener, self.cancel_event)
        self._tickets: dict[str, Ticket] = {}

    # -- building the queue ----------------------------------------------------------

    def scan(self) -> list[SetupTarget]:
        """Setup APs in range, strongest first, one entry per BSSID."""
        prefix = self.station.settings.setup_ssid_prefix
        seen: dict[str, SetupTarget] = {}
        for net in self.station.wifi.scan():
            if not net.ssid or not is_setup_ap(net.ssid, prefix):
                continue
            key = net.bssid or net.ssid
            if key not in seen:
                seen[key] = SetupTarget(net.ssid, net.bssid, net.signal_dbm)
        return sorted(seen.values(), key=lambda t: -(t.signal_dbm or -100))

    def add(
        self, targets: list[SetupTarget], home: Home | None, names: dict[str, str] | None = None
    ) -> list[ProvisioningJob]:
        """Step 1 for each target; returns its job.

        - A target with an open job is not added again. If that job has been `waiting`
          since an earlier run (see `_fell_back`), the device is back in setup mode,
          having given up on the broker: it is configured again, else only waited for.
        - A target that belongs to a registered device (chip id suffix, or the BSSID/SSID
          of one of its jobs) reuses that device: same node name and topic prefix, a
          fresh token, its job reopened or a new one (`Registry.reprovision`).
        - Anything else is registered as a new device.
        - On a registry several stations share, another station's open job for the
          target is taken over (its installer left it), unless that station is working
          on it now: then the target is left out, with a warning.
        """
        jobs = []
        registry = self.station.registry
        for target in targets:
            existing = registry.open_job_for_ap(target.ssid, target.bssid)
            if existing is not None and not self._ours(existing):
                if self._busy_elsewhere(existing):
                    log.warning(
                        "%s is being provisioned by station %s right now: not added here",
                        target.ssid,
                        existing.station,
                    )
                    continue
                registry.take_over(existing)
            if existing is not None:
                if self._fell_back(existing):
                    log.info(
                        "%s was waiting for %s and is in setup mode again: configuring it again",
                        target.ssid,
                        existing.device.node_name,
                    )
                    registry.update_job(
                        existing,
                        status=Status.REGISTERED,
                        step=Step.PREPARE,
                        progress=40,
                        error=None,
                    )
                else:
                    log.info("%s is already queued as %s", target.ssid, existing.device.node_name)
                jobs.append(existing)
                continue
            device = registry.device_for_ap(target.ssid, target.bssid, target.chip_suffix)
            if device is not None:
                ticket = self.provisioner.reuse(device, target, home)
            else:
                name = (names or {}).get(target.ssid, "")
                ticket = self.provisioner.prepare(target, home, name)
                registry.update_job(ticket.job, queue_position=registry.next_queue_position())
            self._tickets[ticket.pid] = ticket
            jobs.append(ticket.job)
        return jobs

    def _ours(self, job: ProvisioningJob) -> bool:
        mine = self.station.registry.station_id
        return mine is None or job.station in (None, mine)

    @staticmethod
    def _busy_elsewhere(job: ProvisioningJob) -> bool:
        """Another station's job it is running now (configuring, so touched within
        BUSY_ELSEWHERE_S): two stations configuring one device would give it two
        tokens. A job it left (waiting, or stale after its laptop went) is taken over."""
        if job.status not in (Status.RUNNING, Status.REGISTERED, Status.QUEUED):
            return False
        return (utcnow() - job.updated_at).total_seconds() < BUSY_ELSEWHERE_S

    def _fell_back(self, job: ProvisioningJob) -> bool:
        """A `waiting` job whose setup AP is in a scan: has its device given up on the
        broker and gone back to setup mode? Only if it waited in an earlier run (no
        ticket here) and for at least `max_away_s`: devices fall back after about 60 s
        (`max_away_s` stays below that), while a just-restarted device's AP can linger
        in a scan for a moment (and in an OS's scan cache for longer)."""
        if job.status != Status.WAITING or job.provisioning_id in self._tickets:
            return False
        waited = (utcnow() - job.updated_at).total_seconds()
        return waited >= self.station.settings.max_away_s

    def jobs(self, statuses: tuple[Status, ...] = OPEN) -> list[ProvisioningJob]:
        return self.station.registry.jobs(statuses)

    def reprovision(
        self, device: Device, home: Home | None, timeout: float, poll: float = 1.0
    ) -> tuple[ProvisioningJob, SetupTarget | None]:
        """Open a job that configures `device` again and wait for its setup AP.

        A running device shows no setup AP: it must be put in setup mode first (factory
        reset), so scans repeat for up to `timeout` seconds (or until cancelled). Found,
        the AP is added to the job and `run()` configures it; not found, the job fails
        with what to do.
        """
        registry = self.station.registry
        job = registry.reprovision(device, home=home)
        target = self.wait_for_setup_ap(device, timeout, poll)
        if target is None:
            registry.update_job(
                job,
                status=Status.FAILED,
                step=Step.CONNECT,
                error=(
                    "stopped waiting for its setup network (cancelled)"
                    if self.cancel_event.is_set()
                    else f"its setup network did not appear within {timeout:.0f} s. Put "
                    "the device in setup mode (factory reset: hold BOOT for 5 s while "
                    "powering it on), then re-provision it again."
                ),
            )
            return job, None
        self.add([target], home)
        return registry.job(job.provisioning_id) or job, target

    def wait_for_setup_ap(
        self, device: Device, timeout: float, poll: float = 1.0
    ) -> SetupTarget | None:
        """Scan until a setup AP that belongs to `device` is in range (None: timeout or
        cancel)."""
        registry = self.station.registry
        deadline = time.monotonic() + timeout
        while True:
            for target in self.scan():
                found = registry.device_for_ap(target.ssid, target.bssid, target.chip_suffix)
                if found is not None and found.id == device.id:
                    return target
            if self.cancel_event.is_set() or time.monotonic() >= deadline:
                return None
            self.cancel_event.wait(min(poll, max(0.0, deadline - time.monotonic())))

    # -- controls (thread-safe: the GUI calls them while run() works) ---------------------

    def pause(self) -> None:
        """Finish the device in hand, go home, wait for the configured ones, stop."""
        self.pause_event.set()

    def cancel(self) -> None:
        """Stop now: the WiFi step in progress is abandoned and the laptop goes home."""
        self.cancel_event.set()

    def skip(self, provisioning_id: str) -> None:
        job = self.station.registry.job(provisioning_id)
        if job is not None and job.status in (*TO_CONFIGURE, Status.FAILED):
            self.station.registry.update_job(job, status=Status.SKIPPED)

    def retry(self, provisioning_id: str) -> None:
        """Put a failed, skipped or cancelled job back in the queue."""
        job = self.station.registry.job(provisioning_id)
        if job is None or job.is_provisioned:
            return
        if job.status in (Status.FAILED, Status.SKIPPED, Status.CANCELLED):
            self._tickets.pop(provisioning_id, None)  # a fresh token when configured again
            self.station.registry.update_job(
                job, status=Status.REGISTERED, step=Step.PREPARE, progress=40, error=None
            )

    # -- running -----------------------------------------------------------------------

    def _ticket(self, job: ProvisioningJob) -> Ticket:
        ticket = self._tickets.get(job.provisioning_id)
        if ticket is None:
            ticket = self.provisioner.resume(job)
            self._tickets[job.provisioning_id] = ticket
        ticket.job = job
        return ticket

    def _to_configure(self, home: Home) -> list[ProvisioningJob]:
        """The jobs to configure with `home`'s WiFi: its own and those of no home. A
        job of another home stays queued for a run of that home (its devices must get
        their own home's network and broker, never this one's)."""
        return [j for j in self.jobs(TO_CONFIGURE) if j.home_id in (None, home.id)]

    def run(self, home: Home, home_password: str) -> RunSummary:
        """Provision every open job of `home` (and jobs of no home); returns when none is
        left, or the queue is paused or cancelled."""
        self.cancel_event.clear()
        self.pause_event.clear()
        summary = RunSummary()
        batch_size = self.station.settings.batch_size
        others = len(self.jobs(TO_CONFIGURE)) - len(self._to_configure(home))
        if others:
            log.warning(
                "%d queued device(s) belong to other homes: left queued for their own home's run",
                others,
            )
        while not (self.cancel_event.is_set() or self.pause_event.is_set()):
            todo = self._to_configure(home)[:batch_size]
            waiting = [self._ticket(j) for j in self.jobs((Status.WAITING,))]
            if not todo and not waiting:
                break
            if todo:
                waiting += self._configure_batch(todo, home, home_password)
            # Home again: the devices can reach the broker now.
            if waiting:
                for pid, ok in self.provisioner.wait_online(waiting).items():
                    (summary.done if ok else summary.failed).append(pid)
        summary.cancelled = self.cancel_event.is_set()
        summary.paused = self.pause_event.is_set() and not summary.cancelled
        if summary.cancelled:
            for job in self._to_configure(home):
                self.station.registry.update_job(
                    job, status=Status.CANCELLED, error="cancelled before it was configured"
                )
        summary.failed += [
            j.provisioning_id
            for j in self.jobs((Status.FAILED,))
            if j.provisioning_id not in summary.failed
        ]
        return summary

    def _configure_batch(
        self, jobs: list[ProvisioningJob], home: Home, home_password: str
    ) -> list[Ticket]:
        configured: list[Ticket] = []
        s = self.station
        spent: list[float] = []  # seconds each device of this trip took
        try:
            with Excursion(
                s.wifi,
                s.journal,
                cancel=self.cancel_event,
                return_timeout=s.settings.wifi_connect_timeout_s,
            ) as trip:
                for job in jobs:
                    if self.cancel_event.is_set() or self.pause_event.is_set():
                        break
                    if configured and spent:
                        # Go home before the first restarted device gives up on the
                        # broker (it cannot reach this laptop while we are away).
                        away = time.monotonic() - (configured[0].restarted_at or 0.0)
                        if away + sum(spent) / len(spent) > s.settings.max_away_s:
                            break
                    started = time.monotonic()
                    ticket = self._ticket(job)
                    try:
                        self.provisioner.configure(trip, ticket, home.wifi_ssid, home_password)
                    except ProvisioningError as exc:
                        log.warning("%s: %s", job.device.node_name, exc)
                        continue
                    finally:
                        spent.append(time.monotonic() - started)
                    configured.append(ticket)
        except Cancelled:
            # A cancel from below (the person declined the manual backend's question)
            # ends the run as the Cancel button does; without it, run() asked again.
            self.cancel_event.set()
            log.info("provisioning cancelled; the laptop is back on its home network")
        return configured
