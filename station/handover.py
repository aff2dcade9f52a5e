"""The handover report of one home: what was installed where, that it works, and how
to find it again. Qt-free: this module gathers the rows and writes the CSV; the PDF is
station/ui/handover_pdf.py, drawn from the same `HandoverReport`.

    report = gather(registry, "Smith", station_broker="192.168.1.20:1883")
    write_csv(report, "smith-handover.csv")

One query per table (devices, jobs, readings, events), whatever the number of devices;
plain peewee, so SQLite and PostgreSQL alike. Nothing secret is read or written: no
token or token hash, no WiFi password, no broker login (a home's broker URL is stored
without it, station.broker_target).
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import peewee

from station.errors import StationError
from station.registry import Registry
from station.registry.models import Device, Event, Home, ProvisioningJob, Reading, utcnow
from station.registry.status import OPEN, Status

# Events that say something went wrong with a device (besides its failed jobs' errors).
ERROR_EVENTS = ("provisioning_failed", "chip_mismatch", "bad_payload")
STATION_BROKER = "this station's broker"


class ReportError(StationError):
    pass


@dataclass(frozen=True)
class Failure:
    ts: dt.datetime | None
    reason: str

    def __str__(self) -> str:
        return f"{_when(self.ts)} {self.reason}".strip()


@dataclass(frozen=True)
class HandoverRow:
    """One device of the report."""

    node_name: str
    name: str
    location: str
    chip_id: str | None
    mac: str | None
    model: str | None
    firmware: str | None
    ip: str | None
    state: str  # online | offline | failed | pending
    rssi: int | None
    temperature: float | None
    humidity: float | None
    last_seen: dt.datetime | None
    first_reading: dt.datetime | None
    last_reading: dt.datetime | None
    readings: int
    broker: str
    provisioned_at: dt.datetime | None
    provisioning_s: float | None  # the seconds the successful job's steps took
    step_s: dict[str, float] = field(default_factory=dict)
    attempts: int = 0
    failures: tuple[Failure, ...] = ()

    @property
    def qr_text(self) -> str:
        """What the device's QR label encodes: its chip id and node name, one space
        apart ("unknown" for a chip id the station never learned)."""
        return qr_text(self.chip_id, self.node_name)


def qr_text(chip_id: str | None, node_name: str) -> str:
    return f"{chip_id or 'unknown'} {node_name}"


@dataclass(frozen=True)
class HandoverReport:
    home: str
    home_wifi: str
    created: dt.datetime  # naive UTC
    station: str | None
    broker: str  # where the home's devices report (no login)
    rows: list[HandoverRow]

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.rows)

    @property
    def summary(self) -> str:
        return (
            f"{len(self.rows)} devices: {self.count('online')} online, "
            f"{self.count('offline')} offline, {self.count('failed')} failed"
            + (f", {self.count('pending')} pending" if self.count("pending") else "")
        )


# -- gathering ------------------------------------------------------------------------


def gather(
    registry: Registry,
    home: Home | int | str,
    *,
    station_broker: str | None = None,
    now: dt.datetime | None = None,
) -> HandoverReport:
    """The report of `home` (a Home, its id or its name). `station_broker`: the address
    devices are told for this station's embedded broker ("192.168.1.20:1883"), shown
    with it for the devices that report there."""
    if not isinstance(home, Home):
        home = _find_home(registry, home)
    ours = Device.select(Device.id).where(Device.home == home.id)
    devices = list(Device.select().where(Device.home == home.id).order_by(Device.node_name))
    jobs: dict[int, list[ProvisioningJob]] = defaultdict(list)
    for job in (
        ProvisioningJob.select()
        .where(ProvisioningJob.device.in_(ours))
        .order_by(ProvisioningJob.id)
    ):
        jobs[job.device_id].append(job)
    readings: dict[int, tuple] = {
        row[0]: tuple(row[1:])
        for row in Reading.select(
            Reading.device,
            peewee.fn.MIN(Reading.ts),
            peewee.fn.MAX(Reading.ts),
            peewee.fn.COUNT(Reading.id),
        )
        .where(Reading.device.in_(ours))
        .group_by(Reading.device)
        .tuples()
        .iterator()
    }
    events: dict[int, list[_Ev]] = defaultdict(list)
    for dev_id, ts, kind, message, data in (
        Event.select(Event.device, Event.ts, Event.kind, Event.message, Event.data)
        .where(Event.device.in_(ours) & Event.kind.in_([*ERROR_EVENTS, "device_event"]))
        .order_by(Event.ts, Event.id)
        .tuples()
        .iterator()
    ):
        if kind != "device_event" or _device_error(data):
            events[dev_id].append(_Ev(ts, kind, message, data))

    own = STATION_BROKER + (f" ({station_broker})" if station_broker else "")
    home_broker = home.broker_url or own
    rows = [
        _row(d, jobs[d.id], readings.get(d.id), events[d.id], home_broker, registry.station_id)
        for d in devices
    ]
    return HandoverReport(
        home=home.name,
        home_wifi=home.wifi_ssid,
        created=now or utcnow(),
        station=registry.station_id,
        broker=home_broker,
        rows=rows,
    )


def _find_home(registry: Registry, key: int | str) -> Home:
    """By id, or by name (a name made of digits first, then the id it spells)."""
    keys: list[int | str] = [key]
    if isinstance(key, str) and key.isdigit():
        keys.append(int(key))
    for k in keys:
        try:
            return registry.home(k)
        except StationError:
            continue
    names = ", ".join(h.name for h in registry.homes()) or "none yet"
    raise ReportError(f"no home {key!r}; the homes are: {names}")


@dataclass(frozen=True)
class _Ev:
    ts: dt.datetime
    kind: str
    message: str
    data: object


def _device_error(data: object) -> bool:
    """A device's own event that reports a failure (a refused command, a rollback...)."""
    return isinstance(data, dict) and (data.get("ok") is False or bool(data.get("error")))


