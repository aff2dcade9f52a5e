"""Helpers for the firmware tests, imported as `fw_helpers` (conftest.py puts this
folder on sys.path; a module named conftest would collide with tests/conftest.py).

The MQTT broker the firmware talks to lives in ONE place: `MqttBroker` here and
the `mqtt_broker` fixture in conftest.py: the project's embedded broker on
127.0.0.1 with its own registry. Tests use `.port`, `.add_user()`, `.restart()`,
`.station_user` and the `observer` fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
import requests
from support import FAST as SHARED_FAST
from support import free_port, wait_for

from broker import EmbeddedBroker
from station.registry import Registry
from station.registry.credentials import hash_token
from station.registry.models import Device
from station.settings import BrokerSettings
from station.sim.device import SimDevice

# The shared fast timings (tests/support.py), with the firmware's own waits shorter
# still: these tests watch the fallback, retry and busy windows themselves, where
# a provisioning run must outlast them.
FAST = {
    **SHARED_FAST,
    "fallback_s": 2,
    "retry_s": 2,
    "busy_s": 1,
    "identify_s": 1,
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


class MqttBroker:
    """The project's embedded broker (broker.EmbeddedBroker) with its own registry on
    127.0.0.1, as the station runs it: per-device tokens, ACL, keep-alive, tracking.
    Survives restart() on the same port."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="fw-broker-")
        self.registry = Registry(os.path.join(self._dir, "registry.sqlite3"))
        self.broker = EmbeddedBroker(
            self.registry,
            BrokerSettings(bind_host=self.host, port=self.port),
            reading_min_interval_s=0,
            flush_interval_s=0.01,
        )

    @property
    def station_user(self) -> tuple[str, str]:
        """Credentials of the station's own full-access clients (per broker run)."""
        return self.broker.station_credentials()

    @property
    def allow_anonymous(self) -> bool:
        return self.broker.access.allow_anonymous

    @allow_anonymous.setter
    def allow_anonymous(self, value: bool) -> None:
        self.broker.access.allow_anonymous = value

    def add_user(self, username: str, password: str) -> None:
        """Register a device under a chosen node name and token (the registry would
        normally pick both; the tests pick them to use the seed's names)."""
        dev = Device.get_or_none(Device.node_name == username)
        if dev is None:
            dev = Device.create(
                node_name=username,
                topic_prefix=f"home/{username}",
                mqtt_username=username,
                token_hash=hash_token(password),
            )
        else:
            dev.token_hash = hash_token(password)
            dev.save()
        self.broker.device_registered(dev)

    def start(self) -> None:
        self.broker.start()

    def stop(self) -> None:
        """The broker goes away: every client connection drops, like a crashed process."""
        self.broker.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self.registry.close()
        shutil.rmtree(self._dir, ignore_errors=True)


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
        c.username_pw_set(*self.broker.station_user)
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

    def last(self, topic: str, since: float = 0.0) -> bytes | None:
        """The newest payload on topic received at or after `since` (time.monotonic())."""
        with self._lock:
            got = [p for t, p, _r, ts in self.messages if t == topic and ts >= since]
        return got[-1] if got else None

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
