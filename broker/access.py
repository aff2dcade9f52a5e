"""Who may connect, and which topics each client may use (PROTOCOL.md section 2).

Pure Python, no amqtt: the plugins in broker.plugins ask this object.

Roles:
- station: the station's own clients; full access.
- device: username = node_name = client id, token checked against its hash; publish
  and subscribe only under `<topic_prefix>/`, plus publish of its own Home Assistant
  discovery documents `homeassistant/<component>/<node_name>_<id>/config`.
- observer / operator: an integration account (station.registry.accounts: Home
  Assistant, Node-RED, MQTT Explorer...), any client id. An observer may read every
  topic but `$` ones other than `$SYS`, and publish only Home Assistant's birth/will
  topic `homeassistant/status`; an operator may also publish device commands,
  `<topic_root>/<node>/cmd`.
- anonymous clients, only when the operator turns them on (`allow_anonymous`): a
  monitor that may subscribe (read) but never publish, and never sees `$SYS`. An
  anonymous client never acts as a device, whatever client id it claims.
- seed-app devices, only when the operator turns that on (`seed_app_devices`): the
  seed's mobile app sends `/api/mqtt` without credentials, so a device registered
  through the backend API in that mode (Device.seed_app_login) may log in with its node
  name as client id and no token. Anyone who learns such a node name can then publish
  as that device: the risk is in docs/DESIGN.md and logged at start.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from station.registry.accounts import AccountCredentials
from station.registry.credentials import hash_token, verify_token
from station.registry.models import AccountRole
from station.registry.service import DeviceCredentials

log = logging.getLogger(__name__)

STATION_USERNAME = "station"
# Home Assistant's default birth and will topic (its MQTT integration's "birth message").
HA_STATUS_TOPIC = "homeassistant/status"
SYS_PREFIX = "$SYS/"
# A username the registry did not know is not asked for again this long: the registry
# read runs on the broker's loop (a network round trip on PostgreSQL), and a client
# retrying a wrong login must not turn into a query per attempt. A device or account
# added by another process is found at most this late (this process's own are at once).
MISS_TTL_S = 5.0
MAX_MISSES = 10_000


class Role(StrEnum):
    STATION = "station"
    DEVICE = "device"
    MONITOR = "monitor"
    OBSERVER = AccountRole.OBSERVER.value
    OPERATOR = AccountRole.OPERATOR.value


ACCOUNT_ROLES = (Role.OBSERVER, Role.OPERATOR)


@dataclass(frozen=True)
class Principal:
    role: Role
    username: str | None
    topic_prefix: str = ""
    node_name: str = ""


@dataclass(frozen=True)
class Decision:
    principal: Principal | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.principal is not None


def _has_wildcard(topic: str) -> bool:
    return "+" in topic or "#" in topic


def _is_sys(topic: str) -> bool:
    return topic == "$SYS" or topic.startswith(SYS_PREFIX)


class AccessControl:
    """Credential cache plus the ACL. Thread-safe: the registry adds devices from the
    provisioning thread while the broker loop authenticates."""

    def __init__(
        self,
        station_token: str,
        allow_anonymous: bool = False,
        seed_app_devices: bool = False,
        topic_root: str = "home",
    ) -> None:
        self._station_hash = hash_token(station_token)
        self.allow_anonymous = allow_anonymous
        self.seed_app_devices = seed_app_devices
        # Device topics are `<topic_root>/<node>/...` (station.registry.naming).
        self.topic_root = topic_root.strip("/")
        self._devices: dict[str, DeviceCredentials] = {}
        self._accounts: dict[str, AccountCredentials] = {}
        self._lock = threading.Lock()
        # A registry read for a username not in the cache (another process registered it).
        self.lookup: Callable[[str], DeviceCredentials | None] | None = None
        self.account_lookup: Callable[[str], AccountCredentials | None] | None = None
        # username -> monotonic time the registry did not know it (see MISS_TTL_S)
        self._device_misses: dict[str, float] = {}
        self._account_misses: dict[str, float] = {}
        self.lookups = 0  # registry reads made (tests, figures)
        self.clock: Callable[[], float] = time.monotonic

    # -- credentials -----------------------------------------------------------------

    def load(self, creds: list[DeviceCredentials]) -> None:
        with self._lock:
            self._devices = {c.username: c for c in creds}
            self._device_misses.clear()

    def upsert(self, cred: DeviceCredentials) -> None:
        with self._lock:
            self._devices[cred.username] = cred
            self._device_misses.pop(cred.username, None)

    def remove(self, username: str) -> None:
        with self._lock:
            self._devices.pop(username, None)

    def load_accounts(self, accounts: list[AccountCredentials]) -> None:
        with self._lock:
            self._accounts = {a.name: a for a in accounts}
            self._account_misses.clear()

    def forget_account(self, name: str) -> None:
        """Drop what is cached of an account (added, removed or rotated): the next login
        reads the registry."""
        with self._lock:
            self._accounts.pop(name, None)
            self._account_misses.pop(name, None)

    def _missed(self, misses: dict[str, float], name: str) -> bool:
        """Did the registry lately not know `name`? (Called with the lock held.)"""
        at = misses.get(name)
        if at is None:
            return False
        if self.clock() - at < MISS_TTL_S:
            return True
        del misses[name]
        return False

    def _miss(self, misses: dict[str, float], name: str) -> None:
        with self._lock:
            if len(misses) >= MAX_MISSES:
                misses.clear()  # many names tried: start again rather than grow
            misses[name] = self.clock()

    def _account(self, name: str) -> AccountCredentials | None:
        with self._lock:
            account = self._accounts.get(name)
            if account is not None or self._missed(self._account_misses, name):
                return account
        if self.account_lookup is None:
            return None
        self.lookups += 1
        account = self.account_lookup(name)  # added by `station accounts add` since start
        if account is None:
            self._miss(self._account_misses, name)
        else:
            with self._lock:
                self._accounts[name] = account
        return account

    def _device(self, username: str) -> DeviceCredentials | None:
        with self._lock:
            cred = self._devices.get(username)
            if cred is not None or self._missed(self._device_misses, username):
                return cred
        if self.lookup is None:
            return None
        # A device registered by another process (shared database) since start.
        self.lookups += 1
        cred = self.lookup(username)
        if cred is None:
            self._miss(self._device_misses, username)
        else:
            self.upsert(cred)
        return cred

    # -- connect -----------------------------------------------------------------------

    def authenticate(
        self,
        client_id: str | None,
        username: str | None,
        password: str | bytes | None,
        will_topic: str | None = None,
    ) -> Decision:
        if not username:
            cred = self._device(client_id) if client_id else None
            if cred is not None:
                # A client without credentials claiming a device's name: only a device
                # of the seed's app, and only while that mode is on.
                if self.seed_app_devices and cred.seed_app_login:
                    return self._device_decision(cred, will_topic, "seed-app device (no token)")
                return Decision(None, f"{client_id!r} is a device: it must log in with its token")
            if not self.allow_anonymous:
                return Decision(None, "anonymous clients are not allowed")
            if will_topic:
                return Decision(None, "anonymous clients may not set a will")
            return Decision(Principal(Role.MONITOR, None), "anonymous monitor")
        if username == STATION_USERNAME:
            if password is not None and verify_token(password, self._station_hash):
                return Decision(Principal(Role.STATION, username), "station client")
            return Decision(None, "bad station credentials")
        account = self._account(username)
        if account is not None:
            return self._account_decision(account, password, will_topic)
        cred = self._device(username)
        if cred is None:
            return Decision(None, f"unknown user {username!r}")
        if not verify_token(password, cred.token_hash):
            return Decision(None, f"wrong token for {username!r}")
        if client_id is None or not hmac.compare_digest(client_id, username):
            return Decision(None, f"client id {client_id!r} does not match user {username!r}")
        return self._device_decision(cred, will_topic, "device")

    def _account_decision(
        self, account: AccountCredentials, password: str | bytes | None, will_topic: str | None
    ) -> Decision:
        if not verify_token(password, account.password_hash):
            return Decision(None, f"wrong password for account {account.name!r}")
        role = Role.OPERATOR if account.role is AccountRole.OPERATOR else Role.OBSERVER
        principal = Principal(role, account.name, self.topic_root)
        if will_topic is not None and not self.may_publish(principal, will_topic):
            return Decision(
                None,
                f"will topic {will_topic!r}: a {role} account may set its will only on "
                f"{HA_STATUS_TOPIC}",
            )
        return Decision(principal, f"{role} account")

    def _device_decision(
        self, cred: DeviceCredentials, will_topic: str | None, reason: str
    ) -> Decision:
        principal = Principal(Role.DEVICE, cred.username, cred.topic_prefix, cred.node_name)
        # Wills bypass amqtt's topic plugins, so the will topic is checked here.
        if will_topic is not None and not self.may_publish(principal, will_topic):
            return Decision(None, f"will topic {will_topic!r} outside {cred.topic_prefix}/")
        return Decision(principal, reason)

    # -- topics ------------------------------------------------------------------------

    @staticmethod
    def _is_command_topic(root: str, topic: str) -> bool:
        """`<root>/<node>/cmd`: a device's command topic (naming.topic_prefix + /cmd)."""
        if root:
            if not topic.startswith(root + "/"):
                return False
            topic = topic[len(root) + 1 :]
        node, slash, leaf = topic.partition("/")
        return bool(node) and slash == "/" and leaf == "cmd"

    @staticmethod
    def may_publish(principal: Principal, topic: str) -> bool:
        if principal.role is Role.STATION:
            return True
        if principal.role in ACCOUNT_ROLES:
            if topic == HA_STATUS_TOPIC:
                return True
            return principal.role is Role.OPERATOR and AccessControl._is_command_topic(
                principal.topic_prefix, topic
            )
        if principal.role is not Role.DEVICE or _has_wildcard(topic) or topic.startswith("$"):
            return False
        if topic.startswith(principal.topic_prefix + "/"):
            return True
        parts = topic.split("/")
        return (
            len(parts) == 4
            and parts[0] == "homeassistant"
            and parts[1] != ""
            and parts[2].startswith(principal.node_name + "_")
            and parts[3] == "config"
        )

    @staticmethod
    def may_subscribe(principal: Principal, topic_filter: str) -> bool:
        if principal.role is Role.STATION:
            return True
        if principal.role is Role.MONITOR:
            # `#` and `+/...` never match `$SYS` topics (MQTT 4.7.2), so this keeps $SYS out.
            return not topic_filter.startswith("$")
        if principal.role in ACCOUNT_ROLES:
            return not topic_filter.startswith("$") or _is_sys(topic_filter)
        # The filter must start with the literal prefix, so no wildcard can reach
        # another device's topics.
        return topic_filter.startswith(principal.topic_prefix + "/")

    @staticmethod
    def may_receive(principal: Principal, topic: str) -> bool:
        if principal.role is Role.STATION:
            return True
        if principal.role is Role.MONITOR:
            return not topic.startswith("$")
        if principal.role in ACCOUNT_ROLES:
            return not topic.startswith("$") or _is_sys(topic)
        return topic.startswith(principal.topic_prefix + "/")
