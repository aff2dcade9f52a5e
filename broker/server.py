"""The embedded broker: amqtt in its own thread and asyncio loop, wired to the registry.

    broker = EmbeddedBroker(registry, BrokerSettings(port=1883))
    broker.start()                      # raises BrokerStartError (e.g. port taken)
    broker.add_listener(callback)       # DeviceUpdate after each registry commit
    broker.send_command(device, {"cmd": "identify"})
    broker.stop()

Callbacks run in the ingest thread; the GUI turns them into Qt signals.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from broker import conformance, keepalive, limits, sys_topics
from broker.access import STATION_USERNAME, AccessControl
from broker.hub import BrokerHub
from broker.ingest import IngestWriter, Listener
from broker.plugins import HUBS, plugin_config
from broker.station_broker import StationBroker
from broker.sys_topics import SysPublisher
from station import commands
from station.errors import StationError
from station.loop_thread import LoopThread
from station.registry.credentials import new_token
from station.registry.models import Device
from station.registry.service import Registry
from station.registry.tracking import DeviceUpdate, Tracker
from station.settings import BrokerSettings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
# Generation-0 threshold raised from CPython's 700: amqtt creates several objects per
# message, so at 1000 msg/s the default runs a collection every few milliseconds.
GC_THRESHOLDS = (50_000, 20, 100)


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop where installed (Linux, macOS), else asyncio's own loop (Windows, or
    kind="asyncio"). With 1000 devices it used ~10 % less broker CPU and gave a p99
    of 9 ms against 12 ms (docs/PERFORMANCE.md); both loops are tested."""
    if kind not in ("auto", "uvloop", "asyncio"):
        raise StationError(f"unknown event loop {kind!r} (auto, uvloop or asyncio)")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise StationError(
                    "event loop 'uvloop' asked for, but uvloop is not installed"
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def tune_gc() -> None:
    """Move everything alive now out of the collector's sight and collect less often.

    Process-wide, so it is done once; the objects frozen are the imported modules and
    startup state that never become garbage.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class BrokerStartError(StationError):
    pass


class _QuietAmqtt(logging.Filter):
    """Drop amqtt log lines that are noise for a station operator.

    - "Broker startup failed" + traceback: we report it in words (BrokerStartError).
    - "No data from ..." / "Failed to initialize client session": a TCP connect
      without MQTT, which is exactly the devices' broker reachability check.
    - "N messages not broadcasted": wills of devices dropped at our own shutdown.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (
            msg == "Broker startup failed"
            or msg.startswith(("No data from", "Failed to initialize client session"))
            or msg.endswith("messages not broadcasted")
        )


logging.getLogger("amqtt.broker").addFilter(_QuietAmqtt())


class EmbeddedBroker:
    def __init__(
        self,
        registry: Registry,
        settings: BrokerSettings | None = None,
        *,
        reading_min_interval_s: float = 10.0,
        flush_interval_s: float = 0.05,
        sys_interval_s: float = sys_topics.INTERVAL_S,
    ) -> None:
        self.registry = registry
        self.settings = settings or BrokerSettings()
        # The station's own clients log in with this; it lives only in memory for one run.
        self._station_token = new_token()
        self.access = AccessControl(
            self._station_token,
            self.settings.allow_anonymous,
            self.settings.seed_app_devices,
            topic_root=registry.topic_root,
        )
        self.access.lookup = registry.credentials
        self.access.account_lookup = registry.accounts.credentials
        self.tracker = Tracker(reading_min_interval_s)
        self.ingest = IngestWriter(registry.db, self.tracker, flush_interval=flush_interval_s)
        self.hub = BrokerHub(
            self.access, self.ingest.put, self.ingest.put_message, self.settings.keepalive_factor
        )
        self.hub.on_device_removed = lambda _username: self.tracker.forget()
        self._hub_id = uuid.uuid4().hex
        self._lt = LoopThread("mqtt-broker", lambda: new_event_loop(self.settings.event_loop))
        self._amqtt: StationBroker | None = None
        self._sys: SysPublisher | None = None
        self.sys_interval_s = sys_interval_s
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._lt.running

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The broker's event loop (for code that must run on it, e.g. probes)."""
        return self._lt.loop

    def start(self) -> None:
        if self.running:
            return
        keepalive.install()
        conformance.install()
        limits.install(self.hub, self.settings)
        self.access.load(self.registry.all_credentials())
        self.access.load_accounts(self.registry.accounts.all_credentials())
        HUBS[self._hub_id] = self.hub
        self.ingest.start()
        try:
            self._lt.start(self._start_amqtt, START_TIMEOUT_S)
        except BaseException as exc:
            self.ingest.stop()
            HUBS.pop(self._hub_id, None)
            if isinstance(exc, Exception):
                raise self._start_error(exc) from exc
            raise
        self._mark_unconnected_offline()
        if self.settings.gc_tuning:
            tune_gc()
        if self.settings.seed_app_devices:
            log.warning(
                "seed-app devices are on: devices registered through the backend API may "
                "log in WITHOUT a token, by node name alone. Anyone on this network who "
                "learns such a node name can publish as that device. Turn it off "
                "(broker.seed_app_devices) once the seed's app is no longer used."
            )
        log.info(
            "MQTT broker listening on %s:%d (%d device credentials, %d accounts loaded)",
            self.settings.bind_host,
            self.port,
            len(self.registry.all_credentials()),
            len(self.registry.accounts.all_credentials()),
        )

    def _mark_unconnected_offline(self) -> None:
        """A station that was killed left devices `online` with no connection behind
        them: what this broker does not see connected is offline, before start()
        returns (so before anyone reads the table). Only once listening, so a start that
        fails (port taken by a station that runs) changes nothing; in the registry
        writer, in order with what devices said since; against the connections read on
        the broker loop inside the transaction. Devices say `online` when they reconnect."""

        async def live() -> set[str]:
            return set(self.hub.live)

        def mark() -> list[DeviceUpdate]:
            stale = self.registry.mark_offline(lambda: self._lt.call(live(), START_TIMEOUT_S))
            return [self.tracker.offline_update(d) for d in stale]

        self.ingest.run_in_writer(mark, START_TIMEOUT_S)

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.settings.bind_host}:{self.settings.port}",
                    "max_connections": self.settings.max_connections,
                }
            },
            # Keep-alive grace is applied by broker.keepalive.scale (1.5x, MQTT 3.1.1).
            "timeout_disconnect_delay": 0,
            "plugins": plugin_config(self._hub_id),
        }

    async def _start_amqtt(self) -> None:
        self._amqtt = StationBroker(self._config(), self.hub, loop=asyncio.get_running_loop())
        self.hub.amqtt_broker = self._amqtt
        await self._amqtt.start()
        server = self._amqtt._servers["default"].instance  # bound port when port=0
        self._port = server.sockets[0].getsockname()[1]
        self._sys = SysPublisher(self._amqtt, self.hub, self.sys_interval_s)
        self._sys.start()

    async def _shutdown(self) -> None:
        if self._sys is not None:
            await self._sys.stop()
            self._sys = None
        if self._amqtt is not None:
            await self._amqtt.shutdown()

    def _start_error(self, exc: BaseException) -> BrokerStartError:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        where = f"{self.settings.bind_host}:{self.settings.port}"
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return BrokerStartError(
                f"cannot start the MQTT broker: port {self.settings.port} on "
                f"{self.settings.bind_host} is already in use (another broker such as "
                "mosquitto?). Stop it or choose another port with --port / Settings."
            )
        if isinstance(cause, OSError):
            return BrokerStartError(f"cannot start the MQTT broker on {where}: {cause.strerror}")
        return BrokerStartError(f"cannot start the MQTT broker on {where}: {exc}")

    def stop(self) -> None:
        """Close every connection, stop the loop, then flush the registry writes."""
        if not self._lt.started:
            return
        self._lt.stop(self._shutdown, STOP_TIMEOUT_S)
        self._amqtt = None
        self.ingest.stop()
        HUBS.pop(self._hub_id, None)
        log.info("MQTT broker stopped")

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port if self._port is not None else self.settings.port

    @property
    def clients_connected(self) -> int:
        return len(self.hub.live)

    def station_credentials(self) -> tuple[str, str]:
        """Username and token for the station's own full-access MQTT clients."""
        return STATION_USERNAME, self._station_token

    # -- registry and listeners --------------------------------------------------------

    def device_registered(self, device: Device, token: str | None = None) -> None:
        """Let a newly registered device log in without waiting for a cache miss (the
        token's hash is read from the registry; `token` is for external brokers)."""
        cred = self.registry.credentials(device.mqtt_username)
        if cred is not None:
            self.access.upsert(cred)

    def device_removed(self, device: Device, timeout: float = 5.0) -> None:
        """Revoke the device's login and close its connection, if it has one: a removed
        device must not go on publishing with a token that was valid when it connected."""
        self.access.remove(device.mqtt_username)
        self.tracker.forget(device.topic_prefix)
        if self._lt.loop is not None and self._amqtt is not None:
            self._lt.call(self.hub.close_client(device.mqtt_username), timeout)

    def account_changed(self, name: str, timeout: float = 5.0) -> int:
        """An integration account was removed or given a new password: its login is
        read again and its connections are closed. Returns how many were closed."""
        self.access.forget_account(name)
        if self._lt.loop is None or self._amqtt is None:
            return 0
        return self._lt.call(self.hub.account_changed(name), timeout)

    def add_listener(self, listener: Listener) -> None:
        self.ingest.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.ingest.remove_listener(listener)

    def on_connection_count(self, callback: Callable[[int], None]) -> None:
        self.hub.on_connection_change = callback

    # -- publishing --------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        qos: int = 1,
        timeout: float = 5.0,
    ) -> None:
        """Publish as the broker itself (thread-safe)."""
        broker = self._running_amqtt()

        async def _publish() -> None:
            await broker.internal_message_broadcast(topic, payload, qos)
            if retain:
                await broker.retain_message(None, topic, payload, qos)

        self._lt.call(_publish(), timeout)

    def send_command(self, device: Device, command: dict[str, Any]) -> None:
        """PROTOCOL.md section 2: `<prefix>/cmd` with {"cmd": ..., ...}, checked against
        the command table first (station/commands.py): what the firmware would refuse
        is never published. Raises CommandError. The audit event is station.device_ops'
        (it is the same for a command sent through another process's broker)."""
        doc = commands.check(command)
        self.publish(f"{device.topic_prefix}/cmd", json.dumps(doc).encode())

    def retained_topics(self, topic_filter: str, timeout: float = 5.0) -> list[str]:
        """Topics holding a retained message that match `topic_filter` (MQTT wildcards)."""
        broker = self._running_amqtt()

        async def _list() -> list[str]:
            return sorted(
                t
                for t, r in broker._retained_messages.items()
                if r.data and broker._matches(t, topic_filter)
            )

        return self._lt.call(_list(), timeout)

    def clear_retained(self, topics: list[str], timeout: float = 5.0) -> list[str]:
        """Clear the retained message of each topic that holds one; returns those topics.

        Subscribers get the empty payload (MQTT-3.3.1-10: a zero-byte retained publish
        clears the topic; Home Assistant removes a discovered entity on an empty config
        document), and nothing is replayed to later subscribers. amqtt 0.12.1 keeps a
        cleared topic as an empty entry, so it is removed from the store here.
        """
        broker = self._running_amqtt()

        async def _clear() -> list[str]:
            held = broker._retained_messages
            cleared = [t for t in topics if t in held and held[t].data]
            for topic in cleared:
                await broker.internal_message_broadcast(topic, b"", 1)
                held.pop(topic, None)
            return cleared

        return self._lt.call(_clear(), timeout)

    def _running_amqtt(self) -> StationBroker:
        if self._lt.loop is None or self._amqtt is None:
            raise StationError("the MQTT broker is not running")
        return self._amqtt
