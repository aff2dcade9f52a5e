"""A home whose devices report to an external broker: the station creates their logins
there (station.dynsec) and follows them there as a client, with the same registry
effects as the embedded broker's tracker (the same IngestWriter and Tracker: the
first `online` completes a job, states and readings fill the table, the will's
`offline` marks a device offline).

    ext = ExternalBroker(registry, target, ("admin", "secret"))
    ext.start()            # raises DynSecError: unreachable, login refused, no plugin
    ...                    # station.provisioning.BrokerLink, and commands
    ext.stop()

`start()` is the check a batch needs before it configures any device: a batch must
never send devices towards a broker that cannot take them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

from broker.ingest import IngestWriter, Listener
from station import broker_target, commands
from station.broker_target import BrokerTarget, connect_error, tls_context
from station.dynsec import AdminLogin, DynSec, DynSecError
from station.errors import StationError
from station.registry.models import Device, Home
from station.registry.service import Registry
from station.registry.tracking import TRACKED_LEAVES, DeviceUpdate, Tracker
from station.secrets import SecretStore
from station.settings import station_id

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
RETRY_S = 2.0


def station_client_name() -> str:
    """This station's own login on external brokers: stable for this station
    (settings.station_id), distinct between installers' laptops sharing one broker."""
    return f"esp32-station-{hashlib.sha256(station_id().encode()).hexdigest()[:10]}"


