"""Where a home's devices report: the station's embedded broker, or an external MQTT
broker given by URL (the customer's permanent Mosquitto, a company broker).

    target = parse("mqtts://admin:secret@broker.local:8883")
    target.url            # "mqtts://broker.local:8883": what the registry stores
    target.login          # ("admin", "secret"): what goes to the OS keyring

A URL may carry the station's admin login; it is taken out of the URL, kept in the
keyring (station.secrets) and never stored or logged in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from station.errors import ConfigError

EMBEDDED = "embedded"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class BrokerTarget:
    scheme: str  # mqtt | mqtts
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    @property
    def url(self) -> str:
        """The URL without any login: what the registry and the logs hold."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def key(self) -> str:
        """The keyring entry of this broker's admin login."""
        return f"broker:{self.url}"

    @property
    def login(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return self.username, self.password


def parse(text: str) -> BrokerTarget | None:
    """A broker URL, or None for `embedded` (this station's broker)."""
    text = text.strip()
    if text.lower() == EMBEDDED:
        return None
    hint = "use embedded, mqtt://host[:port] or mqtts://host[:port] (a login as user:pass@host)"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"broker {_redact(text)!r}: {exc}; {hint}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(f"broker {_redact(text)!r}: unknown scheme; {hint}")
    if not parts.hostname:
        raise ConfigError(f"broker {_redact(text)!r}: no host; {hint}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"broker {_redact(text)!r}: only scheme, login, host and port; {hint}")
    return BrokerTarget(
        scheme,
        parts.hostname,
        port or DEFAULT_PORTS[scheme],
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password is not None else None,
    )


def _redact(text: str) -> str:
    """The URL as it may appear in a message: any password replaced."""
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest:
        return text
    login, _, host = rest.rpartition("@")
    user = login.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in login else text
