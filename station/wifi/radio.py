"""One owner for the radio: a serial job queue per WiFi adapter.

A backend is not thread-safe, and the radio is one shared resource: a scan in the middle of a
batch's hop from device to device, or a status read between a join's commands, breaks the
join or reads the other caller's reply (pywifi shares one control socket per interface).
So every caller goes through the adapter's `Radio`, in the spirit of vorta's
`borg/jobs_manager.py` (one queue per shared resource, one worker per queue):

    radio = Radio(backend)                       # or Radios().own(backend): one per adapter
    radio.submit(lambda: queue.run(home, pw), "provisioning batch")   # -> Future
    with radio.hold("single device") as wifi:    # the calling thread owns the radio
        with Excursion(wifi, journal) as trip: ...
    radio.wifi.scan()                            # any thread: queued, runs when it is its turn
    radio.state()                                # last network, what holds the radio, last scan

* `radio.wifi` is a WifiBackend whose every method goes through the queue, so code that
  takes a backend (station.provisioning, Excursion, recover) is serialised unchanged.
  Calls from the thread that owns the radio now (a submitted job, a hold) run inline.
* A thread that joins a network through `radio.wifi` without owning the radio takes it
  until that thread's `return_home`: nothing else touches the adapter while it is away
  from home (an Excursion spanning a batch holds it for the whole trip).
* `state()` never calls the OS and never waits: it is what the owner last learnt (its
  own calls' results) plus what holds the radio now. `refresh()` queues a `current()`
  only while the radio is idle, so a status bar never adds an OS call to a batch.
* Per adapter: each `Radio` has its own queue and worker thread, so two adapters can run
  two trips at once; `Radios` keeps one per adapter name.

No Qt here: the GUI turns Futures into signals itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from station.wifi.base import (
    Availability,
    Deadline,
    HomeNetwork,
    JoinRequest,
    Link,
    Network,
    Probe,
    ProfileCallback,
    ScanResult,
    WifiBackend,
)
from station.wifi.errors import WifiUnavailable
from station.wifi.guard import RecoveryReport, recover
from station.wifi.journal import Journal

log = logging.getLogger("station.wifi.radio")

T = TypeVar("T")

# A holder thread that died without letting go (a bug, or a bare connect in a thread that
# ended) is noticed within this many seconds, so the radio is not lost for the session.
_LIVENESS_S = 0.5


@dataclass(frozen=True)
class RadioState:
    """What the owner knows about its adapter, without asking the OS."""

    adapter: str
    backend: str
    network: Network | None = None  # meaningful only when network_known
    network_known: bool = False
    network_at: float | None = None  # time.monotonic() of the call that told us
    busy: str | None = None  # label of what holds the radio now (None: idle or a quiet read)
    queued: tuple[str, ...] = ()  # labels waiting their turn
    away: bool = False  # joined a network and not yet back home
    scan: tuple[ScanResult, ...] = ()
    scan_at: float | None = None
    error: str | None = None  # the last call's failure, in words

    def network_text(self) -> str:
        if not self.network_known:
            return f"unknown ({self.error})" if self.error else "…"
        if self.network is None:
            return "no network"
        return self.network.ssid or "hidden network"

    def summary(self) -> str:
        """For a status bar: 'Home Net', 'esp32-dht11-Setup-12AB34 (busy: provisioning batch)'."""
        text = self.network_text()
        return f"{text} (busy: {self.busy})" if self.busy else text


@dataclass
class _Job:
    fn: Callable[[], Any]
    label: str
    future: Future[Any]
    quiet: bool = False  # a status read: not shown as "busy"
    lent: bool = False  # the job that lends the radio to a thread (the lease says who)


class _Lease:
    """The radio lent to one thread: the worker waits inside the lease's job until it ends."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.thread = threading.current_thread()
        self.granted = threading.Event()
        self.released = threading.Event()
        self.depth = 1
        self.away = False  # taken by a join; ends at that thread's return_home


