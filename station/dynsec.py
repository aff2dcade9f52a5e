"""Per-device logins on an external Mosquitto, through its dynamic-security plugin.

The station logs in to the home's broker with the admin account the user gave once,
and sends JSON commands to `$CONTROL/dynamic-security/v1`; each answer comes back on
`.../v1/response` with the same correlation data. A device gets what it has on the
embedded broker (PROTOCOL.md section 2):

- a role `station-device-<node>` with the device's ACLs: publish and subscribe under
  `<prefix>/`, publish its two Home Assistant discovery documents;
- a client: username = node name, client id pinned to the node name, password = the
  token the registry issued (Mosquitto keeps its own salted hash of it).

A removed or re-provisioned device's client is disabled (Mosquitto also kicks its live
connection) and deleted with its role. The station follows and commands the fleet as
a client of its own with a role `station-operator` (read the device and discovery
topics, publish commands, clear retained topics), created through the same
interface (`station_client`), not as the admin: the admin role
`mosquitto_ctrl dynsec init` makes may read everything but publish nothing outside
`$CONTROL`, and Mosquitto disconnects a client whose roles change.

Errors in a response are raised as DynSecError with the plugin's own words; the
caller turns them into the seed's (a refused registration is the seed's "Failed to
register device").
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho

from station.broker_target import connect_error, tls_context
from station.errors import StationError

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
STATION_ROLE = "station-operator"
DEVICE_ROLE_PREFIX = "station-device-"
# The discovery documents a device publishes (PROTOCOL.md section 2).
DISCOVERY_KINDS = ("temperature", "humidity")
TIMEOUT_S = 5.0


class DynSecError(StationError):
    """The broker, the login or the dynamic-security plugin refused or did not answer
    (`unanswered`: no answer came, so trying again later may work)."""

    def __init__(self, message: str, *, unanswered: bool = False) -> None:
        super().__init__(message)
        self.unanswered = unanswered


@dataclass(frozen=True)
class AdminLogin:
    host: str
    port: int
    username: str
    password: str
    tls: bool = False
    ca: str | None = None  # PEM: the CA the broker's certificate is checked with


def device_acls(topic_prefix: str, node_name: str) -> list[dict[str, Any]]:
    """The device's rules of the embedded broker, as dynamic-security ACLs."""
    own = f"{topic_prefix}/#"
    acls: list[dict[str, Any]] = [
        {"acltype": "publishClientSend", "topic": own, "allow": True},
        {"acltype": "subscribePattern", "topic": own, "allow": True},
        {"acltype": "publishClientReceive", "topic": own, "allow": True},
    ]
    acls += [
        {
            "acltype": "publishClientSend",
            "topic": f"homeassistant/sensor/{node_name}_{kind}/config",
            "allow": True,
        }
        for kind in DISCOVERY_KINDS
    ]
    return acls


def station_acls(topic_root: str) -> list[dict[str, Any]]:
    """What the station itself does on the home's broker."""
    root = f"{topic_root.strip('/')}/#" if topic_root.strip("/") else "#"
    acls: list[dict[str, Any]] = []
    for topic in (root, "homeassistant/#"):
        acls += [
            {"acltype": "subscribePattern", "topic": topic, "allow": True},
            {"acltype": "publishClientReceive", "topic": topic, "allow": True},
            # commands, and zero-byte retained publishes that clear a removed device's topics
            {"acltype": "publishClientSend", "topic": topic, "allow": True},
        ]
    return acls


