"""Per-device MQTT tokens: random, shown once, stored only as a hash.

A 256-bit random token cannot be guessed, so one SHA-256 is as strong as a slow
password hash here, and it costs ~1 µs on the broker's event loop where Argon2
would stall every client for ~190 ms (see docs/DESIGN.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCHEME = "sha256"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return f"{SCHEME}${hashlib.sha256(token.encode('utf-8')).hexdigest()}"


def verify_token(token: str | bytes | None, stored: str) -> bool:
    if token is None or not stored:
        return False
    if isinstance(token, bytes):
        try:
            token = token.decode("utf-8")
        except UnicodeDecodeError:
            return False
    scheme, _, _digest = stored.partition("$")
    if scheme != SCHEME:
        return False
    return hmac.compare_digest(hash_token(token), stored)