class Radio:
    """The serial job queue of one WiFi adapter; see the module docstring."""

    def __init__(self, backend: WifiBackend, adapter: str | None = None) -> None:
        self.backend = backend  # the raw backend: use only through this Radio
        self.adapter = adapter or adapter_of(backend)
        self.wifi: OwnedBackend = _owned_class(backend)(self)
        self._cond = threading.Condition()
        self._jobs: deque[_Job] = deque()
        self._owner: int | None = None  # thread ident that may call the backend now
        self._lease: _Lease | None = None
        self._running: _Job | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self._state = RadioState(adapter=self.adapter, backend=backend.name)

    # -- the queue ---------------------------------------------------------------------

    def submit(self, fn: Callable[[], T], label: str, *, quiet: bool = False) -> Future[T]:
        """Run `fn` on the radio's thread when its turn comes; calls it makes through
        `self.wifi` run inline. From the thread that owns the radio now, `fn` runs at once
        (queueing behind oneself would never finish)."""
        if self.owns():
            return _done_future(fn)
        future: Future[T] = Future()
        self._enqueue(_Job(fn, label, future, quiet))
        return future

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            if self._closed:
                raise WifiUnavailable("The station is stopping: no more WiFi work.")
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name=f"radio-{self.adapter}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def call(self, fn: Callable[[], T], label: str) -> T:
        """Run `fn` as the radio's owner, in this thread, and return its result."""
        with self.hold(label):
            return fn()

    @contextlib.contextmanager
    def hold(self, label: str) -> Iterator[OwnedBackend]:
        """Own the radio in this thread for the block (waits for its turn; nests).
        Never from the GUI thread: it waits for whatever holds the radio now."""
        lease = self._acquire(label)
        try:
            yield self.wifi
        finally:
            self._release(lease)

    def owns(self) -> bool:
        """Does the calling thread own the radio now?"""
        return self._owner == threading.get_ident()

    def _acquire(self, label: str) -> _Lease:
        with self._cond:
            if self.owns() and self._lease is not None:
                self._lease.depth += 1
                return self._lease
            if self.owns():  # inside a submitted job: the worker thread already owns it
                return _Lease(label)
        lease = _Lease(label)

        def lent() -> None:
            with self._cond:
                self._owner = lease.thread.ident
                self._lease = lease
            lease.granted.set()
            while not lease.released.wait(_LIVENESS_S):
                if not lease.thread.is_alive():
                    log.error("%s ended holding the radio (%s)", lease.thread.name, label)
                    break
            with self._cond:
                if self._lease is lease:  # the holder died without letting go
                    self._lease, self._owner = None, None

        future: Future[None] = Future()
        self._enqueue(_Job(lent, label, future, lent=True))
        try:
            while not lease.granted.wait(0.1):
                if future.done():
                    future.result()  # the radio closed under us: raise that
        except BaseException:
            lease.released.set()  # Ctrl-C while waiting: give up the turn
            future.cancel()
            raise
        return lease

    def _release(self, lease: _Lease) -> None:
        with self._cond:
            if self._lease is not lease:
                return  # an inline lease inside a submitted job: nothing was lent
            lease.depth -= 1
            if lease.depth > 0 or lease.away:
                return
            self._lease, self._owner = None, None  # this thread now queues like any other
        lease.released.set()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if not self._jobs:
                    return
                job = self._jobs.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue
                self._running = job
                self._owner = threading.get_ident()
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn()
            except BaseException as exc:
                error = exc
            with self._cond:
                self._running = None
                self._owner = None
                self._cond.notify_all()
            # Resolved only now: whoever the future wakes finds the radio free of this job.
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)

    # -- away from home: a join takes the radio until its return home -------------------

    def _begin_away(self, label: str) -> None:
        if self.owns():  # a submitted job, or a hold: mark it so it outlasts its block
            with self._cond:
                if self._lease is not None:
                    self._lease.away = True
            return
        lease = self._acquire(label)
        with self._cond:
            lease.away, lease.depth = True, 0  # only the return home ends this lease

    def _end_away(self) -> None:
        with self._cond:
            lease = self._lease
            if lease is None or not self.owns() or not lease.away:
                return
            lease.away = False
            if lease.depth > 0:
                return
            self._lease, self._owner = None, None
        lease.released.set()

    # -- state -------------------------------------------------------------------------

    def state(self) -> RadioState:
        """A snapshot; never calls the OS, never waits for the radio."""
        with self._cond:
            running, lease = self._running, self._lease
            busy = lease.label if lease else None
            if busy is None and running is not None and not (running.quiet or running.lent):
                busy = running.label
            queued = tuple(j.label for j in self._jobs if not j.quiet)
            return replace(self._state, busy=busy, queued=queued)

    def is_idle(self) -> bool:
        with self._cond:
            return self._idle()

    def _idle(self) -> bool:
        # A lent job whose lease ended is only on its way out.
        running = self._running
        return not self._jobs and self._lease is None and (running is None or running.lent)

    def _learn(self, **changes: Any) -> None:
        with self._cond:
            self._state = replace(self._state, **changes)

    def refresh(self, max_age: float = 2.0) -> Future[Network | None] | None:
        """Read the current network, but only while the radio is idle and what we know is
        older than `max_age` s; otherwise None (the state is as good as it gets: during a
        batch the owner's own joins keep it up to date). Never blocks."""
        with self._cond:
            if self._closed or not self._idle():
                return None
            at = self._state.network_at
            if self._state.network_known and at is not None and time.monotonic() - at < max_age:
                return None
        try:
            future = self.submit(self.wifi.current, "reading the network", quiet=True)
        except WifiUnavailable:  # closed meanwhile
            return None
        future.add_done_callback(_swallow)  # the failure is in state().error
        return future

    def recover(self, journal: Journal, *, home: HomeNetwork | None = None) -> RecoveryReport:
        """station.wifi.recover as one job: nothing interleaves with the repair."""
        with self.hold("recovering from the last run"):
            return recover(self.wifi, journal, home=home)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Refuse new work, let queued work finish (a trip ends at home); True if done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()


