"""The seed's five steps, their progress figures and the words shown for them."""

from __future__ import annotations

from enum import StrEnum


class Step(StrEnum):
    PREPARE = "prepare"  # 1: register, allocate node name/topic/credentials
    CONNECT = "connect"  # 2: join the device's setup AP
    CONFIGURE = "configure"  # 3: info, wifi (+ trial result), mqtt, restart
    RECONNECT = "reconnect"  # 4: back home, wait for `online` on the broker
    COMPLETE = "complete"  # 5


class Status(StrEnum):
    QUEUED = "queued"
    REGISTERED = "registered"  # step 1 done (the registry's word for it)
    RUNNING = "running"
    WAITING = "waiting"  # configured and restarted: waiting for `online`
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# (progress when the step starts, when it ends): the seed's table.
PROGRESS: dict[Step, tuple[int, int]] = {
    Step.PREPARE: (20, 40),
    Step.CONNECT: (40, 60),
    Step.CONFIGURE: (60, 80),
    Step.RECONNECT: (80, 100),
    Step.COMPLETE: (100, 100),
}

TITLES: dict[Step, str] = {
    Step.PREPARE: "Prepare device",
    Step.CONNECT: "Connect to device",
    Step.CONFIGURE: "Configure device",
    Step.RECONNECT: "Reconnect to home WiFi",
    Step.COMPLETE: "Complete",
}

# Statuses a queue still has work for (after a crash, these resume).
OPEN = (Status.QUEUED, Status.REGISTERED, Status.RUNNING, Status.WAITING)
