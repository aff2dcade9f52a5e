"""The external brokers a running station follows (Qt-free; the GUI drives it).

Every home with a `broker_url` has its devices on a broker of its own (a customer's
Mosquitto). While the station runs, one ExternalBroker per such broker URL follows
them there, as the embedded broker's tracker follows the others: states, readings and
a job's first `online` go to the registry, and every listener (the GUI's bridge) gets
each DeviceUpdate. Commands and batches for those devices go through it.

    followers = Followers(registry, secrets)
    followers.add_listener(bridge.push_update)   # also for followers started later
    followers.start()                            # returns at once; threads connect
    followers.sync()                             # a home was added or edited
    followers.check(home)                        # worker thread: what its broker says
    route = followers.route(home)                # worker thread: for a batch
    followers.stop()

One thread per broker URL connects, retries every RETRY_S while the broker cannot be
reached (or refuses), and restarts a follower whose connection stays lost for LOST_S
(its password is new each start). Nothing here blocks its caller except `check`,
`route`, `wait` and `stop`, which are for worker threads and closing. One follower
per URL, not per home: the station's client name on a broker is one per station, and
Mosquitto drops the older of two connections with the same client id.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from station import broker_target, external_broker
from station.broker_target import BrokerTarget
from station.dynsec import DynSecError
from station.errors import StationError
from station.external_broker import ExternalBroker
from station.registry import Device, Home, Registry
from station.registry.tracking import DeviceUpdate
from station.secrets import SecretStore

if TYPE_CHECKING:
    from station.provisioning.flow import BrokerLink
    from station.sim.demo import DemoWorld

log = logging.getLogger(__name__)

RETRY_S = 10.0  # a broker that cannot be reached (or refuses) is tried again this often
LOST_S = 30.0  # a follower whose connection stays lost this long is started afresh
CHECK_TIMEOUT_S = 40.0  # check()/route(): one start attempt is at most ~3 timeouts

Listener = Callable[[DeviceUpdate], None]

STARTING, FOLLOWING = "starting", "following"
RECONNECTING, UNREACHABLE = "reconnecting", "unreachable"


@dataclass(frozen=True)
class FollowerState:
    """What the station knows of one home broker now (a snapshot, safe to keep)."""

    url: str
    homes: tuple[str, ...]  # names of the homes whose devices report there
    state: str  # starting | following | reconnecting | unreachable
    message: str  # the last check's words ("" while starting)
    attempts: int = 0
    next_try_s: float | None = None  # seconds until the next attempt (unreachable)

    @property
    def ok(self) -> bool:
        return self.state == FOLLOWING

    def summary(self) -> str:
        """One line for a status bar or a tooltip; never any login."""
        if self.state == FOLLOWING:
            return f"{self.url}: following"
        if self.state == STARTING:
            return f"{self.url}: connecting…"
        if self.state == RECONNECTING:
            return f"{self.url}: connection lost, reconnecting"
        retry = f" (retrying in {self.next_try_s:.0f} s)" if self.next_try_s is not None else ""
        return f"{self.url}: not reachable{retry}: {self.message}"


def ok_message(url: str) -> str:
    """As `station homes add --broker` says it (station/cli/homes_cmd.check_broker)."""
    return f"Broker {url}: reachable, admin login and dynamic security work."


def warning_message(problem: str) -> str:
    return f"Warning: {problem}. Batches for this home will not start until it can."


@dataclass(frozen=True)
class Route:
    """Where a batch's devices report: the broker the station registers them with and
    follows them on, the address devices are told, and a TLS broker's CA."""

    broker: BrokerLink
    host: str
    port: int
    ca: str | None = None


def connected(ext: ExternalBroker) -> bool:
    """Is the follower's own MQTT connection up?"""
    return ext.connected


def demo_reach(demo: DemoWorld, target: BrokerTarget) -> None:
    """On the demo's simulated site, the home LAN reaches the home's broker as it is (a
    Mosquitto on loopback standing in for one on the LAN), as `station provision --demo
    --broker` arranges with StationRuntime.start(demo_reach=...)."""
    dest = f"{target.host}:{target.port}"
    net = demo.air.home_network(demo.home_ssid)
    if net is None or dest in net.reach:
        return
    demo.air.extend_reach(demo.home_ssid, {dest: dest})
    log.info("demo: the simulated home network reaches %s", dest)


@dataclass(frozen=True)
class _Config:
    """What a follower was started with; any change starts it afresh."""

    home_id: int  # the home whose CA and name the follower uses (the first by name)
    homes: tuple[str, ...]
    ca: str | None
    login: str  # a digest of the admin login in the keyring (not the login itself)

    def same_follower(self, other: _Config) -> bool:
        """Started with this, the follower would be the same (CA and admin login)."""
        return (self.ca, self.login) == (other.ca, other.login)


