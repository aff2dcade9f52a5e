"""The registry's operations: what the broker, the provisioning flow and the GUI call.

Callers never touch peewee queries directly for these; they get plain model rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import unicodedata
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import peewee

from station.errors import StationError
from station.registry import credentials, naming
from station.registry.accounts import Accounts
from station.registry.db import (
    database_proxy,
    describe,
    make_database,
    open_database,
    write_transaction,
)
from station.registry.migrations import migrate
from station.registry.models import (
    Device,
    Event,
    Home,
    Meta,
    ProvisioningJob,
    Reading,
    utcnow,
)
from station.registry.status import OPEN, Status, Step

log = logging.getLogger(__name__)

MAX_ALLOCATION_RETRIES = 20


class RegistryError(StationError):
    pass


@dataclass(frozen=True)
class IssuedDevice:
    """What step 1 (prepare) hands back: the new device, its job and its token.

    The token exists in clear only here; the registry keeps its hash.
    """

    device: Device
    job: ProvisioningJob
    token: str


@dataclass(frozen=True)
class DeviceCredentials:
    username: str
    token_hash: str
    topic_prefix: str
    node_name: str
    seed_app_login: bool = False  # may log in without a token (seed-app mode only)


class Registry:
    """Opens (and migrates) the database and offers the registry's operations."""

    def __init__(
        self,
        url: str | None = None,
        *,
        node_name_prefix: str = "esp32_dht11_",
        topic_root: str = "home",
        station_id: str | None = None,
    ) -> None:
        """`station_id` (settings.station_id): the station this registry serves, when
        several share one database; its jobs carry it and its queue takes only those
        (and jobs from before schema 6). None: every job (one station, tests)."""
        self.db = make_database(url)
        database_proxy.initialize(self.db)
        open_database(self.db)
        self.schema_version = migrate(self.db)
        self.node_name_prefix = node_name_prefix
        self.topic_root = topic_root
        self.station_id = station_id
        # Integration accounts (station.registry.accounts): logins for tools, not devices.
        self.accounts = Accounts(self.db, node_name_prefix)
        log.info("registry: %s (schema %d)", describe(self.db), self.schema_version)

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    @property
    def location(self) -> str:
        return describe(self.db)

    # -- homes ---------------------------------------------------------------------

    def add_home(
        self,
        name: str,
        wifi_ssid: str,
        broker_url: str | None = None,
        broker_ca: str | None = None,
    ) -> Home:
        """`broker_url`: an external broker's URL without login (station.broker_target),
        or None for this station's embedded broker; `broker_ca`: an mqtts:// broker's CA
        certificate (PEM, checked by broker_target.load_ca)."""
        name, wifi_ssid = name.strip(), wifi_ssid
        if not name:
            raise RegistryError("a home needs a name")
        self._check_ssid(wifi_ssid)
        try:
            with write_transaction(self.db):
                return Home.create(
                    name=name, wifi_ssid=wifi_ssid, broker_url=broker_url, broker_ca=broker_ca
                )
        except peewee.IntegrityError as exc:
            raise RegistryError(f"a home named {name!r} already exists") from exc

    def ensure_home(self, name: str, wifi_ssid: str) -> Home:
        """The home of that name, added if there is none. On a registry several
        stations share, two may add it at the same moment: the second gets the first's."""
        found = Home.get_or_none(Home.name == name.strip())
        if found is not None:
            return found
        try:
            return self.add_home(name, wifi_ssid)
        except RegistryError:
            found = Home.get_or_none(Home.name == name.strip())
            if found is None:
                raise
            return found

    @staticmethod
    def _check_ssid(wifi_ssid: str) -> None:
        if not 1 <= len(wifi_ssid.encode("utf-8")) <= 32:
            raise RegistryError("the home WiFi SSID must be 1-32 bytes")

    def edit_home(self, home: Home, **fields: Any) -> Home:
        """Change a home's `wifi_ssid`, `broker_url` (None: the embedded broker) and/or
        `broker_ca` (None: none)."""
        unknown = set(fields) - {"wifi_ssid", "broker_url", "broker_ca"}
        if unknown:
            raise RegistryError(f"a home has no field {sorted(unknown)[0]!r}")
        if "wifi_ssid" in fields:
            self._check_ssid(fields["wifi_ssid"])
        with write_transaction(self.db):
            Home.update(**fields).where(Home.id == home.id).execute()
        return self.home(home.id)

    def homes(self) -> list[Home]:
        return list(Home.select().order_by(Home.name))

    def home(self, key: int | str) -> Home:
        """A home by id or by name."""
        query = Home.id == key if isinstance(key, int) else Home.name == key
        home = Home.get_or_none(query)
        if home is None:
            raise RegistryError(f"no home {key!r}")
        return home

    # -- devices -------------------------------------------------------------------

    def register_device(
        self,
        *,
        home: Home | None = None,
        name: str = "",
        requested_chip_id: str | None = None,
        ap_ssid: str | None = None,
        ap_bssid: str | None = None,
        seed_app_login: bool = False,
    ) -> IssuedDevice:
        """Seed step 1: allocate node name, topic prefix and credentials, open a job.
        `seed_app_login`: the seed's app configures it (no MQTT credentials on the wire)."""
        for _ in range(MAX_ALLOCATION_RETRIES):
            token = credentials.new_token()
            try:
                with write_transaction(self.db):
                    node = naming.node_name(self.node_name_prefix, self._take_node_number())
                    device = Device.create(
                        node_name=node,
                        name=name.strip(),
                        home=home,
                        topic_prefix=naming.topic_prefix(self.topic_root, node),
                        mqtt_username=node,
                        token_hash=credentials.hash_token(token),
                        seed_app_login=seed_app_login,
                    )
                    job = self._new_job(
                        device,
                        home=home,
                        requested_chip_id=requested_chip_id,
                        ap_ssid=ap_ssid,
                        ap_bssid=ap_bssid,
                    )
                    self._event(device, "registered", f"registered as {node}")
                return IssuedDevice(device=device, job=job, token=token)
            except peewee.IntegrityError:
                # Another writer (a second station on a shared database) took the name.
                log.debug("node name collision, retrying")
        raise RegistryError("could not allocate a unique node name")

    def _new_job(self, device: Device, **fields: Any) -> ProvisioningJob:
        return ProvisioningJob.create(
            provisioning_id=secrets.token_hex(8),
            device=device,
            step=Step.PREPARE,
            progress=40,
            status=Status.REGISTERED,
            station=self.station_id,
            **fields,
        )

    def _mine(
        self, query: peewee.ModelSelect[ProvisioningJob]
    ) -> peewee.ModelSelect[ProvisioningJob]:
        """`query` narrowed to the jobs this station's queue runs: its own and those of
        no station (made before schema 6). Every job when no station id is set."""
        if self.station_id is None:
            return query
        return query.where(
            (ProvisioningJob.station == self.station_id) | ProvisioningJob.station.is_null()
        )

    def take_over(self, job: ProvisioningJob) -> None:
        """Make another station's job this station's (its installer queued the device
        here); logged and kept in the device's history."""
        if self.station_id is None or job.station == self.station_id:
            return
        previous = job.station
        self.update_job(job, station=self.station_id)
        self._event(
            job.device,
            "taken_over",
            f"job {job.provisioning_id} taken over from station {previous or '(none)'} "
            f"by {self.station_id}",
            {"provisioning_id": job.provisioning_id, "from": previous, "to": self.station_id},
        )

    def reprovision(
        self,
        device: Device,
        *,
        home: Home | None = None,
        ap_ssid: str | None = None,
        ap_bssid: str | None = None,
    ) -> ProvisioningJob:
        """Open a job that configures an already registered device again (same node
        name and topic prefix; the queue gives it a fresh token when it configures it).

        The device's open job is reopened if it has one (a `waiting` one included: the
        device is back in setup mode), else a new job is created. The setup AP defaults
        to the one of the device's latest job; a scan that finds the device replaces it.
        `home` (default: the device's) also becomes the device's home.
        """
        with write_transaction(self.db):
            device = Device.get_by_id(device.id)
            if home is not None and device.home_id != home.id:
                Device.update(home=home).where(Device.id == device.id).execute()
                device.home = home
            home = home or device.home
            if ap_ssid is None:
                last = (
                    ProvisioningJob.select()
                    .where(
                        (ProvisioningJob.device == device.id)
                        & ProvisioningJob.ap_ssid.is_null(False)
                    )
                    .order_by(ProvisioningJob.id.desc())
                    .first()
                )
                if last is not None:
                    ap_ssid, ap_bssid = last.ap_ssid, last.ap_bssid
            fields: dict[str, Any] = {
                "home": home,
                "ap_ssid": ap_ssid,
                "ap_bssid": ap_bssid,
                "queue_position": self._next_queue_position(),
            }
            job = self.open_job(device)
            if job is None:
                job = self._new_job(device, **fields)
            else:
                self.update_job(
                    job,
                    step=Step.PREPARE,
                    progress=40,
                    status=Status.REGISTERED,
                    error=None,
                    station=self.station_id or job.station,
                    **fields,
                )
            self._event(
                device,
                "reprovision",
                f"{device.node_name} will be configured again"
                + (f" over {ap_ssid}" if ap_ssid else ""),
                {"provisioning_id": job.provisioning_id},
            )
        return job

    def move_job(self, job: ProvisioningJob, to: Device) -> Device:
        """Step 3 found that a just-registered entry's chip is already registered as `to`
        (a rerun over a setup AP that told nothing apart, such as the seed's plain SSID):
        the job moves to `to` and the new entry is deleted; returns the deleted entry.
        Only an entry with no chip id, never provisioned and no other job is dropped
        (RegistryError otherwise). Its node number is not handed out again."""
        with write_transaction(self.db):
            fresh = Device.get_by_id(job.device_id)
            others = (
                ProvisioningJob.select()
                .where((ProvisioningJob.device == fresh.id) & (ProvisioningJob.id != job.id))
                .exists()
            )
            if fresh.id == to.id or fresh.chip_id is not None or fresh.is_provisioned or others:
                raise RegistryError(
                    f"{fresh.node_name} is not a new entry; it cannot be merged into {to.node_name}"
                )
            ProvisioningJob.update(device=to.id, updated_at=utcnow()).where(
                ProvisioningJob.id == job.id
            ).execute()
            if job.home_id is not None and to.home_id != job.home_id:
                Device.update(home=job.home_id).where(Device.id == to.id).execute()
            Device.delete().where(Device.id == fresh.id).execute()
            self._event(
                to,
                "reprovision",
                f"{to.node_name} found again over {job.ap_ssid or 'its setup network'}: "
                f"configured under its first entry, new entry {fresh.node_name} dropped",
                {"provisioning_id": job.provisioning_id, "dropped": fresh.node_name},
            )
        job.device = Device.get_by_id(to.id)
        log.info("registry: %s is %s again; dropped %s", job.ap_ssid, to.node_name, fresh.node_name)
        return fresh

    def drop_orphans(self, device: Device, ap_ssid: str) -> list[Device]:
        """Entries a rerun registered again for `device`'s setup AP before reruns reused
        entries: no chip id, never provisioned, every job over `ap_ssid` (a suffixed setup
        SSID names one chip) and none open. They are deleted; returns them."""
        with write_transaction(self.db):
            over_ap = ProvisioningJob.select(ProvisioningJob.device).where(
                ProvisioningJob.ap_ssid == ap_ssid
            )
            elsewhere = ProvisioningJob.select(ProvisioningJob.device).where(
                (ProvisioningJob.ap_ssid.is_null(True))
                | (ProvisioningJob.ap_ssid != ap_ssid)
                | ProvisioningJob.status.in_(OPEN)
            )
            orphans = list(
                Device.select().where(
                    (Device.id != device.id)
                    & Device.chip_id.is_null(True)
                    & (Device.is_provisioned == False)  # noqa: E712
                    & Device.id.in_(over_ap)
                    & Device.id.not_in(elsewhere)
                )
            )
            if orphans:
                Device.delete().where(Device.id.in_([d.id for d in orphans])).execute()
                names = ", ".join(d.node_name for d in orphans)
                self._event(
                    device,
                    "orphans_removed",
                    f"removed {names}: earlier runs registered {device.node_name}'s chip "
                    "again under them",
                    {"removed": [d.node_name for d in orphans]},
                )
                log.info("registry: removed %s (entries again for %s)", names, device.node_name)
        return orphans

    def _take_node_number(self) -> int:
        key = f"node_counter:{self.node_name_prefix}"
        row = Meta.get_or_none(Meta.key == key)
        used = [
            d.node_name
            for d in Device.select(Device.node_name).where(
                Device.node_name.startswith(self.node_name_prefix)
            )
        ]
        number = max(
            naming.next_number(self.node_name_prefix, used), int(row.value) + 1 if row else 1
        )
        Meta.put(key, str(number))
        return number

    def rotate_token(self, device: Device) -> str:
        """A new token (e.g. when a crashed run must re-send credentials)."""
        token = credentials.new_token()
        Device.update(token_hash=credentials.hash_token(token)).where(
            Device.id == device.id
        ).execute()
        self._event(device, "token_rotated", "MQTT token replaced")
        return token

    def set_token(self, device: Device, token: str, why: str) -> None:
        """The device's token is now `token` (one the station gave it for another
        broker, station.fleet.rehome): only its hash is kept."""
        Device.update(token_hash=credentials.hash_token(token)).where(
            Device.id == device.id
        ).execute()
        self._event(device, "token_rotated", why)

    def device(self, key: int | str) -> Device:
        """A device by id, node name or chip id."""
        if isinstance(key, int):
            query = Device.id == key
        else:
            query = (Device.node_name == key) | (Device.chip_id == key)
        dev = Device.get_or_none(query)
        if dev is None:
            raise RegistryError(f"no device {key!r}")
        return dev

    def devices(self) -> list[Device]:
        return list(Device.select().order_by(Device.node_name))

    def describe_device(
        self, device: Device, *, name: str | None = None, location: str | None = None
    ) -> Device:
        """Set a device's name and/or its room/location note (None: unchanged; "": cleared).
        Each is one line of at most 100 characters without control characters
        (RegistryError otherwise); returns the device as stored now."""
        fields: dict[str, Any] = {}
        if name is not None:
            fields["name"] = _note("name", name)
        if location is not None:
            fields["location"] = _note("location", location) or None
        if not fields:
            return self.device(device.id)
        with write_transaction(self.db):
            if not Device.update(**fields).where(Device.id == device.id).execute():
                raise RegistryError(f"no device {device.node_name!r} (removed meanwhile?)")
            changes = ", ".join(f"{k} {v or '(none)'!r}" for k, v in fields.items())
            self._event(device, "described", f"{device.node_name}: {changes}")
        return Device.get_by_id(device.id)

    def device_for_ap(
        self, ssid: str, bssid: str | None = None, chip_suffix: str | None = None
    ) -> Device | None:
        """The registered device a setup AP belongs to, if any: by its chip id's last six
        hex digits (the SSID's suffix), else by a BSSID or (suffixed) SSID one of its
        jobs was configured over. The oldest entry wins (its first node name)."""
        if chip_suffix:
            dev = (
                Device.select()
                .where(peewee.fn.UPPER(Device.chip_id).endswith(chip_suffix.upper()))
                .order_by(Device.id)
                .first()
            )
            if dev is not None:
                return dev
        if bssid:
            where = peewee.fn.LOWER(ProvisioningJob.ap_bssid) == bssid.lower()
        elif chip_suffix:
            where = ProvisioningJob.ap_ssid == ssid
        else:
            return None  # the seed's plain SSID: nothing tells units apart before /api/info
        return (
            Device.select()
            .join(ProvisioningJob, on=ProvisioningJob.device == Device.id)
            .where(where)
            .order_by(Device.id)
            .first()
        )

    def mark_offline(
        self, connected: Collection[str] | Callable[[], Collection[str]] = ()
    ) -> list[Device]:
        """Every device marked online whose node name is not in `connected` goes offline,
        in one update, with an `offline` event each; returns them (now offline).

        The embedded broker calls it as it starts: a station that was killed left rows
        `online` with no connection behind them. A callable `connected` is asked inside
        the transaction, after the online rows are read: a device whose `online` was
        written before is then among the connections."""
        with write_transaction(self.db):
            # Only devices of this broker: a home with a broker of its own is followed
            # there (station.external_broker), whatever connects here.
            query = (
                Device.select(Device)
                .join(Home, peewee.JOIN.LEFT_OUTER, on=(Device.home == Home.id))
                .where((Device.online == True) & Home.broker_url.is_null())  # noqa: E712
            )
            if self.station_id is not None:
                # On a registry other stations share, only the devices this station
                # provisioned last report to its broker; another's are online there.
                latest = ProvisioningJob.select(peewee.fn.MAX(ProvisioningJob.id)).group_by(
                    ProvisioningJob.device
                )
                others = ProvisioningJob.select(ProvisioningJob.device).where(
                    ProvisioningJob.id.in_(latest)
                    & ProvisioningJob.station.is_null(False)
                    & (ProvisioningJob.station != self.station_id)
                )
                query = query.where(Device.id.not_in(others))
            online = list(query)
            live = set(connected() if callable(connected) else connected)
            stale = [d for d in online if d.node_name not in live]
            if not stale:
                return []
            ids = [d.id for d in stale]
            Device.update(online=False).where(Device.id.in_(ids)).execute()
            now = utcnow()
            Event.insert_many(
                [
                    {
                        "ts": now,
                        "device": d.id,
                        "kind": "offline",
                        "message": f"{d.node_name} is offline: not connected to this "
                        "station's broker since it started",
                    }
                    for d in stale
                ]
            ).execute()
        for d in stale:
            d.online = False
        log.info("registry: %d device(s) marked offline (no connection at start)", len(stale))
        return stale

    def remove_device(self, device: Device) -> None:
        with write_transaction(self.db):
            Device.delete().where(Device.id == device.id).execute()
        log.info("registry: removed %s", device.node_name)

    def credentials(self, username: str) -> DeviceCredentials | None:
        row = _credential_query().where(Device.mqtt_username == username).first()
        return None if row is None else _credentials(row)

    def all_credentials(self) -> list[DeviceCredentials]:
        return [_credentials(d) for d in _credential_query()]

    def set_chip_id(self, device: Device, chip_id: str, **info: Any) -> None:
        """Seed step 3: the real chip id (and model/firmware/mac) from /api/info."""
        fields = {
            "chip_id": chip_id,
            **{k: v for k, v in info.items() if k in ("model", "firmware", "mac")},
        }
        try:
            Device.update(**fields).where(Device.id == device.id).execute()
        except peewee.IntegrityError as exc:
            other = Device.get_or_none(Device.chip_id == chip_id)
            owner = other.node_name if other else "another device"
            raise RegistryError(
                f"chip {chip_id} is already registered as {owner}; remove that entry "
                "or re-provision it instead"
            ) from exc

    # -- jobs ----------------------------------------------------------------------

    def job(self, provisioning_id: str) -> ProvisioningJob | None:
        return ProvisioningJob.get_or_none(ProvisioningJob.provisioning_id == provisioning_id)

    def jobs(self, statuses: Iterable[Status] = OPEN) -> list[ProvisioningJob]:
        """This station's jobs with these statuses, in queue order."""
        query = ProvisioningJob.select().where(
            ProvisioningJob.status.in_([Status(s) for s in statuses])
        )
        return list(self._mine(query).order_by(ProvisioningJob.queue_position, ProvisioningJob.id))

    def open_job(self, device: Device) -> ProvisioningJob | None:
        """The device's open job (one the queue still has work for), if any."""
        return (
            ProvisioningJob.select()
            .where((ProvisioningJob.device == device.id) & ProvisioningJob.status.in_(OPEN))
            .order_by(ProvisioningJob.id.desc())
            .first()
        )

    def open_job_for_ap(self, ssid: str, bssid: str | None = None) -> ProvisioningJob | None:
        """The open job for a setup AP: by BSSID when known, else by SSID."""
        query = ProvisioningJob.select().where(ProvisioningJob.status.in_(OPEN))
        if bssid:
            query = query.where(ProvisioningJob.ap_bssid == bssid)
        else:
            query = query.where(ProvisioningJob.ap_ssid == ssid)
        return query.first()

    def next_queue_position(self) -> int:
        """The queue position after every job's (a new job goes last)."""
        return self._next_queue_position()

    @staticmethod
    def _next_queue_position() -> int:
        top = ProvisioningJob.select(peewee.fn.MAX(ProvisioningJob.queue_position)).scalar()
        return (top or 0) + 1

    def update_job(self, job: ProvisioningJob, **fields: Any) -> None:
        fields["updated_at"] = utcnow()
        ProvisioningJob.update(**fields).where(ProvisioningJob.id == job.id).execute()
        for key, value in fields.items():
            setattr(job, key, value)

    # -- events and readings -------------------------------------------------------

    def _event(
        self, device: Device | None, kind: str, message: str, data: dict | None = None
    ) -> None:
        Event.create(device=device, kind=kind, message=message, data=data)

    def log_event(
        self, device: Device | None, kind: str, message: str, data: dict | None = None
    ) -> None:
        self._event(device, kind, message, data)

    def events(self, device: Device | None = None, limit: int = 200) -> list[Event]:
        query = Event.select().order_by(Event.ts.desc(), Event.id.desc()).limit(limit)
        if device is not None:
            query = query.where(Event.device == device)
        return list(query)

    def readings(self, device: Device, since: dt.datetime | None = None) -> list[Reading]:
        query = Reading.select().where(Reading.device == device).order_by(Reading.ts)
        if since is not None:
            query = query.where(Reading.ts >= since)
        return list(query)

    def prune_readings(self, older_than_days: int) -> int:
        cutoff = utcnow() - dt.timedelta(days=older_than_days)
        return Reading.delete().where(Reading.ts < cutoff).execute()


NOTE_MAX_CHARS = 100  # Device.name and Device.location


def _note(what: str, text: str) -> str:
    """A device's name or location note, checked: stripped, one line, printable."""
    text = text.strip()
    if len(text) > NOTE_MAX_CHARS:
        raise RegistryError(
            f"the {what} is {len(text)} characters long; at most {NOTE_MAX_CHARS} fit"
        )
    # Cc/Cf/Cs/Co/Cn: control, format (bidi overrides), surrogates, private, unassigned;
    # the zero-width joiner stays (it is part of emoji).
    bad = next((c for c in text if unicodedata.category(c).startswith("C") and c != "\u200d"), None)
    if bad is not None:
        raise RegistryError(
            f"the {what} contains a control character (U+{ord(bad):04X}); "
            "use plain text on one line"
        )
    return text


def _credential_query() -> peewee.ModelSelect[Device]:
    return Device.select(
        Device.mqtt_username,
        Device.token_hash,
        Device.topic_prefix,
        Device.node_name,
        Device.seed_app_login,
    )


def _credentials(row: Device) -> DeviceCredentials:
    return DeviceCredentials(
        row.mqtt_username, row.token_hash, row.topic_prefix, row.node_name, row.seed_app_login
    )
