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

import peewee

from station.provisioning.events import Listener
from station.provisioning.flow import (
    Provisioner,
    ProvisioningError,
    SetupTarget,
    Station,
    Ticket,
    is_setup_ap,
)
from station.provisioning.steps import OPEN, Status, Step
from station.registry import Home, ProvisioningJob
from station.wifi.errors import Cancelled
from station.wifi.guard import Excursion

log = logging.getLogger(__name__)

TO_CONFIGURE = (Status.QUEUED, Status.REGISTERED, Status.RUNNING)


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
        """Step 1 for each new target; a target with an open job is not added again."""
        jobs = []
        position = self._next_position()
        for target in targets:
            existing = self._open_job_for(target)
            if existing is not None:
                log.info("%s is already queued as %s", target.ssid, existing.device.node_name)
                jobs.append(existing)
                continue
            ticket = self.provisioner.prepare(target, home, (names or {}).get(target.ssid, ""))
            self.station.registry.update_job(ticket.job, queue_position=position)
            position += 1
            self._tickets[ticket.pid] = ticket
            jobs.append(ticket.job)
        return jobs

    def _next_position(self) -> int:
        top = ProvisioningJob.select(peewee.fn.MAX(ProvisioningJob.queue_position)).scalar()
        return (top or 0) + 1

    def _open_job_for(self, target: SetupTarget) -> ProvisioningJob | None:
        query = ProvisioningJob.select().where(ProvisioningJob.status.in_([str(s) for s in OPEN]))
        if target.bssid:
            query = query.where(ProvisioningJob.ap_bssid == target.bssid)
        else:
            query = query.where(ProvisioningJob.ap_ssid == target.ssid)
        return query.first()

    def jobs(self, statuses: tuple[Status, ...] = OPEN) -> list[ProvisioningJob]:
        return list(
            ProvisioningJob.select()
            .where(ProvisioningJob.status.in_([str(s) for s in statuses]))
            .order_by(ProvisioningJob.queue_position, ProvisioningJob.id)
        )

    # -- controls (thread-safe: the GUI calls them while run() works) ---------------------

    def pause(self) -> None:
        """Finish the device in hand, go home, wait for the configured ones, stop."""
        self.pause_event.set()

    def cancel(self) -> None:
        """Stop now: the WiFi step in progress is abandoned and the laptop goes home."""
        self.cancel_event.set()

    def skip(self, provisioning_id: str) -> None:
        job = self.station.registry.job(provisioning_id)
        if job is not None and job.status in [str(s) for s in (*TO_CONFIGURE, Status.FAILED)]:
            self.station.registry.update_job(job, status=str(Status.SKIPPED))

    def retry(self, provisioning_id: str) -> None:
        """Put a failed, skipped or cancelled job back in the queue."""
        job = self.station.registry.job(provisioning_id)
        if job is None or job.is_provisioned:
            return
        if job.status in (Status.FAILED, Status.SKIPPED, Status.CANCELLED):
            self._tickets.pop(provisioning_id, None)  # a fresh token when configured again
            self.station.registry.update_job(
                job, status=str(Status.REGISTERED), step=str(Step.PREPARE), progress=40, error=None
            )

    # -- running -----------------------------------------------------------------------

    def _ticket(self, job: ProvisioningJob) -> Ticket:
        ticket = self._tickets.get(job.provisioning_id)
        if ticket is None or (ticket.token is None and job.status != Status.WAITING):
            ticket = self.provisioner.resume(job)
            self._tickets[job.provisioning_id] = ticket
        ticket.job = job
        return ticket

    def run(self, home: Home, home_password: str) -> RunSummary:
        """Provision every open job; returns when the queue is empty, paused or cancelled."""
        self.cancel_event.clear()
        self.pause_event.clear()
        summary = RunSummary()
        batch_size = self.station.settings.batch_size
        while not (self.cancel_event.is_set() or self.pause_event.is_set()):
            todo = self.jobs(TO_CONFIGURE)[:batch_size]
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
            for job in self.jobs(TO_CONFIGURE):
                self.station.registry.update_job(
                    job, status=str(Status.CANCELLED), error="cancelled before it was configured"
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
            log.info("provisioning cancelled; the laptop is back on its home network")
        return configured