def _row(
    dev: Device,
    jobs: list[ProvisioningJob],
    readings: tuple | None,
    events: list[_Ev],
    home_broker: str,
    station_id: str | None,
) -> HandoverRow:
    state_doc = dev.last_state if isinstance(dev.last_state, dict) else {}
    latest = jobs[-1] if jobs else None
    done = next((j for j in reversed(jobs) if j.is_provisioned or j.status == Status.DONE), None)
    if dev.online:
        state = "online"
    elif dev.is_provisioned:
        state = "offline"
    elif latest is not None and latest.status not in OPEN:
        state = "failed"
    else:
        state = "pending"
    broker = home_broker
    # On a registry several stations share, a device on the embedded broker reports to
    # the station that provisioned it last.
    last_run = done or latest
    by = last_run.station if last_run is not None else None
    if home_broker.startswith(STATION_BROKER) and by and station_id and by != station_id:
        broker = f"station {by}'s broker"
    where = dev.broker_address
    if where and where not in broker:  # e.g. a home moved halfway (station.fleet.rehome)
        broker += f" (the device reports {where})"

    failures: list[Failure] = []
    seen: set[str] = set()
    for ev in events:
        reason = ev.message
        step = ev.data.get("step") if isinstance(ev.data, dict) else None
        if ev.kind == "provisioning_failed" and step:
            reason = f"{step}: {reason}"
        failures.append(Failure(ev.ts, _one_line(reason)))
        seen.add(_one_line(ev.message))
    for job in jobs:  # a job's error with no event (a station older than the events)
        if job.error and _one_line(job.error) not in seen and job.status == Status.FAILED:
            failures.append(Failure(job.updated_at, f"{job.step}: {_one_line(job.error)}"))
            seen.add(_one_line(job.error))
    failures.sort(key=lambda f: f.ts or dt.datetime.min)

    timings = dict(done.timings or {}) if done is not None else {}
    step_s = {str(k): float(v) for k, v in timings.items() if isinstance(v, int | float)}
    first, last, count = readings if readings else (None, None, 0)
    return HandoverRow(
        node_name=dev.node_name,
        name=dev.name or "",
        location=dev.location or "",
        chip_id=dev.chip_id,
        mac=dev.mac,
        model=dev.model,
        firmware=dev.firmware,
        ip=dev.ip,
        state=state,
        rssi=_int(state_doc.get("rssi")),
        temperature=_float(state_doc.get("temperature")),
        humidity=_float(state_doc.get("humidity")),
        last_seen=dev.last_seen,
        first_reading=_datetime(first),
        last_reading=_datetime(last),
        readings=int(count or 0),
        broker=broker,
        provisioned_at=dev.provisioned_at,
        provisioning_s=round(sum(step_s.values()), 1) if step_s else None,
        step_s=step_s,
        attempts=sum(_tries(j) for j in jobs),
        failures=tuple(failures),
    )


