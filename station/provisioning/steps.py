"""The seed's five steps, their progress figures and the words shown for them."""

from __future__ import annotations

# The job's status and step words belong to the registry (their writer); re-exported here.
from station.registry.status import OPEN, TO_CONFIGURE, Status, Step

__all__ = ["OPEN", "PROGRESS", "TITLES", "TO_CONFIGURE", "Status", "Step"]


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