class ExternalBroker:
    def __init__(
        self,
        registry: Registry,
        target: BrokerTarget,
        admin: tuple[str, str],
        *,
        reading_min_interval_s: float = 10.0,
        flush_interval_s: float = 0.05,
        timeout: float = TIMEOUT_S,
        ca: str | None = None,
        secrets_store: SecretStore | None = None,
    ) -> None:
        """`ca`: for an mqtts:// target, the CA certificate (PEM) the broker is checked
        with, by the station and by every device it provisions (they have no CA store
        of their own, so a TLS target without one cannot take devices)."""
        self.registry = registry
        self.target = target
        self.timeout = timeout
        self.ca = ca if target.tls else None
        self.dynsec = DynSec(
            AdminLogin(target.host, target.port, admin[0], admin[1], tls=target.tls, ca=self.ca),
            timeout,
        )
        self.ingest = IngestWriter(
            registry.db, Tracker(reading_min_interval_s), flush_interval=flush_interval_s
        )
        self.client_name = station_client_name()
        # The station client's password is kept in the keyring (when there is one), so
        # every process of this station (the window, a CLI batch) logs in with the same
        # one: a fresh one per start made the others' reconnects fail.
        self.secrets = secrets_store
        self._client_id = f"{self.client_name}-{secrets.token_hex(3)}"
        self._follower: paho.Client | None = None
        self._password = ""  # the station client's, for this run (dynsec.station_client)
        self._ready = threading.Event()
        self._rc: Any = None
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, str]] = {}  # node -> (token, topic prefix)
        self._stopping = threading.Event()
        self._retrier = threading.Thread(
            target=self._retry_pending, name="external-broker-logins", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """What devices are told to connect to."""
        return self.target.host, self.target.port

    @property
    def connected(self) -> bool:
        """Is the station's own connection to the broker up now?"""
        client = self._follower
        return client is not None and bool(client.is_connected())

    @property
    def device_ca(self) -> str | None:
        """The CA devices are given with `tls` (None: plain MQTT)."""
        return self.ca

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self.target.tls and not self.ca:
            raise DynSecError(
                f"{self.target.url} is a TLS broker, and devices can check its certificate "
                "only against a CA they are given: give the CA certificate (--ca FILE)"
            )
        self.dynsec.open()
        try:
            self.dynsec.check()
            self._password, kept = self._station_login()
            self.ingest.start()
            try:
                self._follow(self._password)
            except DynSecError:
                if not kept:
                    raise
                # The broker holds another password for this station (the keyring's
                # is older, or the broker's config was restored): set a new one.
                log.info("station login on %s refused: setting a new password", self.target.url)
                self._drop_follower()
                self._password = self._station_login(fresh=True)[0]
                self._follow(self._password)
            self._retrier.start()
        except BaseException:
            self.stop()
            raise
        log.info("following devices on %s as %s", self.target.url, self.client_name)

    def _station_login(self, fresh: bool = False) -> tuple[str, bool]:
        """The station client's password on this broker, and whether it is the one
        kept in the keyring (not a new one)."""
        key = f"station-client:{self.target.url}"
        kept = self.secrets.broker_login(key) if self.secrets is not None and not fresh else None
        known = kept[1] if kept is not None and kept[0] == self.client_name else None
        password = self.dynsec.station_client(self.client_name, self.registry.topic_root, known)
        if self.secrets is not None and password != known:
            self.secrets.set_broker_login(key, self.client_name, password)
        return password, known is not None

    def _drop_follower(self) -> None:
        if self._follower is not None:
            self._follower.disconnect()
            self._follower.loop_stop()
            self._follower = None
        self._ready.clear()

    def _follow(self, password: str) -> None:
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            # The login is the station's; the client id is this follower's, so the
            # window and a `station provision` of the same station never take each
            # other's connection over (Mosquitto drops the older of two equal ids).
            client_id=self._client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        c.username_pw_set(self.client_name, password)
        if self.target.tls:
            c.tls_set_context(tls_context(self.ca))
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *_a: self._ready.set()
        c.on_message = self._on_message
        self._follower = c
        try:
            c.connect(self.target.host, self.target.port, keepalive=30)
        except OSError as exc:
            raise DynSecError(connect_error(exc, self.target.url, self.target.tls)) from None
        c.loop_start()
        if not self._ready.wait(self.timeout) or self._rc is None or self._rc.is_failure:
            raise DynSecError(
                f"the MQTT broker at {self.target.url} did not accept the station's own "
                f"client ({self._rc})"
            )

    def _filters(self) -> list[tuple[str, int]]:
        root = self.registry.topic_root.strip("/")
        base = f"{root}/+" if root else "+"
        return [(f"{base}{leaf}", 1) for leaf in TRACKED_LEAVES]

    def _on_connect(self, c: Any, _u: Any, _flags: Any, rc: Any, _p: Any = None) -> None:
        self._rc = rc
        if not rc.is_failure:
            # Also after a reconnect: a clean session forgets its subscriptions.
            c.subscribe(self._filters())
        elif not self._ready.is_set():
            self._ready.set()  # refused at the start: _follow says so at once

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        self.ingest.put_message(msg.topic, bytes(msg.payload), time.time())

    def stop(self) -> None:
        self._stopping.set()
        if self._retrier.is_alive():
            self._retrier.join(self.timeout + RETRY_S)
        if self.pending:
            log.warning(
                "external broker: logins never created for %s (the broker did not answer)",
                ", ".join(self.pending),
            )
        self._drop_follower()
        self.ingest.stop()
        self.dynsec.close()

    def __enter__(self) -> ExternalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- station.provisioning.BrokerLink -----------------------------------------------

    def device_registered(self, device: Device, token: str | None = None) -> None:
        """The device's login on the broker, with the token the registry just issued.

        At registration (step 1) the laptop is home and the broker answers at once; a
        refusal raises. A token replaced while the laptop is on a device's AP (step 3
        of a rerun) cannot reach the broker then: the login waits in `pending` and a
        background thread creates it as soon as the broker answers again, before the
        device (back home, retrying with backoff) can log in with it."""
        if token is None:
            return  # nothing new: the broker has the login made when the token was issued
        with self._lock:
            self._pending[device.mqtt_username] = (token, device.topic_prefix)
        self._apply_pending(wait=self.timeout)

    def device_removed(self, device: Device) -> None:
        with self._lock:
            self._pending.pop(device.mqtt_username, None)
        self.dynsec.remove_device(device.mqtt_username)

    @property
    def pending(self) -> list[str]:
        """Devices whose login is not on the broker yet."""
        with self._lock:
            return sorted(self._pending)

    def _apply_pending(self, wait: float) -> None:
        """Create the waiting logins; a broker that does not answer leaves them waiting,
        a refusal raises (and drops that one: retrying would be refused again)."""
        with self._lock:
            todo = dict(self._pending)
        for node, (token, prefix) in todo.items():
            if self._follower is None or not self._follower.is_connected():
                return
            try:
                self.dynsec.add_device(node, token, prefix, timeout=wait)
            except DynSecError as exc:
                if exc.unanswered:
                    return
                with self._lock:
                    self._pending.pop(node, None)
                raise
            with self._lock:
                if self._pending.get(node) == (token, prefix):
                    del self._pending[node]

    def _retry_pending(self) -> None:
        while not self._stopping.wait(RETRY_S):
            try:
                self._apply_pending(wait=self.timeout)
            except DynSecError as exc:
                log.error("external broker refused a device login: %s", exc)

    def add_listener(self, listener: Listener) -> None:
        self.ingest.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.ingest.remove_listener(listener)

    def reply_to(
        self, device: Device, name: str, send: Callable[[], object], timeout: float = 10.0
    ) -> dict | None:
        """Run `send` (which sends command `name` to `device`) and wait for the device's
        answer on its event topic; None if none came within `timeout`. Listening starts
        before the send, so a fast answer is not missed."""
        answer: list[dict] = []
        got = threading.Event()

        def listen(update: DeviceUpdate) -> None:
            if update.node_name != device.node_name or update.kind != "event":
                return
            reply = update.data.get("cmd") in (name, None) and "event" not in update.data
            if reply and not got.is_set():  # a progress report (`event`) is not a reply
                answer.append(update.data)
                got.set()

        self.add_listener(listen)
        try:
            send()
            got.wait(timeout)
        finally:
            self.remove_listener(listen)
        return answer[0] if answer else None

    # -- station.device_ops.Broker: removal clears the device's retained topics ----------

    def retained_topics(self, topic_filter: str, settle: float = 0.5) -> list[str]:
        """Topics matching `topic_filter` that hold a retained message there: what the
        broker replays to a new subscriber (a short-lived client of the station's)."""
        found: set[str] = set()
        done = threading.Event()
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"{self._client_id}-scan",
            protocol=paho.MQTTv311,
        )
        c.username_pw_set(self.client_name, self._password)
        if self.target.tls:
            c.tls_set_context(tls_context(self.ca))
        c.on_connect = lambda cl, *_a: cl.subscribe(topic_filter, 1)
        c.on_subscribe = lambda *_a: done.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            if msg.retain and msg.payload:
                found.add(msg.topic)

        c.on_message = on_message
        c.connect(self.target.host, self.target.port, keepalive=30)
        c.loop_start()
        try:
            if not done.wait(self.timeout):
                raise DynSecError(f"the MQTT broker at {self.target.url} did not answer")
            time.sleep(settle)  # the replay follows the SUBACK at once
        finally:
            c.disconnect()
            c.loop_stop()
        return sorted(found)

    def clear_retained(self, topics: list[str]) -> list[str]:
        """Zero-byte retained publishes [MQTT-3.3.1-10] on topics found by
        retained_topics (clearing a topic that holds nothing is harmless, and the
        station's role may not subscribe to `#` to look again)."""
        cleared = list(topics)
        for topic in cleared:
            assert self._follower is not None
            self._follower.publish(topic, b"", qos=1, retain=True).wait_for_publish(self.timeout)
        return cleared

    # -- commands ----------------------------------------------------------------------

    def send_command(self, device: Device, command: dict[str, Any]) -> None:
        doc = commands.check(command)
        if self._follower is None:
            raise DynSecError(f"not connected to {self.target.url}")
        info = self._follower.publish(f"{device.topic_prefix}/cmd", json.dumps(doc), qos=1)
        info.wait_for_publish(self.timeout)


