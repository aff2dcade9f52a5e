"""How a second `station` process reaches the station that is running on this computer.

`station devices command NODE …` and `station devices remove NODE` run while the GUI or
`station broker` may be running with the embedded broker. The devices are connected to
that broker, and its login cache holds their credentials, so a command or a removal must
go through it. The running station announces itself in a small file, and the CLI
connects to its broker as one of the station's own clients:

- the file lives in the station's data dir (`run/<registry>.json`, one per registry) and
  holds the process id, the broker's loopback address and port, and the per-run station
  token. The token is random, valid only while that process runs, and the file is
  created with mode 0600 (owner only) and removed on stop: the same model as Jupyter's
  runtime files. Storing it hashed would not do (the CLI must present it), and a keyring
  is not there on the headless machines this must work on (docs/DESIGN.md).
- commands are published to `<prefix>/cmd` and the reply awaited on `<prefix>/event`;
  retained topics are cleared by zero-byte retained publishes (MQTT-3.3.1-10); a removed
  device's login is revoked by a message on `station-control/device_removed`, which the
  broker accepts only from a station client (broker/station_broker.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.errors import StationError
from station.registry.models import Device
from station.settings import data_dir

if TYPE_CHECKING:
    from broker import EmbeddedBroker

log = logging.getLogger(__name__)

# Not a `$` topic: amqtt closes a client that publishes one (MQTT-4.7.2-1). The broker
# takes these only from the station's own clients and never routes them.
CONTROL_PREFIX = "station-control/"
CONTROL_REMOVED = CONTROL_PREFIX + "device_removed"
# An integration account was removed or got a new password: its cached login goes and
# its connections are closed (the payload is the account name).
CONTROL_ACCOUNT = CONTROL_PREFIX + "account_changed"


class NotRunning(StationError):
    """No station with a broker runs on this computer for this registry."""


@dataclass(frozen=True)
class Announcement:
    pid: int
    host: str
    port: int
    username: str
    token: str
    registry: str


def announcement_path(registry_location: str) -> Path:
    key = hashlib.sha256(registry_location.encode()).hexdigest()[:16]
    return data_dir() / "run" / f"{key}.json"


def announce(broker: EmbeddedBroker, registry_location: str) -> Path:
    """Write the running broker's announcement (mode 0600, atomically); returns its path."""
    username, token = broker.station_credentials()
    doc = {
        "pid": os.getpid(),
        "host": "127.0.0.1",
        "port": broker.port,
        "username": username,
        "token": token,
        "registry": registry_location,
    }
    path = announcement_path(registry_location)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)
    return path


