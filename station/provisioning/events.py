"""Progress reports the GUI and CLI turn into progress bars (no Qt here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from station.provisioning.steps import Status, Step


@dataclass(frozen=True)
class Progress:
    provisioning_id: str
    node_name: str
    ap_ssid: str | None
    step: Step
    progress: int  # 0-100, the seed's figures
    status: Status
    message: str  # what is happening, in words
    error: str | None = None  # what went wrong and what to do next


Listener = Callable[[Progress], None]