# -- a home's broker, as the CLI and the GUI set it up ------------------------------------


def remember(secrets: SecretStore, text: str) -> BrokerTarget | None:
    """Parse a broker URL (or `embedded`); a login in it goes to the keyring, and the
    target returned carries none."""
    target = broker_target.parse(text)
    if target is None:
        return None
    if target.login is not None:
        secrets.set_broker_login(target.key, *target.login)
    elif target.username is not None:
        raise StationError(
            f"the broker URL names the user {target.username!r} but no password: give "
            "mqtt://USER:PASSWORD@host:port once (the login is kept in the OS keyring)"
        )
    return broker_target.BrokerTarget(target.scheme, target.host, target.port)


def for_home(
    registry: Registry,
    secrets: SecretStore,
    home: Home,
    *,
    reading_min_interval_s: float = 10.0,
) -> ExternalBroker | None:
    """The started external broker of a home (checked: reachable, login accepted,
    dynamic security answering), or None when it uses the embedded broker. Raises
    StationError with what to do when the broker cannot take devices."""
    if not home.broker_url:
        return None
    target = broker_target.parse(home.broker_url)
    assert target is not None  # a stored URL is never "embedded"
    login = secrets.broker_login(target.key)
    if login is None:
        raise StationError(
            f"no admin login for the broker {target.url} of home {home.name!r}"
            + ("" if secrets.persistent else " (no OS keyring here: it is kept for one run)")
            + f": give it with `station homes edit {home.name!r} --broker "
            f"{target.scheme}://USER:PASSWORD@{target.host}:{target.port}`"
        )
    ext = ExternalBroker(
        registry,
        target,
        login,
        reading_min_interval_s=reading_min_interval_s,
        ca=home.broker_ca,
        secrets_store=secrets,
    )
    try:
        ext.start()
    except DynSecError as exc:
        raise StationError(
            f"home {home.name!r}: its broker cannot take devices, so nothing was configured: {exc}"
        ) from None
    return ext
