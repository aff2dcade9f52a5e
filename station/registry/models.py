"""Registry tables. Times are naive UTC datetimes; JSON columns hold small documents."""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import peewee

from station.registry.db import database_proxy
from station.registry.status import Status, Step


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class JSONField(peewee.TextField):
    """A JSON document in a text column (portable across SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class WordField(peewee.CharField):
    """A StrEnum stored as its word; read back as the member (unknown words stay text,
    so a row written by a newer station is still readable)."""

    def __init__(self, enum: type[StrEnum], *args: Any, **kwargs: Any) -> None:
        self.enum = enum
        super().__init__(*args, **kwargs)

    def db_value(self, value: Any) -> str | None:
        return None if value is None else str(value)

    def python_value(self, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return self.enum(value)
        except ValueError:
            return value


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Meta(BaseModel):
    """Key/value facts about the database itself (schema version)."""

    key = peewee.CharField(primary_key=True, max_length=64)
    value = peewee.TextField()

    @classmethod
    def put(cls, key: str, value: str) -> None:
        """Insert or replace one fact: INSERT ... ON CONFLICT (key) DO UPDATE, which
        SQLite (3.24+) and PostgreSQL both speak (PostgreSQL has no INSERT OR REPLACE)."""
        cls.insert(key=key, value=value).on_conflict(
            conflict_target=[cls.key], update={cls.value: value}
        ).execute()


class Home(BaseModel):
    """A customer site. Its WiFi password is in the OS keyring, never in this table."""

    # peewee's implicit primary key, spelt out so a type checker knows it (same schema).
    id = peewee.AutoField()

    name = peewee.CharField(unique=True, max_length=100)
    wifi_ssid = peewee.CharField(max_length=32)
    # Where its devices report: NULL = this station's embedded broker, else an external
    # broker's URL without login (station.broker_target; the login is in the keyring).
    broker_url = peewee.CharField(null=True, max_length=255)
    # An mqtts:// broker's CA certificate (PEM): the station verifies the broker with
    # it and gives it to every device of the home (/api/mqtt `ca`). Public, not secret.
    broker_ca = peewee.TextField(null=True)
    if TYPE_CHECKING:
        devices: peewee.ModelSelect
        jobs: peewee.ModelSelect
    created_at = peewee.DateTimeField(default=utcnow)


class Device(BaseModel):
    id = peewee.AutoField()
    # The real chip id is learned from /api/info in step 3; until then it is NULL
    # (SQLite and PostgreSQL both allow several NULLs under a unique index).
    chip_id = peewee.CharField(null=True, unique=True, max_length=32)
    node_name = peewee.CharField(unique=True, max_length=32)
    name = peewee.CharField(default="", max_length=100)
    # Where it is installed, in the installer's words ("kitchen, above the fridge"):
    # for the handover report. NULL: not noted (schema 7).
    location = peewee.CharField(null=True, max_length=100)
    home = peewee.ForeignKeyField(Home, null=True, backref="devices", on_delete="SET NULL")
    if TYPE_CHECKING:  # what peewee adds at run time, for the type checker
        home_id: int | None
        jobs: peewee.ModelSelect
        readings: peewee.ModelSelect
        events: peewee.ModelSelect
    topic_prefix = peewee.CharField(unique=True, max_length=128)
    mqtt_username = peewee.CharField(unique=True, max_length=32)
    # "sha256$<hex>" of a 256-bit random token; see station.registry.credentials.
    token_hash = peewee.CharField(max_length=100)
    model = peewee.CharField(null=True, max_length=32)
    firmware = peewee.CharField(null=True, max_length=32)
    mac = peewee.CharField(null=True, max_length=17)
    ip = peewee.CharField(null=True, max_length=45)
    # host:port of the broker it last said it is on (its info's `broker`; schema 8):
    # where a re-homing finds it (station.fleet.rehome). NULL: not reported yet.
    broker_address = peewee.CharField(null=True, max_length=270)
    online = peewee.BooleanField(default=False)
    last_seen = peewee.DateTimeField(null=True)
    last_state = JSONField(null=True)
    is_provisioned = peewee.BooleanField(default=False)
    provisioned_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    # Registered through the seed's backend API while `broker.seed_app_devices` was on:
    # the seed's app sends no MQTT credentials, so this device may log in without its
    # token while that setting stays on (broker/access.py, docs/DESIGN.md: the risk).
    seed_app_login = peewee.BooleanField(default=False)


class ProvisioningJob(BaseModel):
    """One device's run through the seed's five steps (and the bulk queue's bookkeeping)."""

    id = peewee.AutoField()

    provisioning_id = peewee.CharField(unique=True, max_length=32)
    device = peewee.ForeignKeyField(Device, backref="jobs", on_delete="CASCADE")
    home = peewee.ForeignKeyField(Home, null=True, backref="jobs", on_delete="SET NULL")
    if TYPE_CHECKING:
        device_id: int
        home_id: int | None
    # The seed's temporary chip id ("temp_1234567890") as the app sent it.
    requested_chip_id = peewee.CharField(null=True, max_length=64)
    ap_ssid = peewee.CharField(null=True, max_length=32)
    ap_bssid = peewee.CharField(null=True, max_length=17)
    step = WordField(Step, default=Step.PREPARE, max_length=16)
    progress = peewee.IntegerField(default=20)
    # A job row exists once step 1 is done (schema 1 defaulted to "pending", no word
    # of the queue's; migration 1 -> 2 rewrote such rows).
    status = WordField(Status, default=Status.REGISTERED, max_length=16, index=True)
    error = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    timings = JSONField(default=dict)  # step name -> seconds
    queue_position = peewee.IntegerField(null=True)
    is_provisioned = peewee.BooleanField(default=False)
    connected_at = peewee.DateTimeField(null=True)
    # The station (settings.station_id) whose queue runs this job: several stations
    # may share one registry, and each resumes and recovers only its own jobs.
    # NULL: a job from before schema 6 (any station may take it).
    station = peewee.CharField(null=True, max_length=64, index=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class Reading(BaseModel):
    id = peewee.AutoField()
    device = peewee.ForeignKeyField(Device, backref="readings", on_delete="CASCADE")
    ts = peewee.DateTimeField(default=utcnow)
    temperature = peewee.FloatField(null=True)
    humidity = peewee.FloatField(null=True)
    rssi = peewee.IntegerField(null=True)

    class Meta:
        indexes = ((("device", "ts"), False),)


class Event(BaseModel):
    id = peewee.AutoField()
    """Audit log: what happened to which device, in words plus a small document."""

    ts = peewee.DateTimeField(default=utcnow, index=True)
    device = peewee.ForeignKeyField(Device, null=True, backref="events", on_delete="CASCADE")
    kind = peewee.CharField(max_length=32)
    message = peewee.TextField(default="")
    data = JSONField(null=True)


class AccountRole(StrEnum):
    """What an integration account (a tool that is not a device) may do on the broker;
    the rules are broker/access.py's."""

    OBSERVER = "observer"  # read every device topic, discovery and $SYS; birth/will only
    OPERATOR = "operator"  # an observer that may also send device commands


class Account(BaseModel):
    """A named MQTT login for Home Assistant, Node-RED, MQTT Explorer and the like.
    Its password is shown once and stored only as a hash, like a device token."""

    id = peewee.AutoField()
    name = peewee.CharField(unique=True, max_length=32)
    role = WordField(AccountRole, max_length=16)
    password_hash = peewee.CharField(max_length=100)
    created_at = peewee.DateTimeField(default=utcnow)
    rotated_at = peewee.DateTimeField(null=True)


ALL_MODELS: list[type[BaseModel]] = [Meta, Home, Device, ProvisioningJob, Reading, Event, Account]
