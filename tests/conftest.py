"""Fixtures shared by every part: a real SQLite registry, the real embedded broker on
loopback, real MQTT clients (paho) to talk to it, and the firmware build every
simulated device runs."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import paho.mqtt.client as mqtt
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail
from support import Client, wait_for

from broker import EmbeddedBroker
from station.registry import Registry
from station.settings import BrokerSettings
from station.sim import firmware


@pytest.fixture(scope="session")
def firmware_dir(tmp_path_factory) -> Path:
    """The host build (.mpy) every simulated device runs, compiled once per session."""
    out = tmp_path_factory.mktemp("firmware") / "build"
    firmware.build(out, board="host")
    return out


@pytest.fixture
def registry(tmp_path) -> Iterator[Registry]:
    reg = Registry(str(tmp_path / "registry.sqlite3"))
    yield reg
    reg.close()


@pytest.fixture(params=["uvloop", "asyncio"])
def broker(registry, request) -> Iterator[EmbeddedBroker]:
    """The embedded broker on both event loops it can run on (uvloop: Linux/macOS;
    asyncio's own: Windows)."""
    b = EmbeddedBroker(
        registry,
        BrokerSettings(bind_host="127.0.0.1", port=0, event_loop=request.param),
        reading_min_interval_s=0,
        flush_interval_s=0.01,
    )
    b.start()
    yield b
    b.stop()


@pytest.fixture
def connect(broker) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def _connect(
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        *,
        will: str | None = None,
        keepalive: int = 30,
        port: int | None = None,
    ) -> Client:
        m = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        c = Client(m)
        if username is not None:
            m.username_pw_set(username, password)
        if will:
            m.will_set(will, "offline", qos=1, retain=True)

        def on_connect(_c, _u, _f, rc, _p):
            c.rc = rc
            if rc.is_failure:
                # Stop paho's automatic reconnects so a refused client stays refused.
                m.disconnect()

        def on_message(_c, _u, msg):
            c.messages.append((msg.topic, msg.payload, msg.retain))

        def on_subscribe(_c, _u, _mid, codes, _p):
            c.suback.append([code.value for code in codes])

        def on_disconnect(*_a):
            c.disconnected = True

        m.on_connect, m.on_message, m.on_subscribe = on_connect, on_message, on_subscribe
        m.on_disconnect = on_disconnect
        m.connect("127.0.0.1", port or broker.port, keepalive=keepalive)
        m.loop_start()
        wait_for(lambda: c.rc is not None, 5)
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        with contextlib.suppress(Exception):
            c.close()


@pytest.fixture
def station_client(broker, connect) -> Client:
    user, token = broker.station_credentials()
    return connect("station-test", user, token)


class MemoryKeyring(KeyringBackend):
    """An OS keyring stand-in: this machine has no Secret Service, so the real
    `keyring` falls back to its fail backend."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.items.get((service, username))

    def set_password(self, service, username, password):
        self.items[(service, username)] = password

    def delete_password(self, service, username):
        self.items.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    """A working keyring for the test's duration."""
    before = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)


@pytest.fixture
def no_keyring() -> Iterator[None]:
    """No secure store at all, as on a headless Linux box."""
    before = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(before)


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL cluster per test session (tests/postgres.py)."""
    from postgres import PostgresServer

    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(pg_server, request) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    import uuid

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield pg_server.create_database(name)
    pg_server.drop_database(name)
