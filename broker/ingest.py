"""Registry ingest: a thread that writes the broker's observations in batches.

The broker loop must never wait on the database (one slow commit would delay
every client), so it only appends to a deque: `deque.append` is atomic under the
GIL and takes no lock, so the hot path costs no thread hand-off per message. This
thread wakes every `flush_interval` seconds, parses and applies everything queued
in one transaction, and then tells the listeners (e.g. the GUI bridge) what
changed, so a listener that reads the registry always finds what it was told about.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from station.registry.db import write_transaction
from station.registry.tracking import DeviceUpdate, Observation, Tracker, parse_message

log = logging.getLogger(__name__)

Listener = Callable[[DeviceUpdate], None]
_EPOCH = dt.datetime(1970, 1, 1)


@dataclass
class _Call:
    """Work for the writer thread, run in order with the observations around it."""

    fn: Callable[[], list[DeviceUpdate]]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


def _parse(item: Observation | tuple[str, bytes, float]) -> Observation | None:
    if isinstance(item, Observation):
        return item
    topic, payload, ts = item
    return parse_message(topic, payload, _EPOCH + dt.timedelta(seconds=ts))


class IngestWriter:
    def __init__(
        self, db, tracker: Tracker, flush_interval: float = 0.05, max_batch: int = 5000
    ) -> None:
        self.db = db
        self.tracker = tracker
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._queue: deque[Observation | tuple[str, bytes, float] | _Call] = deque()
        self._listeners: list[Listener] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.batches = 0
        self.errors = 0

    # -- called from the broker loop: O(1), never blocks -------------------------------

    def put(self, obs: Observation) -> None:
        self._queue.append(obs)

    def put_message(self, topic: str, payload: bytes, ts: float) -> None:
        """A routed MQTT message, parsed later in this thread."""
        self._queue.append((topic, payload, ts))

    # -- listeners and lifecycle ---------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="registry-ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        self.db.connect(reuse_if_open=True)
        try:
            while True:
                stopping = self._stop.wait(self.flush_interval)
                while self._queue:
                    batch: list[Observation | tuple[str, bytes, float]] = []
                    while self._queue and len(batch) < self.max_batch:
                        item = self._queue[0]
                        if isinstance(item, _Call):
                            if batch:
                                break  # write what came before it first
                            self._queue.popleft()
                            self._run_call(item)
                            continue
                        self._queue.popleft()
                        batch.append(item)
                    if batch:
                        self._write(batch)
                if stopping:
                    return
        finally:
            # A shared (":memory:") connection belongs to the opener, not to this thread.
            if self.db.thread_safe and not self.db.is_closed():
                self.db.close()

    def run_in_writer(self, fn: Callable[[], list[DeviceUpdate]], timeout: float = 10.0) -> None:
        """Run `fn` in the writer thread after everything queued before it, tell the
        listeners the updates it returns, and return once that is done (its exception
        is re-raised here). The thread must be running."""
        call = _Call(fn)
        self._queue.append(call)
        if not call.done.wait(timeout):
            raise TimeoutError(f"the registry writer did not run the call within {timeout} s")
        if call.error is not None:
            raise call.error

    def notify(self, updates: list[DeviceUpdate]) -> None:
        """Tell the listeners about changes written elsewhere (in the caller's thread)."""
        for update in updates:
            for listener in list(self._listeners):
                try:
                    listener(update)
                except Exception:
                    log.exception("device listener failed")

    def _run_call(self, call: _Call) -> None:
        try:
            self.notify(call.fn())
        except BaseException as exc:
            call.error = exc
        finally:
            call.done.set()

    def _write(self, batch: list) -> None:
        updates: list[DeviceUpdate] = []
        try:
            parsed = [obs for obs in map(_parse, batch) if obs is not None]
            with write_transaction(self.db):
                updates = self.tracker.apply(parsed)
            self.batches += 1
        except Exception:
            # Keep the broker's view alive; the registry catches up with the next
            # message of each device (state and status are repeated).
            self.errors += 1
            self.tracker.forget()
            log.exception("registry ingest failed for a batch of %d", len(batch))
        self.notify(updates)