def _tries(job: ProvisioningJob) -> int:
    """How often the station tried a job: each failure counted by the flow, plus the run
    that is still going or that succeeded."""
    return max(1, (job.attempts or 0) + (job.status != Status.FAILED))


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _datetime(value: object) -> dt.datetime | None:
    """MIN/MAX of a DateTimeField: a datetime (PostgreSQL) or SQLite's text."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _when(ts: dt.datetime | None, seconds: bool = False) -> str:
    if ts is None:
        return ""
    return ts.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


# -- CSV ------------------------------------------------------------------------------

CSV_COLUMNS = (
    "node",
    "name",
    "location",
    "chip id",
    "MAC",
    "model",
    "firmware",
    "IP",
    "state",
    "RSSI dBm",
    "temperature °C",
    "humidity %",
    "last seen (UTC)",
    "first reading (UTC)",
    "last reading (UTC)",
    "readings",
    "broker",
    "provisioned (UTC)",
    "provisioning s",
    "step seconds",
    "attempts",
    "failures",
    "QR label",
)

# A text cell a spreadsheet would run as a formula (CSV injection): shown as text.
_FORMULA = re.compile(r"^[=+\-@\t\r]")


def _text(value: str | None) -> str:
    value = value or ""
    return "'" + value if _FORMULA.match(value) else value


def csv_row(row: HandoverRow) -> list[str]:
    def num(value: float | int | None) -> str:
        return "" if value is None else f"{value:g}"

    return [
        row.node_name,
        _text(row.name),
        _text(row.location),
        row.chip_id or "",
        row.mac or "",
        _text(row.model),
        _text(row.firmware),
        row.ip or "",
        row.state,
        num(row.rssi),
        num(row.temperature),
        num(row.humidity),
        _when(row.last_seen, True),
        _when(row.first_reading, True),
        _when(row.last_reading, True),
        str(row.readings),
        row.broker,
        _when(row.provisioned_at, True),
        num(row.provisioning_s),
        " ".join(f"{k}={v:g}" for k, v in row.step_s.items()),
        str(row.attempts),
        _text(" | ".join(str(f) for f in row.failures)),
        row.qr_text,
    ]


def write_csv(report: HandoverReport, path: str | Path) -> Path:
    """One row per device under a header row; UTF-8 with a byte-order mark, which
    spreadsheets (Excel included) read as UTF-8; times are UTC "YYYY-MM-DD HH:MM:SS"."""
    path = Path(path)
    try:
        with path.open("w", encoding="utf-8-sig", newline="") as f:
            out = csv.writer(f)
            out.writerow(CSV_COLUMNS)
            out.writerows(csv_row(r) for r in report.rows)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def check_writable(path: str | Path) -> Path:
    """Refuse at once a path the report cannot be written to (before any work)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ReportError(f"cannot write {path}: it is a folder")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ReportError(f"cannot write {path}: no folder {parent}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ReportError(f"cannot write {path}: permission denied")
    return path


def file_stem(home: str) -> str:
    """A file name for a home's report files: "<home>-handover" with the home's name
    kept to letters, digits, '-' and '_'."""
    safe = re.sub(r"[^\w-]+", "-", home.strip(), flags=re.UNICODE).strip("-_") or "home"
    return f"{safe}-handover"


# -- QR labels ------------------------------------------------------------------------


def qr_matrix(text: str) -> list[list[bool]]:
    """The QR code of `text` as rows of dark (True) and light modules, without the quiet
    zone (4 modules of light around it, which the drawing leaves blank). segno, error
    correction at least M (raised where the same size allows), never a Micro QR."""
    import segno

    code = segno.make(text, error="m", micro=False)
    return [[bool(m) for m in row] for row in code.matrix]
