"""A staged, confirmed rollout of one change (a firmware version, a configuration) to
a set of devices: a canary first, then the rest with a concurrency limit, only devices
that are online, with pause, resume and cancel. Qt-free: the CLI and the GUI drive it
(from a worker thread) and show `progress`.

A device counts as done only when it **confirms**: it reports over MQTT what the change
asked for (for a firmware, its `info` with the new version). Its own events move it
through the phases on the way (downloading, verifying, rebooting) or end it (rolled
back, failed, each with the device's reason). A canary that does not confirm stops the
rollout before any other device is touched; later, more than `max_failures` failures
stop it from starting more (those already updating finish: a device is never
interrupted halfway).

    rollout = Rollout(["esp32_dht11_001", ...], change, fleet, concurrency=4)
    fleet_listener = rollout.observe          # fed with each device's events and info
    result = rollout.run()                    # blocks until every device is final
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from station.errors import StationError

log = logging.getLogger(__name__)


class Phase(StrEnum):
    WAITING = "waiting"
    SENT = "sent"  # the command went out; nothing heard yet
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    REBOOTING = "rebooting"
    CONFIRMED = "confirmed"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
    SKIPPED = "skipped"  # offline when its turn came
    CANCELLED = "cancelled"  # never started: the rollout was stopped or cancelled
    ABANDONED = "not followed"  # under way when the station stopped listening (abandon())


FINAL = frozenset(
    {
        Phase.CONFIRMED,
        Phase.ROLLED_BACK,
        Phase.FAILED,
        Phase.SKIPPED,
        Phase.CANCELLED,
        Phase.ABANDONED,
    }
)
# What a device's event says (`{"event": <change.event>, "state": ...}`).
EVENT_PHASES = {
    "downloading": Phase.DOWNLOADING,
    "verifying": Phase.VERIFYING,
    "rebooting": Phase.REBOOTING,
    "rolled_back": Phase.ROLLED_BACK,
    "failed": Phase.FAILED,
}


class Change(Protocol):
    """What is rolled out."""

    @property
    def event(self) -> str:
        """The `event` name of the device's progress reports for it ("ota")."""
        ...

    def command(self, node: str) -> dict[str, Any]:
        """The device command that starts it on one device."""
        ...

    def confirmed_by(self, info: dict[str, Any]) -> bool:
        """Does this report of the device's (its `info`) show the change applied?"""
        ...


class Fleet(Protocol):
    """The devices as the station reaches them (the broker the home reports to)."""

    def is_online(self, node: str) -> bool: ...

    def send(self, node: str, command: dict[str, Any]) -> None: ...


@dataclass
class DeviceProgress:
    node: str
    phase: Phase = Phase.WAITING
    reason: str = ""
    canary: bool = False
    started: float | None = None  # monotonic time the command was sent
    finished: float | None = None
    # seconds from the command to each phase first heard (the benchmark's figures)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.phase in FINAL


@dataclass
class RolloutResult:
    devices: list[DeviceProgress]
    stopped: str  # why it stopped early ("" when it ran to the end)

    def count(self, phase: Phase) -> int:
        return sum(d.phase is phase for d in self.devices)

    @property
    def ok(self) -> bool:
        return not self.stopped and all(
            d.phase in (Phase.CONFIRMED, Phase.SKIPPED) for d in self.devices
        )


