"""Registry ingest: a thread that writes the broker's observations in batches.

The broker loop must never wait on the database (one slow commit would delay
every client), so it only appends to a queue. This thread drains the queue every
`flush_interval` seconds, applies the batch in one transaction, and then tells the
listeners (e.g. the GUI bridge) what changed, so a listener that reads the
registry always finds what it was told about.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from station.registry.tracking import DeviceUpdate, Observation, Tracker

log = logging.getLogger(__name__)

Listener = Callable[[DeviceUpdate], None]
_STOP = object()


class IngestWriter:
    def __init__(
        self, db, tracker: Tracker, flush_interval: float = 0.05, max_batch: int = 5000
    ) -> None:
        self.db = db
        self.tracker = tracker
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self.batches = 0
        self.observations = 0
        self.errors = 0

    # Called from the broker loop: must stay O(1) and never block.
    def put(self, obs: Observation) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(obs)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="registry-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until everything queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _run(self) -> None:
        self.db.connect(reuse_if_open=True)
        try:
            stopping = False
            while not stopping:
                batch: list[Observation] = []
                item = self._queue.get()
                deadline = time.monotonic() + self.flush_interval
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        batch.append(item)
                    if stopping or len(batch) >= self.max_batch:
                        break
                    try:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                if batch:
                    self._write(batch)
        finally:
            # A shared (":memory:") connection belongs to the opener, not to this thread.
            if self.db.thread_safe and not self.db.is_closed():
                self.db.close()

    def _write(self, batch: list[Observation]) -> None:
        updates: list[DeviceUpdate] = []
        try:
            with self.db.atomic():
                updates = self.tracker.apply(batch)
            self.batches += 1
            self.observations += len(batch)
        except Exception:
            # Keep the broker's view alive; the registry catches up with the next
            # message of each device (state and status are repeated).
            self.errors += 1
            self.tracker.forget()
            log.exception("registry ingest failed for a batch of %d", len(batch))
        for update in updates:
            for listener in list(self._listeners):
                try:
                    listener(update)
                except Exception:
                    log.exception("device listener failed")
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()