class Radios:
    """One Radio per adapter, as vorta's JobsManager keeps one queue per repository."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_adapter: dict[str, Radio] = {}

    def own(self, backend: WifiBackend, adapter: str | None = None) -> Radio:
        """The radio for `backend`'s adapter. A new backend for an adapter replaces the old
        one, whose queued work still finishes."""
        if isinstance(backend, OwnedBackend):
            return backend.radio
        key = adapter or adapter_of(backend)
        with self._lock:
            old = self._by_adapter.get(key)
            if old is not None and old.backend is backend:
                return old
            radio = self._by_adapter[key] = Radio(backend, key)
        if old is not None:
            old.close(timeout=0)
        return radio

    def get(self, adapter: str) -> Radio | None:
        with self._lock:
            return self._by_adapter.get(adapter)

    def all(self) -> list[Radio]:
        with self._lock:
            return list(self._by_adapter.values())

    def close(self, timeout: float = 30.0) -> bool:
        ok = True
        for radio in self.all():
            ok = radio.close(timeout) and ok
        return ok


def adapter_of(backend: WifiBackend) -> str:
    """The adapter's name where the backend knows it without asking the OS, else the
    backend's name (one adapter per backend, which is what a laptop has)."""
    for attr in ("_interface", "interface_name"):
        value = getattr(backend, attr, None)
        if isinstance(value, str) and value:
            return value
    drv = getattr(backend, "_drv", None)  # pywifi: the wpa_supplicant interface
    name = getattr(drv, "name", None)
    return name if isinstance(name, str) and name else backend.name


def radio_of(backend: WifiBackend) -> Radio:
    """The owner of an owned backend; a raw one (a test's Station) gets a private Radio."""
    if isinstance(backend, OwnedBackend):
        return backend.radio
    return Radio(backend)


# -- the owned backend: a WifiBackend whose every call goes through the Radio -------------


