"""A small on-disk note "we left home for X; temporary profiles Y", so that a station that
crashed while away from home can, at its next start, delete the leftovers and go back.

One JSON file, replaced atomically (write to a temp file, fsync, rename), so a crash in the
middle of a write leaves either the old note or the new one, never half of one. It holds
no secret: network names, profile handles, the home network's description.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from station.wifi.base import HomeNetwork

log = logging.getLogger("station.wifi.journal")


@dataclass
class JournalEntry:
    backend: str
    home: HomeNetwork | None
    target: str = ""  # the SSID we are (or were trying to get) on
    profiles: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "backend": self.backend,
            "home": self.home.to_dict() if self.home else None,
            "target": self.target,
            "profiles": list(self.profiles),
            "started": self.started,
            "pid": self.pid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        home = data.get("home")
        return cls(
            backend=str(data["backend"]),
            home=HomeNetwork.from_dict(home) if home else None,
            target=str(data.get("target", "")),
            profiles=[str(p) for p in data.get("profiles", [])],
            started=float(data.get("started", 0.0)),
            pid=int(data.get("pid", 0)),
        )


class Journal:
    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def read(self) -> JournalEntry | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return JournalEntry.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            # Only outside damage can do this (writes are atomic). Recovery still sweeps
            # temporary profiles by name, so nothing of ours is lost by ignoring it.
            log.warning("ignoring unreadable WiFi journal %s: %s", self.path, exc)
            return None

    def write(self, entry: JournalEntry) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".wifi-journal-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry.to_dict(), f, ensure_ascii=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
