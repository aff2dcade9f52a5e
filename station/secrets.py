"""Home WiFi passwords and external brokers' admin logins in the OS keyring (Secret
Service, macOS Keychain, Windows Credential Locker), never in the registry or the
settings file.

Where no keyring exists (a headless Linux box without Secret Service: keyring
falls back to its `fail` backend), passwords are kept in memory for this run only
and `persistent` says so, so the GUI and CLI can tell the user plainly.
"""

from __future__ import annotations

import contextlib
import json
import logging

import keyring
from keyring.errors import KeyringError, NoKeyringError, PasswordDeleteError

log = logging.getLogger(__name__)

SERVICE = "esp32-provisioning-station"


def _key(home_id: int) -> str:
    return f"home:{home_id}:wifi"


class SecretStore:
    def __init__(self) -> None:
        self._memory: dict[str, str] = {}
        self.persistent = self._probe()

    @staticmethod
    def _probe() -> bool:
        backend = keyring.get_keyring()
        # keyring's priority is < 1 for backends that cannot store anything safely
        # (fail.Keyring, null.Keyring, chainer with nothing behind it).
        priority = getattr(backend, "priority", 0)
        return priority >= 1 and type(backend).__module__.split(".")[-1] not in ("fail", "null")

    @property
    def description(self) -> str:
        if self.persistent:
            return f"OS keyring ({type(keyring.get_keyring()).__name__})"
        return "memory only: no OS keyring found, passwords are asked again next run"

    # -- any secret, by key -----------------------------------------------------------

    def _set(self, key: str, secret: str) -> None:
        if self.persistent:
            try:
                keyring.set_password(SERVICE, key, secret)
                return
            except (NoKeyringError, KeyringError) as exc:
                log.warning(
                    "keyring refused to store a secret (%s); keeping it in memory for "
                    "this run only",
                    type(exc).__name__,
                )
                self.persistent = False
        self._memory[key] = secret

    def _get(self, key: str) -> str | None:
        if key in self._memory:
            return self._memory[key]
        if not self.persistent:
            return None
        try:
            return keyring.get_password(SERVICE, key)
        except (NoKeyringError, KeyringError):
            return None

    def _delete(self, key: str) -> None:
        self._memory.pop(key, None)
        if self.persistent:
            # Deleting what is not there is fine.
            with contextlib.suppress(PasswordDeleteError, NoKeyringError, KeyringError):
                keyring.delete_password(SERVICE, key)

    # -- home WiFi passwords -----------------------------------------------------------

    def set_home_password(self, home_id: int, password: str) -> None:
        self._set(_key(home_id), password)

    def home_password(self, home_id: int) -> str | None:
        return self._get(_key(home_id))

    def delete_home_password(self, home_id: int) -> None:
        self._delete(_key(home_id))

    # -- external brokers' admin logins (station.broker_target) ------------------------

    def set_broker_login(self, key: str, username: str, password: str) -> None:
        self._set(key, json.dumps({"username": username, "password": password}))

    def broker_login(self, key: str) -> tuple[str, str] | None:
        raw = self._get(key)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            return str(doc["username"]), str(doc["password"])
        except (ValueError, KeyError, TypeError):
            return None

    def delete_broker_login(self, key: str) -> None:
        self._delete(key)
