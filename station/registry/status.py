"""A provisioning job's status and step words: the registry writes them, so they live here.

`station.provisioning` re-exports `Status`, `Step` and `OPEN` for its callers.
"""

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
    REGISTERED = "registered"  # step 1 done: node name, topic and credentials allocated
    RUNNING = "running"
    WAITING = "waiting"  # configured and restarted: waiting for `online`
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# Statuses a queue still has work for (after a crash, these resume).
OPEN: tuple[Status, ...] = (Status.QUEUED, Status.REGISTERED, Status.RUNNING, Status.WAITING)
# Open jobs whose device has not been configured yet (the queue configures these).
TO_CONFIGURE: tuple[Status, ...] = (Status.QUEUED, Status.REGISTERED, Status.RUNNING)