class DynSec:
    """A connection to the broker as its admin. Thread-safe; use as a context manager."""

    def __init__(self, login: AdminLogin, timeout: float = TIMEOUT_S) -> None:
        self.login = login
        self.timeout = timeout
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        self._answered = threading.Condition(self._lock)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._rc: Any = None
        c = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"esp32-station-admin-{secrets.token_hex(4)}",
            protocol=paho.MQTTv311,
        )
        c.username_pw_set(login.username, login.password)
        if login.tls:
            c.tls_set_context(tls_context(login.ca))
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda *_a: self._subscribed.set()
        self.client = c

    # -- connection --------------------------------------------------------------------

    def open(self) -> DynSec:
        where = f"{self.login.host}:{self.login.port}"
        try:
            self.client.connect(self.login.host, self.login.port, keepalive=30)
        except OSError as exc:
            raise DynSecError(connect_error(exc, where, self.login.tls)) from None
        self.client.loop_start()
        if not self._connected.wait(self.timeout):
            self.close()
            raise DynSecError(f"the MQTT broker at {where} did not answer the login")
        if self._rc != 0:
            self.close()
            raise DynSecError(
                f"the MQTT broker at {where} refused the admin login "
                f"{self.login.username!r}: {self._rc}"
            )
        self.client.subscribe(RESPONSE_TOPIC, qos=1)
        if not self._subscribed.wait(self.timeout):
            self.close()
            raise DynSecError(f"the MQTT broker at {where} did not answer a subscribe")
        return self

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> DynSec:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(self, c: Any, _u: Any, _flags: Any, rc: Any, _p: Any = None) -> None:
        self._rc = rc
        if self._subscribed.is_set() and not rc.is_failure:
            # paho reconnected (the broker restarted): a clean session lost the
            # subscription to the answers, so every command would time out.
            c.subscribe(RESPONSE_TOPIC, qos=1)
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        with self._lock:
            for answer in doc.get("responses", []) if isinstance(doc, dict) else []:
                key = answer.get("correlationData")
                if isinstance(key, str):
                    self._answers[key] = answer
            self._answered.notify_all()

    # -- commands ----------------------------------------------------------------------

    def run(
        self,
        *commands: dict[str, Any],
        tolerate: Iterable[str] = (),
        timeout: float | None = None,
    ) -> list[dict]:
        """Send commands in one message and wait for every answer; an answer with an
        error not in `tolerate` (e.g. "Client not found" when deleting) raises."""
        wait = self.timeout if timeout is None else timeout
        keys = [secrets.token_hex(8) for _ in commands]
        doc = {
            "commands": [{**c, "correlationData": k} for c, k in zip(commands, keys, strict=True)]
        }
        # QoS 0: a command that cannot go now is not kept by paho and replayed later,
        # out of order with its retry (a late createClient after a newer one).
        info = self.client.publish(CONTROL_TOPIC, json.dumps(doc), qos=0)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise DynSecError(
                f"not connected to the MQTT broker at {self.login.host}:{self.login.port}",
                unanswered=True,
            )
        deadline = time.monotonic() + wait
        with self._lock:
            while not all(k in self._answers for k in keys):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = ", ".join(c["command"] for c in commands)
                    raise DynSecError(
                        f"the MQTT broker at {self.login.host}:{self.login.port} did not "
                        f"answer {names}: is its dynamic-security plugin loaded, and may "
                        f"{self.login.username!r} use it?",
                        unanswered=True,
                    )
                self._answered.wait(left)
            answers = [self._answers.pop(k) for k in keys]
        allowed = set(tolerate)
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and error not in allowed:
                raise DynSecError(f"the broker refused {command['command']}: {error}")
        return answers

    def check(self) -> None:
        """Before a batch: the plugin answers this login's commands."""
        self.run({"command": "getDefaultACLAccess"})

    def station_client(self, username: str, topic_root: str, password: str | None = None) -> str:
        """The station's own client on this broker (following and commanding the
        devices), with a new random password, or with `password` (the one this station
        keeps in its keyring): then an existing client's password is left as it is,
        since Mosquitto disconnects a client whose password is set, even to the same
        one (another process of this station using it). Returns the password.

        A client of its own, not the admin's: Mosquitto disconnects a client whose
        roles change, and the user's admin account is theirs. The role is created once
        and never modified (modifying it would disconnect every station using it)."""
        keep = password is not None
        password = password or secrets.token_urlsafe(32)
        self.run(
            {"command": "createRole", "rolename": STATION_ROLE, "acls": station_acls(topic_root)},
            tolerate=("Role already exists",),
        )
        self.run(
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "textname": "ESP32 provisioning station",
                "roles": [{"rolename": STATION_ROLE}],
            },
            tolerate=("Client already exists",),
        )
        if not keep:
            self.run({"command": "setClientPassword", "username": username, "password": password})
        return password

    def add_device(
        self, node_name: str, token: str, topic_prefix: str, timeout: float | None = None
    ) -> None:
        """Create (or replace) the device's role and client."""
        self.remove_device(node_name, timeout=timeout)
        role = DEVICE_ROLE_PREFIX + node_name
        self.run(
            {
                "command": "createRole",
                "rolename": role,
                "acls": device_acls(topic_prefix, node_name),
            },
            {
                "command": "createClient",
                "username": node_name,
                "password": token,
                "clientid": node_name,
                "textname": f"ESP32 sensor {node_name} (esp32 provisioning station)",
                "roles": [{"rolename": role}],
            },
            timeout=timeout,
        )
        log.info("external broker: login for %s created", node_name)

    def remove_device(self, node_name: str, timeout: float | None = None) -> None:
        """Disable (kicking a live connection) and delete the device's client and role;
        nothing there is fine."""
        missing = ("Client not found", "Role not found")
        self.run(
            {"command": "disableClient", "username": node_name},
            {"command": "deleteClient", "username": node_name},
            {"command": "deleteRole", "rolename": DEVICE_ROLE_PREFIX + node_name},
            tolerate=missing,
            timeout=timeout,
        )