class _Slot:
    """One broker URL: a thread that starts its ExternalBroker, retries, restarts."""

    def __init__(self, owner: Followers, url: str, config: _Config) -> None:
        self.owner = owner
        self.url = url
        self.config = config
        self.ext: ExternalBroker | None = None
        self.state = STARTING
        self.message = ""
        self.attempts = 0
        self.next_try: float | None = None
        self._lost_since: float | None = None
        self._stop = threading.Event()
        self._kick = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"follow-{url}", daemon=True)

    def snapshot(self) -> FollowerState:
        with self.owner._lock:
            wait = None if self.next_try is None else max(0.0, self.next_try - time.monotonic())
            return FollowerState(
                self.url, self.config.homes, self.state, self.message, self.attempts, wait
            )

    def kick(self) -> None:
        """Try now rather than at the next retry."""
        self._kick.set()

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()

    def _set(
        self,
        state: str,
        message: str,
        next_try: float | None = None,
        *,
        attempted: bool = False,
        ext: ExternalBroker | None = None,
    ) -> None:
        """The new state, at once with the attempt that led to it (and the follower it
        started), so a waiter never sees an attempt counted with the state before it."""
        with self.owner._cond:
            changed = (state, message) != (self.state, self.message)
            self.state, self.message, self.next_try = state, message, next_try
            if attempted:
                self.attempts += 1
            if ext is not None:
                for listener in self.owner._listeners:
                    ext.add_listener(listener)
                self.ext = ext
            self.owner._cond.notify_all()
        if changed:
            if state == UNREACHABLE:
                log.warning("home broker %s: %s", self.url, message)
            elif state == FOLLOWING:
                log.info("home broker %s: following its devices", self.url)
            self.owner._changed(self.snapshot())

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.ext is None:
                    wait = 0.0 if self._attempt() else self.owner.retry_s
                else:
                    self._watch()
                    wait = 1.0
                self._kick.wait(wait)
                self._kick.clear()
        finally:
            ext, self.ext = self.ext, None
            if ext is not None:
                self._stop_ext(ext)
            self.owner._close_thread_db()

    def _attempt(self) -> bool:
        registry = self.owner.registry
        try:
            home = registry.home(self.config.home_id)
            target = broker_target.parse(home.broker_url or "")
            if target is not None and self.owner.before_start is not None:
                self.owner.before_start(target)
            ext = external_broker.for_home(
                registry,
                self.owner.secrets,
                home,
                reading_min_interval_s=self.owner.reading_min_interval_s,
            )
        except StationError as exc:
            retry_at = time.monotonic() + self.owner.retry_s
            self._set(UNREACHABLE, str(exc), retry_at, attempted=True)
            return False
        except Exception as exc:  # never let the thread die: say it, retry
            log.exception("home broker %s: could not start its follower", self.url)
            retry_at = time.monotonic() + self.owner.retry_s
            self._set(UNREACHABLE, str(exc) or type(exc).__name__, retry_at, attempted=True)
            return False
        if ext is None:  # the home went back to the embedded broker meanwhile
            self._stop.set()
            return False
        if self._stop.is_set():
            self._stop_ext(ext)
            return False
        self._lost_since = None
        self._set(FOLLOWING, ok_message(self.url), attempted=True, ext=ext)
        return True

    def restart(self) -> None:
        """Worker threads: stop the running follower now and start a fresh one (its
        admin connection may be one that no longer gets answers)."""
        with self.owner._cond:
            ext, self.ext = self.ext, None
            self.state, self.message, self.next_try = STARTING, "", None
            self.owner._cond.notify_all()
        if ext is not None:
            self._stop_ext(ext)
        self.kick()

    def _watch(self) -> None:
        ext = self.ext
        if ext is None:  # restarted meanwhile (route)
            return
        if connected(ext):
            if self._lost_since is not None:
                self._lost_since = None
                self._set(FOLLOWING, ok_message(self.url))
            return
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
            self._set(RECONNECTING, f"the connection to {self.url} was lost; reconnecting")
        elif now - self._lost_since >= self.owner.lost_s:
            # paho keeps reconnecting with the password of this run; a broker that
            # forgot it (restarted without persistence) needs a fresh start.
            log.warning(
                "home broker %s: connection lost for %.0f s, starting afresh",
                self.url,
                now - self._lost_since,
            )
            with self.owner._lock:
                if self.ext is not ext:
                    return  # restarted meanwhile
                self.ext = None
            self._stop_ext(ext)
            self._set(STARTING, "")

    def _stop_ext(self, ext: ExternalBroker) -> None:
        for listener in list(self.owner._listeners):
            ext.remove_listener(listener)
        try:
            ext.stop()
        except Exception:
            log.exception("home broker %s: stopping its follower failed", self.url)


