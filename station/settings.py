"""The station's settings: one dataclass, persisted as JSON in the user's config dir.

Secrets never live here: home WiFi passwords go to the OS keyring (station.secrets),
device tokens are stored hashed in the registry.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from station.errors import ConfigError

log = logging.getLogger(__name__)

APP_NAME = "esp32-provisioning-station"


def data_dir() -> Path:
    """Where the registry database and journals live (override: STATION_DATA_DIR)."""
    override = os.environ.get("STATION_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME))


def station_id() -> str:
    """This station's name in a registry that several stations share: the jobs it
    runs carry it, so each resumes only its own. STATION_ID overrides; otherwise made
    once (host name + random suffix) and kept in the data directory."""
    override = os.environ.get("STATION_ID", "").strip()
    if override:
        return override[:64]
    path = data_dir() / "station-id"
    try:
        found = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        found = ""
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if found:
        return found[:64]
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in "-_")[:40]
    made = f"{host or 'station'}-{secrets.token_hex(4)}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(made + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc}") from exc
    return made


def config_path() -> Path:
    override = os.environ.get("STATION_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir(APP_NAME)) / "settings.json"


@dataclass
class BrokerSettings:
    bind_host: str = "0.0.0.0"
    port: int = 1883
    # Address devices are told to use (the laptop's LAN address); None = detect at start.
    advertise_host: str | None = None
    # TCP port firmware bundles are served on while an update runs (station fleet
    # update, the window's Update firmware); 0 = a free one. Fix it to open it in the
    # laptop's firewall, as the broker's port.
    bundle_port: int = 0
    # Anonymous clients (no username) may subscribe, read-only; never act as a device.
    allow_anonymous: bool = False
    # The seed's mobile app sends /api/mqtt without credentials. On: devices registered
    # through the backend API (station backend-api) while this is on may log in with no
    # token, by node name alone. Off by default: anyone on the LAN who learns such a node
    # name can then publish as that device (docs/DESIGN.md).
    seed_app_devices: bool = False
    max_connections: int = 2000
    # Grace added to a client's keep-alive before it is dropped (MQTT says 1.5x keep-alive).
    keepalive_factor: float = 1.5
    # Freeze startup objects and collect less often: amqtt allocates per message, and
    # default GC passes stall the loop for tens of ms at 1000 devices (docs/PERFORMANCE.md).
    gc_tuning: bool = True
    # "auto" = uvloop where installed, else asyncio's own loop.
    event_loop: str = "auto"
    # Bad input (docs/DESIGN.md "Bad input at the broker"). A connection that has not
    # sent a whole CONNECT this many seconds after it opened is closed.
    connect_timeout_s: float = 10.0
    # Largest packet (its remaining length, bytes) taken before the CONNECT is
    # accepted: the CONNECT itself, will included.
    max_packet_connect: int = 65_536
    # ... from a device: the firmware's largest packet is a ~1 KB Home Assistant
    # discovery document, so 64 KiB is 60x its need and stops a 64 MiB publish.
    max_packet_device: int = 65_536
    # ... from the station's own clients and integration accounts (roles station,
    # monitor, observer, operator); a role not known here gets the device limit.
    max_packet_client: int = 1_048_576


@dataclass
class RegistrySettings:
    # None = SQLite file in data_dir(); else a path, ":memory:" or a peewee URL.
    url: str | None = None
    # Minimum spacing between stored Reading rows per device (the device table always
    # shows the latest state; history is for charts).
    reading_min_interval_s: float = 10.0
    reading_retention_days: int = 30


@dataclass
class ProvisioningSettings:
    setup_ssid_prefix: str = "esp32-dht11-Setup"
    setup_passphrase: str = "12345678"
    node_name_prefix: str = "esp32_dht11_"
    topic_root: str = "home"
    wifi_backend: str = "auto"
    wifi_connect_timeout_s: float = 30.0
    online_timeout_s: float = 60.0
    # Devices configured per trip away from home before the laptop returns and waits for
    # them on the broker (devices cannot reach the station's broker while it is away).
    batch_size: int = 8
    # ... and at most this long after the first of them restarted: a device whose
    # new config has never reached its broker goes back to setup mode after ~60 s.
    max_away_s: float = 40.0
    telemetry_interval_s: int = 10


@dataclass
class Settings:
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    provisioning: ProvisioningSettings = field(default_factory=ProvisioningSettings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> Settings:
        """Build settings from a dict, rejecting unknown keys and wrong types by name."""
        if not isinstance(raw, dict):
            raise ConfigError("settings must be a JSON object")
        kwargs: dict[str, Any] = {}
        for name, value in raw.items():
            if name not in _SECTIONS:
                raise ConfigError(f"unknown settings section {name!r}")
            kwargs[name] = _section(_SECTIONS[name], name, value)
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def validate(self) -> None:
        # 0 = any free port (tests, or several stations on one machine).
        if not 0 <= self.broker.port <= 65535:
            raise ConfigError(f"broker.port must be 0-65535, got {self.broker.port}")
        if not 0 <= self.broker.bundle_port <= 65535:
            raise ConfigError(f"broker.bundle_port must be 0-65535, got {self.broker.bundle_port}")
        if self.broker.keepalive_factor < 1.0:
            raise ConfigError("broker.keepalive_factor must be at least 1.0")
        p = self.provisioning
        if not 8 <= len(p.setup_passphrase) <= 63:
            raise ConfigError("provisioning.setup_passphrase must be 8-63 characters (WPA2)")
        if p.max_away_s <= 0:
            raise ConfigError("provisioning.max_away_s must be positive")
        if p.batch_size < 1:
            raise ConfigError("provisioning.batch_size must be at least 1")
        if p.online_timeout_s <= 0 or p.wifi_connect_timeout_s <= 0:
            raise ConfigError("provisioning timeouts must be positive")


_SECTIONS: dict[str, type] = {
    "broker": BrokerSettings,
    "registry": RegistrySettings,
    "provisioning": ProvisioningSettings,
}


def _section(section_cls: type, name: str, value: object) -> object:
    if not isinstance(value, dict):
        raise ConfigError(f"settings section {name!r} must be an object")
    known = {f.name: f for f in dataclasses.fields(section_cls)}
    defaults = section_cls()
    for key, item in value.items():
        if key not in known:
            raise ConfigError(f"unknown setting {name}.{key}")
        expected = type(getattr(defaults, key))
        if getattr(defaults, key) is None or item is None:
            continue
        if expected is float and isinstance(item, int) and not isinstance(item, bool):
            continue
        if not isinstance(item, expected) or (expected is int and isinstance(item, bool)):
            raise ConfigError(f"setting {name}.{key} must be {expected.__name__}, got {item!r}")
    return section_cls(**value)


def load(path: Path | None = None) -> Settings:
    """Read settings; a missing file gives the defaults, a broken one a clear error."""
    path = path or config_path()
    if not path.exists():
        return Settings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read settings file {path}: {exc}") from exc
    return Settings.from_dict(raw)


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a file."""
    settings.validate()
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".settings-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(settings.to_dict(), fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