class Rollout:
    def __init__(
        self,
        nodes: Iterable[str],
        change: Change,
        fleet: Fleet,
        *,
        canary: int = 1,
        concurrency: int = 4,
        max_failures: int = 0,
        device_timeout_s: float = 300.0,
        on_progress: Callable[[DeviceProgress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_progress` is called at each change of a device's phase, with the
        rollout's lock held: keep it short (hand the update to a queue or a signal)."""
        if concurrency < 1 or canary < 0 or max_failures < 0:
            raise ValueError("concurrency must be at least 1; canary and max_failures 0 or more")
        self.change = change
        self.fleet = fleet
        self.canary = canary
        self.concurrency = concurrency
        self.max_failures = max_failures
        self.device_timeout_s = device_timeout_s
        self.on_progress = on_progress
        self.clock = clock
        self.devices = {n: DeviceProgress(n) for n in dict.fromkeys(nodes)}
        self._cond = threading.Condition()
        self._paused = False
        self._cancelled = False
        self.stopped = ""

    # -- control (any thread) ----------------------------------------------------------

    def pause(self) -> None:
        """Start no more devices until resume(); those updating carry on."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def cancel(self) -> None:
        """Start no more devices; those updating finish (never interrupted halfway)."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def abandon(self, reason: str) -> None:
        """Stop now (the station is closing): no more devices started, and those under
        way are no longer followed (phase ABANDONED with `reason`: each finishes or
        rolls back by itself, unconfirmed here), so run() returns at once."""
        with self._cond:
            self._cancelled = True
            for dev in self.devices.values():
                if dev.started is not None and not dev.final:
                    self._set(dev, Phase.ABANDONED, reason)
            self._cond.notify_all()

    # -- what devices report (the broker's thread) ------------------------------------------

    def observe(self, node: str, kind: str, doc: dict[str, Any]) -> None:
        """A device's `event` or `info` document."""
        with self._cond:
            dev = self.devices.get(node)
            if dev is None or dev.final or dev.started is None:
                return
            if kind == "info" and self.change.confirmed_by(doc):
                self._set(dev, Phase.CONFIRMED)
            elif kind == "event" and doc.get("event") == self.change.event:
                phase = EVENT_PHASES.get(str(doc.get("state")))
                if phase is not None:
                    self._set(dev, phase, str(doc.get("reason") or ""))
            self._cond.notify_all()

    # -- the run ------------------------------------------------------------------------

    def run(self) -> RolloutResult:
        order = list(self.devices.values())
        # The canaries are the first devices online now: an offline one is no test.
        canaries = [d for d in order if self.fleet.is_online(d.node)][: self.canary]
        for dev in canaries:
            dev.canary = True
        self._stage(canaries, self.canary or 1, canaries=True)
        failed = [d for d in canaries if d.phase not in (Phase.CONFIRMED, Phase.SKIPPED)]
        if failed and not self.stopped:
            first = failed[0]
            self.stopped = f"the canary {first.node} {first.phase}" + (
                f": {first.reason}" if first.reason else ""
            )
        if not self.stopped:
            self._stage([d for d in order if not d.canary], self.concurrency)
        with self._cond:
            for dev in order:
                if dev.phase is Phase.WAITING:
                    self._set(dev, Phase.CANCELLED, self.stopped or "rollout cancelled")
        return RolloutResult(order, self.stopped)

    def _stage(self, group: list[DeviceProgress], limit: int, canaries: bool = False) -> None:
        """Run `group`, at most `limit` at a time. Canaries are judged by run() once
        they are all final; later groups stop starting past max_failures."""
        waiting = list(group)
        with self._cond:
            while True:
                running = [d for d in group if d.started is not None and not d.final]
                self._time_out(running)
                running = [d for d in running if not d.final]
                if self._cancelled and not self.stopped:
                    self.stopped = "cancelled"
                failures = self._failures()
                if not canaries and failures > self.max_failures and not self.stopped:
                    devices = "device" if failures == 1 else "devices"
                    self.stopped = f"{failures} {devices} failed (allowed: {self.max_failures})"
                while waiting and len(running) < limit and not self.stopped and not self._paused:
                    dev = waiting.pop(0)
                    if not self._start(dev):
                        continue
                    running.append(dev)
                if not running and (not waiting or self.stopped):
                    return
                self._cond.wait(0.2)

    def _start(self, dev: DeviceProgress) -> bool:
        """Send the command (lock held); False if the device is not there to take it."""
        if not self.fleet.is_online(dev.node):
            self._set(dev, Phase.SKIPPED, "offline when its turn came")
            return False
        dev.started = self.clock()
        self._set(dev, Phase.SENT)
        try:
            self.fleet.send(dev.node, self.change.command(dev.node))
        except Exception as exc:  # the broker refused or is gone: this device failed
            log.warning("rollout: sending to %s failed: %s", dev.node, exc)
            self._set(dev, Phase.FAILED, f"the command could not be sent: {exc}")
        return True

    def _time_out(self, running: list[DeviceProgress]) -> None:
        now = self.clock()
        for dev in running:
            assert dev.started is not None
            if now - dev.started > self.device_timeout_s:
                self._set(
                    dev,
                    Phase.FAILED,
                    f"not confirmed within {self.device_timeout_s:g} s (last heard: {dev.phase})",
                )

    def _failures(self) -> int:
        return sum(d.phase in (Phase.FAILED, Phase.ROLLED_BACK) for d in self.devices.values())

    def _set(self, dev: DeviceProgress, phase: Phase, reason: str = "") -> None:
        dev.phase, dev.reason = phase, reason
        if dev.started is not None:
            dev.timings.setdefault(str(phase), round(self.clock() - dev.started, 3))
        if phase in FINAL:
            dev.finished = self.clock()
        log.info("rollout: %s %s%s", dev.node, phase, f" ({reason})" if reason else "")
        if self.on_progress is not None:
            self.on_progress(dev)


@dataclass(frozen=True)
class Stages:
    """How a rollout is staged: `canary` devices alone first, then `concurrency` at a
    time, stopping new starts past `max_failures`; a device silent for
    `device_timeout_s` after its command has failed."""

    canary: int = 1
    concurrency: int = 4
    max_failures: int = 0
    device_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.canary < 0 or self.max_failures < 0:
            raise StationError(
                "--concurrency must be at least 1; --canary and --max-failures 0 or more"
            )
        if self.device_timeout_s <= 0:
            raise StationError("--timeout must be more than 0 seconds")

    def rollout(
        self,
        nodes: Iterable[str],
        change: Change,
        fleet: Fleet,
        on_progress: Callable[[DeviceProgress], None] | None = None,
    ) -> Rollout:
        return Rollout(
            nodes,
            change,
            fleet,
            canary=self.canary,
            concurrency=self.concurrency,
            max_failures=self.max_failures,
            device_timeout_s=self.device_timeout_s,
            on_progress=on_progress,
        )


@dataclass(frozen=True)
class FirmwareChange:
    """A firmware version, from a bundle served at `url` (station.fleet.bundle_server)."""

    version: str
    url: str  # the manifest's URL
    digest: str  # the manifest's sha256
    event: str = "ota"

    def command(self, node: str) -> dict[str, Any]:
        return {"cmd": "ota", "url": self.url, "sha256": self.digest, "version": self.version}

    def confirmed_by(self, info: dict[str, Any]) -> bool:
        return info.get("firmware") == self.version
