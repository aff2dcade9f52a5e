"""Where a home's devices report: the station's embedded broker, or an external MQTT
broker given by URL (the customer's permanent Mosquitto, a company broker).

    target = parse("mqtts://admin:secret@broker.local:8883")
    target.url            # "mqtts://broker.local:8883": what the registry stores
    target.login          # ("admin", "secret"): what goes to the OS keyring

A URL may carry the station's admin login; it is taken out of the URL, kept in the
keyring (station.secrets) and never stored or logged in clear.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from station.errors import ConfigError

EMBEDDED = "embedded"
DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
# A CA goes to every device in its /api/mqtt body (firmware/validate.py takes at most
# this much): one certificate, as a broker's CA is; an RSA-4096 one is ~2 KB.
CA_MAX_CHARS = 4096
_PEM_CERT = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----"
)


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


def load_ca(path: str | Path) -> str:
    """The CA certificate in a PEM file, checked: what a home's mqtts:// broker is
    verified with (by the station and by every device). ConfigError says what is wrong."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"CA certificate {str(path)!r}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"CA certificate {str(path)!r}: cannot read it ({exc})") from None
    return check_ca(text, str(path))


def check_ca(text: str, where: str = "CA certificate") -> str:
    """One PEM certificate (surrounding text dropped), or ConfigError."""
    found = _PEM_CERT.findall(text)
    if not found:
        raise ConfigError(f"{where}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it")
    if len(found) > 1:
        raise ConfigError(
            f"{where}: {len(found)} certificates; give the one CA that signed the broker's"
        )
    pem = found[0].replace("\r\n", "\n") + "\n"
    if len(pem) > CA_MAX_CHARS:
        raise ConfigError(f"{where}: {len(pem)} characters, devices take at most {CA_MAX_CHARS}")
    try:
        ssl.create_default_context(cadata=pem)
    except ssl.SSLError as exc:
        raise ConfigError(f"{where}: not a certificate ({exc.reason or exc})") from None
    return pem


def tls_context(ca: str | None) -> ssl.SSLContext:
    """How the station verifies an mqtts:// broker: by the home's CA when it has one,
    else by the system's CAs (a broker with a public certificate). Host names are
    checked either way."""
    return ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()


def connect_error(exc: OSError, where: str, tls: bool = False) -> str:
    """A failed connect to a broker, in words that say what to fix. `tls`: the
    connect included a TLS handshake (a plain port resets it)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the MQTT broker at {where} has a certificate the station does not trust "
            f"({exc.verify_message or exc.reason}): give the CA that signed it (--ca FILE)"
        )
    if isinstance(exc, ssl.SSLError) or (tls and isinstance(exc, ConnectionError)):
        return (
            f"no TLS with the MQTT broker at {where} ({getattr(exc, 'reason', None) or exc}): "
            "is it an mqtts:// (TLS) port?"
        )
    return f"cannot reach the MQTT broker at {where}: {exc}"


def _redact(text: str) -> str:
    """The URL as it may appear in a message: any password replaced, also in a URL
    typed wrong (`mqtt//admin:pw@host`, no scheme)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, sep, rest = "", "", text
    if "@" not in rest:
        return text
    login, _, host = rest.rpartition("@")
    head, colon, _password = login.partition(":")
    if not colon:
        return text
    return f"{scheme}{sep}{head}:***@{host}"
