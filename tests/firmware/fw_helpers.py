"""Helpers for the firmware tests, imported as `fw_helpers` (conftest.py puts this
folder on sys.path; a module named conftest would collide with tests/conftest.py).

The MQTT broker the firmware talks to lives in ONE place: `MqttBroker` here and
the `mqtt_broker` fixture in conftest.py, a real amqtt 0.12.1 on 127.0.0.1 with
per-user passwords. To run these tests against the project's embedded broker,
change only those two; tests use `.port`, `.add_user()`, `.restart()` and the
`observer` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import requests
from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin
from support import free_port, wait_for

from station.sim.device import SimDevice

# Every firmware timing shrunk so a test takes seconds (defaults: firmware/factory.py).
FAST = {
    "assoc_ms": 100,
    "trial_s": 3,
    "fallback_s": 2,
    "retry_s": 2,
    "busy_s": 1,
    "probe_ms": 1000,
    "restart_delay_ms": 200,
    "interval_s": 1,
    "keepalive_s": 30,
    "backoff_min_ms": 200,
    "backoff_max_ms": 1000,
    "identify_s": 1,
    "button_window_ms": 0,
    "button_hold_s": 1,
}

HOME_SSID = "MyHomeWiFi"  # the seed's names and bodies, used as they are
HOME_PASSWORD = "mypassword"
SEED_BROKER = "192.168.29.91"  # what the seed's /api/mqtt body says; the air maps it to loopback


# --- the setup API ---------------------------------------------------------------


@dataclass
class Api:
    """HTTP client for one device's "192.168.4.1"."""

    base: str
    session: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=5, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        if body is not None and "data" not in kw:
            kw["json"] = body
        return self.session.post(self.base + path, timeout=5, **kw)

    def status_until(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 8.0
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            last = self.get("/api/status").json()
            return done(last)

        try:
            wait_for(check, timeout, 0.1)
        except AssertionError:
            raise AssertionError(f"/api/status never matched; last: {last}") from None
        return last


def api_for(dev: SimDevice, timeout: float = 10.0) -> Api:
    ap = dev.wait_for_setup_ap(timeout)
    return Api(ap.api_url)


def raw_http(addr: str, data: bytes, *, read: bool = True, timeout: float = 5.0) -> bytes:
    """Send raw bytes to a device's API and return whatever comes back before it closes."""
    host, _, port = addr.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        if not read:
            return b""
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                chunks.append(chunk)
        return b"".join(chunks)


# --- the MQTT broker (the one place to change) -------------------------------------


# Brokers by port. amqtt copies a plugin's config, so the plugin finds its live
# broker here: users added after start are seen at the next login.
_BROKERS: dict[int, MqttBroker] = {}


class PasswordAuth(BaseAuthPlugin):
    """Username/password checks, like the embedded broker's per-device tokens."""

    @dataclass
    class Config:
        port: int = 0

    async def authenticate(self, *, session: Any) -> bool | None:
        broker = _BROKERS[self.context.config.port]
        if session.username is None:
            return broker.allow_anonymous
        return broker.users.get(session.username) == session.password


STATION_USER = ("station", "station-secret-token")


class MqttBroker:
    """amqtt on 127.0.0.1 in its own thread and loop; survives restart() on the same port."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.users: dict[str, str] = dict([STATION_USER])
        self.allow_anonymous = False
        _BROKERS[self.port] = self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="amqtt", daemon=True)
        self._thread.start()
        self._broker: Broker | None = None
        self._writers: set[Any] = set()

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "timeout_disconnect_delay": 0,
            # Listing plugins replaces amqtt's defaults (loggers, $SYS): only auth here.
            "plugins": {"fw_helpers.PasswordAuth": {"port": self.port}},
        }

    def _run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def add_user(self, username: str, password: str) -> None:
        self.users[username] = password

    def start(self) -> None:
        async def start() -> Broker:
            b = Broker(self._config())
            serve = b.stream_connected

            async def tracked(reader: Any, writer: Any, listener_name: str) -> None:
                self._writers.add(writer)
                try:
                    await serve(reader, writer, listener_name)
                finally:
                    self._writers.discard(writer)

            b.stream_connected = tracked  # type: ignore[method-assign]
            await b.start()
            return b

        self._broker = self._run(start())

    def stop(self) -> None:
        """The broker goes away: every client connection drops, like a crashed process.

        amqtt's shutdown() waits for connections it does not itself close (a client
        mid-handshake), so they are closed first.
        """
        if self._broker is None:
            return
        broker, self._broker = self._broker, None

        async def stop() -> None:
            for w in list(self._writers):
                w.close()
            await asyncio.wait_for(broker.shutdown(), 5)

        self._run(stop())

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        _BROKERS.pop(self.port, None)


class Observer:
    """The station's view of the broker: a paho client subscribed to everything."""

    def __init__(self, broker: MqttBroker) -> None:
        self.broker = broker
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self._lock = threading.Lock()
        self.client: paho.Client | None = None
        self.connect()

    def connect(self) -> None:
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"observer-{time.monotonic_ns()}"
        )
        c.username_pw_set(*STATION_USER)
        ready = threading.Event()
        c.on_connect = lambda *_a: c.subscribe("#", qos=1)
        c.on_subscribe = lambda *_a: ready.set()
        c.on_message = self._on_message
        c.connect(self.broker.host, self.broker.port, keepalive=30)
        c.loop_start()
        assert ready.wait(5), "observer could not subscribe"
        self.client = c

    def reconnect(self) -> None:
        self.close()
        wait_for(lambda: _try(self.connect), 10, 0.2)

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.disconnect()
                self.client.loop_stop()
            self.client = None

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain), time.monotonic()))

    def publish(self, topic: str, payload: str | bytes) -> None:
        assert self.client is not None
        self.client.publish(topic, payload, qos=1).wait_for_publish(3)

    def payloads(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _r, _ts in self.messages if t == topic]

    def times(self, topic: str) -> list[float]:
        with self._lock:
            return [ts for t, _p, _r, ts in self.messages if t == topic]

    def json(self, topic: str) -> list[Any]:
        return [json.loads(p) for p in self.payloads(topic) if p]

    def wait(
        self,
        topic: str,
        predicate: Callable[[bytes], bool] = bool,
        timeout: float = 10.0,
        after: int = 0,
    ) -> bytes:
        """The first payload on topic (from index `after`) that satisfies predicate."""

        def find() -> bytes | None:
            for p in self.payloads(topic)[after:]:
                if predicate(p):
                    return p
            return None

        try:
            return wait_for(lambda: find() is not None, timeout, 0.05) and find()  # type: ignore[return-value]
        except AssertionError:
            seen = sorted({t for t, *_ in self.messages})
            raise AssertionError(
                f"nothing matching on {topic} within {timeout}s; topics seen: {seen}"
            ) from None

    def count(self, topic: str) -> int:
        return len(self.payloads(topic))


def _try(fn: Callable[[], None]) -> bool:
    try:
        fn()
    except (OSError, AssertionError):
        return False
    return True


# --- provisioning --------------------------------------------------------------------


def seed_mqtt_body(node: str = "esp32_dht11_001") -> dict[str, Any]:
    """The seed's exact /api/mqtt body (no username/password)."""
    return {"broker": SEED_BROKER, "port": 1883, "topic_prefix": f"home/{node}", "node_name": node}


def provision(
    api: Api,
    broker: MqttBroker,
    node: str = "esp32_dht11_001",
    *,
    password: str | None = None,
    restart: bool = True,
) -> dict[str, Any]:
    """What the station does: home WiFi, MQTT config with a per-device token, restart."""
    token = password or f"token-{node}"
    broker.add_user(node, token)
    body = {**seed_mqtt_body(node), "username": node, "password": token}
    assert api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD}).json() == {
        "ok": True
    }
    assert api.post("/api/mqtt", body).json() == {"ok": True}
    if restart:
        assert api.post("/api/restart").json() == {"ok": True}
    return body
