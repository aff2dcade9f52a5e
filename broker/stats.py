"""Counters the broker keeps for `$SYS` (broker/sys_topics.py).

Plain integers bumped on the broker's event loop (one thread), so no lock: a read from
another thread may be one message behind, which a monitor refreshing every few seconds
never notices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class BrokerStats:
    started: float = field(default_factory=time.monotonic)
    # PUBLISH packets taken from clients (before the ACL: what the broker received).
    received: int = 0
    # PUBLISH packets handed to subscribers (live, queued-session and retained replay).
    sent: int = 0

    @property
    def uptime_s(self) -> int:
        return int(time.monotonic() - self.started)