class OwnedBackend(WifiBackend):
    """`radio.wifi`. Attributes it does not define are the raw backend's (read and write:
    e.g. the manual backend's `confirm`)."""

    name = "owned"

    def __init__(self, radio: Radio) -> None:
        object.__setattr__(self, "radio", radio)

    radio: Radio

    def __getattr__(self, attr: str) -> Any:
        if attr == "radio":  # not set yet (copy, pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.radio.backend, attr)

    def __setattr__(self, attr: str, value: object) -> None:
        setattr(self.radio.backend, attr, value)

    def __repr__(self) -> str:
        return f"<{self.radio.backend!r} owned by radio {self.radio.adapter!r}>"

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        return Availability(False, "an owned backend is made by Radio, not selected")

    def current(self) -> Network | None:
        r = self.radio
        try:
            net = r.call(r.backend.current, "reading the network")
        except Exception as exc:
            r._learn(network_known=False, error=_words(exc))
            raise
        r._learn(network=net, network_known=True, network_at=time.monotonic(), error=None)
        return net

    def remember_home(self) -> HomeNetwork | None:
        r = self.radio
        home = r.call(r.backend.remember_home, "reading the home network")
        if home is not None and home.ssid:
            r._learn(
                network=Network(ssid=home.ssid, profile=home.profile),
                network_known=True,
                network_at=time.monotonic(),
            )
        return home

    def scan(self) -> list[ScanResult]:
        r = self.radio
        results = r.call(r.backend.scan, "scanning")
        r._learn(scan=tuple(results), scan_at=time.monotonic())
        return results

    def connect(
        self,
        ssid: str,
        passphrase: str,
        *,
        bssid: str | None = None,
        timeout: float = 30.0,
        probe: Probe | None = None,
        cancel: threading.Event | None = None,
        on_profile: ProfileCallback | None = None,
    ) -> Link:
        r = self.radio
        r._begin_away(f"away from home (on {ssid})")
        r._learn(away=True, network_known=False, error=None)
        try:
            link = r.backend.connect(
                ssid,
                passphrase,
                bssid=bssid,
                timeout=timeout,
                probe=probe,
                cancel=cancel,
                on_profile=on_profile,
            )
        except Exception as exc:
            r._learn(error=_words(exc))
            raise
        r._learn(
            network=Network(ssid=link.ssid, bssid=link.bssid, profile=link.profile, temporary=True),
            network_known=True,
            network_at=time.monotonic(),
        )
        return link

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        r = self.radio
        try:
            r.call(lambda: r.backend.return_home(home, timeout=timeout), "returning home")
        except Exception as exc:
            r._learn(network_known=False, error=_words(exc))
            raise
        else:
            if home is not None and home.ssid:
                net = Network(ssid=home.ssid, profile=home.profile)
                r._learn(network=net, network_known=True, network_at=time.monotonic(), error=None)
            else:  # the OS picked its usual network: the next idle refresh reads which
                r._learn(network_known=False, error=None)
        finally:
            r._learn(away=False)
            r._end_away()

    def remove_profile(self, profile: str) -> None:
        r = self.radio
        r.call(lambda: r.backend.remove_profile(profile), "deleting a temporary profile")

    def sweep_profiles(self) -> list[str]:
        r = self.radio
        return r.call(r.backend.sweep_profiles, "looking for leftover temporary profiles")

    def close(self) -> None:
        # Closing the backend ends its radio: queued work finishes first.
        self.radio.close()
        self.radio.backend.close()

    # connect() is the raw backend's whole join; these are never reached through here.
    def _join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> None:
        raise NotImplementedError

    def _gateway(self) -> str | None:
        raise NotImplementedError


_classes: dict[type[WifiBackend], type[OwnedBackend]] = {}


def _owned_class(backend: WifiBackend) -> type[OwnedBackend]:
    """An OwnedBackend subclass carrying the backend's class facts (name, can_scan, ...),
    which callers read from the class as WifiBackend declares them."""
    cls = type(backend)
    if cls not in _classes:
        facts = {
            "name": cls.name,
            "can_scan": cls.can_scan,
            "can_pin_bssid": cls.can_pin_bssid,
            "__doc__": f"{cls.__name__}, owned by a Radio.",
        }
        _classes[cls] = type(f"Owned{cls.__name__}", (OwnedBackend,), facts)
    return _classes[cls]


def _done_future(fn: Callable[[], T]) -> Future[T]:
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()
    try:
        future.set_result(fn())
    except BaseException as exc:
        future.set_exception(exc)
    return future


def _swallow(future: Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _words(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


__all__ = ["OwnedBackend", "Radio", "RadioState", "Radios", "adapter_of", "radio_of"]