def withdraw(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find(registry_location: str) -> Announcement | None:
    """The running station for this registry, or None (a stale file is ignored)."""
    path = announcement_path(registry_location)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        ann = Announcement(
            int(doc["pid"]),
            str(doc["host"]),
            int(doc["port"]),
            str(doc["username"]),
            str(doc["token"]),
            str(doc["registry"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if ann.registry != registry_location or not _alive(ann.pid):
        return None
    return ann


class RemoteBroker:
    """The running station's broker, seen from another process (station.device_ops'
    Broker protocol). A paho-mqtt client logged in as the station."""

    def __init__(self, ann: Announcement, timeout: float = 5.0) -> None:
        import paho.mqtt.client as paho

        self.timeout = timeout
        self._lock = threading.Lock()
        self._messages: list[tuple[str, bytes, bool]] = []
        self._acks: set[int] = set()
        self._connected = threading.Event()
        self._rc: Any = None
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"station-cli-{os.getpid()}")
        c.username_pw_set(ann.username, ann.token)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c
        try:
            c.connect(ann.host, ann.port, keepalive=30)
        except OSError as exc:
            raise NotRunning(
                f"cannot reach the station's broker on port {ann.port}: {exc}"
            ) from exc
        c.loop_start()
        if not self._connected.wait(timeout) or self._rc != 0:
            self.close()
            raise NotRunning(f"the station's broker did not accept this command ({self._rc})")

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, rc: Any, _p: Any = None) -> None:
        self._rc = rc
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self._messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, *_a: Any) -> None:
        with self._lock:
            self._acks.add(mid)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> RemoteBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _subscribe(self, topic_filter: str) -> None:
        _rc, mid = self.client.subscribe(topic_filter, qos=1)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            with self._lock:
                if mid in self._acks:
                    return
            time.sleep(0.01)
        raise StationError(f"the station's broker did not answer a subscribe to {topic_filter}")

    def _publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise StationError(f"the station's broker did not take the message on {topic}")

    # -- station.device_ops.Broker --------------------------------------------------------

    def send_command(self, device: Device, command: dict[str, Any]) -> None:
        from station import commands

        doc = commands.check(command)
        self._subscribe(f"{device.topic_prefix}/event")  # before sending: no reply missed
        self._publish(f"{device.topic_prefix}/cmd", json.dumps(doc).encode())

    def wait_reply(self, device: Device, name: str, timeout: float = 10.0) -> dict | None:
        """The device's answer to command `name` on its event topic, or None."""
        topic = f"{device.topic_prefix}/event"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for t, payload, _retained in self._messages:
                    if t != topic:
                        continue
                    try:
                        doc = json.loads(payload)
                    except ValueError:
                        continue
                    # A reply has `cmd` (None: the device could not read one); a
                    # progress report (`event`: ota, set_broker) is not a reply.
                    if (
                        isinstance(doc, dict)
                        and doc.get("cmd") in (name, None)
                        and "event" not in doc
                    ):
                        return doc
            time.sleep(0.05)
        return None

    def device_registered(self, device: Device, token: str | None = None) -> None:
        pass  # the running broker reads new devices from the registry on their first login

    def device_removed(self, device: Device) -> None:
        self._publish(CONTROL_REMOVED, device.mqtt_username.encode())

    def account_changed(self, name: str) -> None:
        self._publish(CONTROL_ACCOUNT, name.encode())

    def retained_topics(self, topic_filter: str) -> list[str]:
        """What the broker replays to a new subscriber (its retained messages)."""
        self._subscribe(topic_filter)
        time.sleep(0.3)  # the replay follows the SUBACK at once; give it a moment
        from paho.mqtt.client import topic_matches_sub

        with self._lock:
            return sorted(
                {
                    t
                    for t, payload, retained in self._messages
                    if retained and payload and topic_matches_sub(topic_filter, t)
                }
            )

    def clear_retained(self, topics: list[str]) -> list[str]:
        held = set(self.retained_topics("#")) if topics else set()
        cleared = [t for t in topics if t in held]
        for topic in cleared:
            self._publish(topic, b"", retain=True)
        return cleared


class NoBroker:
    """No station runs: the registry alone is changed. The embedded broker keeps retained
    messages and logins in memory only, so there is nothing of the device left to clear;
    the next station start loads the registry as it is then."""

    def send_command(self, device: Device, command: dict[str, Any]) -> None:
        raise NotRunning(
            "No station is running for this registry, so nothing can reach the device now: "
            "start `station` (or `station broker`), then send the command again. Commands "
            "are not queued: a device gets them only while it is connected."
        )

    def device_registered(self, device: Device, token: str | None = None) -> None:
        pass

    def device_removed(self, device: Device) -> None:
        pass

    def account_changed(self, name: str) -> None:
        pass  # no broker runs: the next one reads the accounts as they are then

    def retained_topics(self, topic_filter: str) -> list[str]:
        return []

    def clear_retained(self, topics: list[str]) -> list[str]:
        return []


def connect(registry_location: str) -> RemoteBroker | None:
    """The running station's broker for this registry, or None when none runs."""
    ann = find(registry_location)
    return RemoteBroker(ann) if ann is not None else None
