"""Home WiFi passwords in the OS keyring (Secret Service, macOS Keychain, Windows
Credential Locker), never in the registry or the settings file.

Where no keyring exists (a headless Linux box without Secret Service: keyring
falls back to its `fail` backend), passwords are kept in memory for this run only
and `persistent` says so, so the GUI and CLI can tell the user plainly.
"""

from __future__ import annotations

import contextlib
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

    def set_home_password(self, home_id: int, password: str) -> None:
        key = _key(home_id)
        if self.persistent:
            try:
                keyring.set_password(SERVICE, key, password)
                return
            except (NoKeyringError, KeyringError) as exc:
                log.warning(
                    "keyring refused to store the password (%s); keeping it in "
                    "memory for this run only",
                    type(exc).__name__,
                )
                self.persistent = False
        self._memory[key] = password

    def home_password(self, home_id: int) -> str | None:
        key = _key(home_id)
        if key in self._memory:
            return self._memory[key]
        if not self.persistent:
            return None
        try:
            return keyring.get_password(SERVICE, key)
        except (NoKeyringError, KeyringError):
            return None

    def delete_home_password(self, home_id: int) -> None:
        key = _key(home_id)
        self._memory.pop(key, None)
        if self.persistent:
            # Deleting what is not there is fine.
            with contextlib.suppress(PasswordDeleteError, NoKeyringError, KeyringError):
                keyring.delete_password(SERVICE, key)