class Followers:
    """Keeps one ExternalBroker running per broker URL the registry's homes name."""

    def __init__(
        self,
        registry: Registry,
        secrets: SecretStore,
        *,
        reading_min_interval_s: float = 10.0,
        retry_s: float | None = None,
        lost_s: float | None = None,
        before_start: Callable[[BrokerTarget], None] | None = None,
        on_change: Callable[[FollowerState], None] | None = None,
    ) -> None:
        """`before_start(target)` runs in a follower's thread before each start (the
        demo's simulated LAN learns to reach it); `on_change(state)` runs in any thread
        whenever a broker's state changes (the GUI only emits a signal there)."""
        self.registry = registry
        self.secrets = secrets
        self.reading_min_interval_s = reading_min_interval_s
        self.retry_s = RETRY_S if retry_s is None else retry_s
        self.lost_s = LOST_S if lost_s is None else lost_s
        self.before_start = before_start
        self.on_change = on_change
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._slots: dict[str, _Slot] = {}
        self._listeners: list[Listener] = []
        self._wanted = 0  # sync generations asked for / done
        self._synced = 0
        self._stopped = False
        self._sync_event = threading.Event()
        self._manager: threading.Thread | None = None

    # -- lifecycle (any thread; returns at once except stop) -------------------------

    def start(self) -> None:
        with self._lock:
            if self._manager is not None or self._stopped:
                return
            self._manager = threading.Thread(target=self._manage, name="followers", daemon=True)
            self._manager.start()
        self.sync()

    def sync(self) -> int:
        """Read the homes again (in the manager thread): start the followers of new
        brokers, restart changed ones, stop those no home names any more. Returns the
        generation `wait` waits for."""
        with self._lock:
            self._wanted += 1
            generation = self._wanted
        self._sync_event.set()
        return generation

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every follower (blocking: at close only)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._sync_event.set()
        manager = self._manager
        if manager is not None:
            manager.join(timeout)
        with self._lock:
            slots = list(self._slots.values())
            self._slots.clear()
        for slot in slots:
            slot.stop()
        deadline = time.monotonic() + timeout
        for slot in slots:
            if slot.thread.is_alive():
                slot.thread.join(max(0.1, deadline - time.monotonic()))

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Every follower's DeviceUpdates, now and for followers started later."""
        with self._lock:
            self._listeners.append(listener)
            for slot in self._slots.values():
                if slot.ext is not None:
                    slot.ext.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            for slot in self._slots.values():
                if slot.ext is not None:
                    slot.ext.remove_listener(listener)

    # -- what the GUI shows (no I/O) ----------------------------------------------------

    def states(self) -> list[FollowerState]:
        with self._lock:
            slots = sorted(self._slots.values(), key=lambda s: s.url)
        return [s.snapshot() for s in slots]

    def state(self, url: str | None) -> FollowerState | None:
        with self._lock:
            slot = self._slots.get(url or "")
        return slot.snapshot() if slot is not None else None

    def follower(self, url: str | None) -> ExternalBroker | None:
        """The running follower of that broker, or None."""
        with self._lock:
            slot = self._slots.get(url or "")
            return slot.ext if slot is not None else None

    # -- for worker threads (these wait) ------------------------------------------------

    def wait(self, generation: int, timeout: float = 10.0) -> bool:
        """Until the manager has applied sync `generation`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._synced < generation and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._synced >= generation

    def settle(
        self, url: str, timeout: float = CHECK_TIMEOUT_S, fresh: bool = False
    ) -> FollowerState | None:
        """The broker's state once its follower is running or has made an attempt
        (a retry is made now if it is waiting for one, and with `fresh` always)."""
        with self._lock:
            slot = self._slots.get(url)
            if slot is None:
                return None
            attempts = slot.attempts
            retry = slot.ext is None and (fresh or slot.state == UNREACHABLE)
        if retry:
            slot.kick()
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._stopped:
                if slot.ext is not None and slot.state == FOLLOWING:
                    break
                if slot.attempts > attempts:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        return slot.snapshot()

    def check(self, home: Home, timeout: float = CHECK_TIMEOUT_S) -> str:
        """What `station homes add --broker` says after saving: the home's broker is
        reachable, takes the admin login and answers dynamic security, or a warning
        (not a refusal: a home may be set up before its broker is reachable). A home
        saved just now is picked up first (sync). Worker threads only."""
        generation = self.sync()
        if not self.wait(generation, timeout):
            return warning_message("the station is stopping")
        home = self.registry.home(home.id)
        if not home.broker_url:
            return "Devices report to this station's embedded broker."
        state = self.settle(home.broker_url, timeout)
        if state is None:
            return warning_message(f"no follower for {home.broker_url}")
        if state.ok:
            return ok_message(home.broker_url)
        return warning_message(state.message or f"{home.broker_url} did not answer in time")

    def route(self, home: Home, timeout: float = CHECK_TIMEOUT_S) -> Route:
        """Where a batch for `home` (with its own broker) sends its devices, checked
        now: the follower is connected and dynamic security answers its admin. Raises
        StationError saying why the batch cannot start. Worker threads only."""
        generation = self.sync()
        self.wait(generation, timeout)
        home = self.registry.home(home.id)
        url = home.broker_url
        if not url:
            raise StationError(f"home {home.name!r} uses this station's embedded broker")
        for fresh in (False, True):
            state = self.settle(url, timeout)
            ext = self.follower(url)
            if state is None or ext is None or not state.ok:
                why = state.message if state is not None and state.message else "no answer"
                raise StationError(
                    f"home {home.name!r}: its broker {url} cannot take devices now, so "
                    f"nothing was configured: {why}"
                )
            try:
                ext.dynsec.check()
            except DynSecError as exc:
                if exc.unanswered and not fresh:
                    # Connected, but its admin connection gets no answers (one that
                    # reconnected after the broker restarted): once more, afresh.
                    log.info("home broker %s: no dynamic-security answer; restarting", url)
                    self._restart(url)
                    continue
                raise StationError(
                    f"home {home.name!r}: its broker cannot take devices, so nothing was "
                    f"configured: {exc}"
                ) from None
            host, port = ext.address
            return Route(ext, host, port, ext.device_ca)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _restart(self, url: str) -> None:
        with self._lock:
            slot = self._slots.get(url)
        if slot is not None:
            slot.restart()

    def broker_for(self, device: Device, embedded: Any) -> Any:
        """The broker `device` reports to (its home's follower, or `embedded`), for its
        commands and removal (station.device_ops.Broker). Worker threads only: reads the
        device's home."""
        home = device.home
        url = home.broker_url if home is not None else None
        if not url:
            return embedded
        ext = self.follower(url)
        state = self.state(url)
        if ext is None or state is None or not connected(ext):
            why = f": {state.message}" if state is not None and state.message else ""
            raise StationError(
                f"{device.node_name} reports to {url}, which the station is not connected "
                f"to now{why}"
            )
        return ext

    # -- the manager thread -------------------------------------------------------------

    def _manage(self) -> None:
        try:
            while True:
                self._sync_event.wait()
                self._sync_event.clear()
                with self._lock:
                    if self._stopped:
                        return
                    generation = self._wanted
                try:
                    self._apply(self._desired())
                except Exception:
                    log.exception("could not read the homes' brokers")
                with self._cond:
                    self._synced = max(self._synced, generation)
                    self._cond.notify_all()
        finally:
            self._close_thread_db()

    def _desired(self) -> dict[str, _Config]:
        by_url: dict[str, list[Home]] = {}
        for home in self.registry.homes():
            if home.broker_url:
                by_url.setdefault(home.broker_url, []).append(home)
        desired = {}
        for url, homes in by_url.items():
            first = homes[0]
            target = broker_target.parse(url)
            login = self.secrets.broker_login(target.key) if target is not None else None
            digest = hashlib.sha256(repr(login).encode()).hexdigest() if login else ""
            desired[url] = _Config(first.id, tuple(h.name for h in homes), first.broker_ca, digest)
        return desired

    def _apply(self, desired: dict[str, _Config]) -> None:
        stale: list[_Slot] = []
        started: list[_Slot] = []
        with self._lock:
            if self._stopped:
                return
            for url, slot in list(self._slots.items()):
                config = desired.get(url)
                if config is None or not config.same_follower(slot.config):
                    stale.append(self._slots.pop(url))
                elif config != slot.config:
                    slot.config = config  # only the homes' names changed
            for url, config in desired.items():
                if url not in self._slots:
                    self._slots[url] = slot = _Slot(self, url, config)
                    started.append(slot)
        for slot in stale:
            slot.stop()
        for slot in stale:
            slot.thread.join(30.0)
            log.info("home broker %s: no longer followed as before", slot.url)
        for slot in started:
            slot.thread.start()
            self._changed(slot.snapshot())

    def _changed(self, state: FollowerState) -> None:
        if self.on_change is not None:
            try:
                self.on_change(state)
            except Exception:
                log.exception("follower state listener failed")

    def _close_thread_db(self) -> None:
        # A file database has one connection per thread: close this thread's.
        db = self.registry.db
        try:
            if db.thread_safe and not db.is_closed():
                db.close()
        except Exception:
            log.debug("closing a follower thread's database connection failed", exc_info=True)


__all__ = [
    "FollowerState",
    "Followers",
    "Route",
    "connected",
    "demo_reach",
    "ok_message",
    "warning_message",
]
