"""Turn what the broker saw (status/info/state per topic prefix) into registry rows.

The broker thread only queues `Observation`s; `Tracker.apply()` runs in the ingest
thread and writes a whole batch in one transaction, so 1000 devices × 1 msg/s cost
a few commits a second rather than a thousand.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from station.registry.models import Device, Event, ProvisioningJob
from station.registry.status import Status, Step

log = logging.getLogger(__name__)

# Fields kept from a state document (anything else a device adds is ignored).
STATE_FIELDS = ("temperature", "humidity", "rssi", "uptime", "heap_free", "error")
INFO_FIELDS = ("chip_id", "model", "firmware", "ip", "mac")
TRACKED_LEAVES = ("/status", "/info", "/state", "/event")


@dataclass(frozen=True)
class Observation:
    """One fact from the broker about a topic prefix. `ts` is naive UTC."""

    kind: str  # "online" | "offline" | "info" | "state" | "event"
    prefix: str
    ts: dt.datetime
    payload: Any = None
    reason: str = ""


@dataclass
class DeviceUpdate:
    """What listeners (the GUI) are told after a batch is committed."""

    node_name: str
    topic_prefix: str
    kind: str
    online: bool
    last_seen: dt.datetime | None
    state: dict | None = None
    info: dict | None = None
    provisioned: bool = False
    data: dict = field(default_factory=dict)


def parse_message(
    topic: str, payload: bytes | bytearray | None, ts: dt.datetime
) -> Observation | None:
    """Map `<prefix>/status|info|state|event` to an Observation; None for other topics.

    Malformed payloads are reported as Observations with kind "bad_payload" so they
    are logged against the device rather than dropped silently.
    """
    prefix, sep, leaf = topic.rpartition("/")
    if not sep or not prefix or leaf not in ("status", "info", "state", "event"):
        return None
    raw = bytes(payload or b"")
    if leaf == "status":
        text = raw.decode("utf-8", "replace").strip()
        if text in ("online", "offline"):
            return Observation(text, prefix, ts, reason="status")
        return Observation("bad_payload", prefix, ts, {"topic": leaf, "payload": text[:64]})
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Observation("bad_payload", prefix, ts, {"topic": leaf, "payload": raw[:64].hex()})
    if not isinstance(doc, dict):
        return Observation("bad_payload", prefix, ts, {"topic": leaf, "payload": str(doc)[:64]})
    return Observation(leaf, prefix, ts, doc)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def clean_state(doc: dict) -> dict:
    state = {k: doc.get(k) for k in STATE_FIELDS if k in doc}
    for key in ("temperature", "humidity"):
        if key in state:
            state[key] = _number(state[key])
    for key in ("rssi", "uptime", "heap_free"):
        if key in state:
            num = _number(state[key])
            state[key] = None if num is None else int(num)
    if "error" in state and not isinstance(state["error"], str):
        state["error"] = str(state["error"])[:64]
    return state


class Tracker:
    """Applies batches of Observations; keeps a prefix -> device id cache."""

    def __init__(self, reading_min_interval_s: float = 10.0) -> None:
        self.reading_min_interval = dt.timedelta(seconds=reading_min_interval_s)
        self._ids: dict[str, tuple[int, str]] = {}  # prefix -> (device id, node name)
        self._last_reading: dict[int, dt.datetime] = {}
        self._unknown_logged: set[str] = set()

    def forget(self, prefix: str | None = None) -> None:
        """Drop cached ids (after a device was removed or re-registered)."""
        if prefix is None:
            self._ids.clear()
        else:
            self._ids.pop(prefix, None)

    def _device(self, prefix: str) -> tuple[int, str] | None:
        if prefix not in self._ids:
            row = (
                Device.select(Device.id, Device.node_name)
                .where(Device.topic_prefix == prefix)
                .first()
            )
            if row is None:
                if prefix not in self._unknown_logged:
                    self._unknown_logged.add(prefix)
                    log.info("ignoring messages for unregistered prefix %s", prefix)
                return None
            self._ids[prefix] = (row.id, row.node_name)
        return self._ids[prefix]

    def apply(self, batch: list[Observation]) -> list[DeviceUpdate]:
        """Write one batch (call inside a transaction); returns one update per change.

        `state` messages are the bulk of the traffic: per batch each device's row is
        written once (its latest state) and readings go in with one executemany, so
        the ingest thread holds the GIL as little as possible.
        """
        updates: list[DeviceUpdate] = []
        latest: dict[int, tuple[str, str, Observation, dict]] = {}
        readings: list[tuple] = []
        for obs in batch:
            found = self._device(obs.prefix)
            if found is None:
                continue
            dev_id, node = found
            if obs.kind == "state":
                state = clean_state(obs.payload)
                if self._reading_due(dev_id, obs.ts):
                    readings.append(
                        (
                            dev_id,
                            obs.ts,
                            state.get("temperature"),
                            state.get("humidity"),
                            state.get("rssi"),
                        )
                    )
                latest[dev_id] = (node, obs.prefix, obs, state)
                continue
            # Write the pending state first so updates stay in arrival order.
            if dev_id in latest:
                updates += self._write_states({dev_id: latest.pop(dev_id)})
            update = self._apply_one(dev_id, obs)
            if update is not None:
                updates.append(update)
        updates += self._write_states(latest)
        if readings:
            self._executemany(
                "INSERT INTO reading (device_id, ts, temperature, humidity, rssi) "
                "VALUES (?, ?, ?, ?, ?)",
                readings,
            )
        return updates

    def _reading_due(self, dev_id: int, ts: dt.datetime) -> bool:
        last = self._last_reading.get(dev_id)
        if last is not None and ts - last < self.reading_min_interval:
            return False
        self._last_reading[dev_id] = ts
        return True

    @staticmethod
    def _executemany(sql: str, rows: list[tuple]) -> None:
        db = Device._meta.database
        cursor = db.cursor()
        cursor.executemany(sql.replace("?", db.param), rows)

    def _write_states(self, latest: dict[int, tuple[str, str, Observation, dict]]) -> list:
        if not latest:
            return []
        # A state message proves the device is up even if its `online` was missed.
        self._executemany(
            "UPDATE device SET last_state = ?, last_seen = ?, online = ? WHERE id = ?",
            [
                (json.dumps(state, separators=(",", ":")), obs.ts, True, dev_id)
                for dev_id, (_, _, obs, state) in latest.items()
            ],
        )
        return [
            DeviceUpdate(
                node_name=node,
                topic_prefix=prefix,
                kind="state",
                online=True,
                last_seen=obs.ts,
                state=state,
            )
            for node, prefix, obs, state in latest.values()
        ]

    def _apply_one(self, dev_id: int, obs: Observation) -> DeviceUpdate | None:
        dev = Device.get_or_none(Device.id == dev_id)
        if dev is None:  # removed while its last messages were on their way
            self.forget(obs.prefix)
            return None
        if obs.kind == "online":
            return self._online(dev, obs)
        if obs.kind == "offline":
            if not dev.online:
                return None
            Device.update(online=False).where(Device.id == dev_id).execute()
            dev.online = False
            Event.create(
                device=dev,
                ts=obs.ts,
                kind="offline",
                message=f"{dev.node_name} went offline ({obs.reason or 'will'})",
            )
            return self._update(dev, "offline")
        if obs.kind == "info":
            info = {
                k: obs.payload.get(k) for k in INFO_FIELDS if isinstance(obs.payload.get(k), str)
            }
            where = obs.payload.get("broker")
            if isinstance(where, str) and 0 < len(where) <= 270:
                info["broker_address"] = where
            if info.get("chip_id") and dev.chip_id not in (None, info["chip_id"]):
                Event.create(
                    device=dev,
                    ts=obs.ts,
                    kind="chip_mismatch",
                    message=f"{dev.node_name} reports chip {info['chip_id']}, "
                    f"registered as {dev.chip_id}",
                )
                info.pop("chip_id")
            if (
                info.get("chip_id")
                and Device.select()
                .where((Device.chip_id == info["chip_id"]) & (Device.id != dev_id))
                .exists()
            ):
                info.pop("chip_id")
            if info:
                Device.update(**info, last_seen=obs.ts).where(Device.id == dev_id).execute()
            # `data`: the whole document as the device sent it (a rollout confirms by
            # fields the registry does not keep: broker, interval).
            doc = dict(obs.payload) if isinstance(obs.payload, dict) else {}
            return self._update(Device.get_by_id(dev_id), "info", info=info, data=doc)
        if obs.kind == "event":
            Event.create(
                device=dev,
                ts=obs.ts,
                kind="device_event",
                message=json.dumps(obs.payload)[:500],
                data=obs.payload,
            )
            return self._update(dev, "event", data=obs.payload)
        if obs.kind == "bad_payload":
            Event.create(
                device=dev,
                ts=obs.ts,
                kind="bad_payload",
                message=f"unreadable {obs.payload.get('topic')} message",
                data=obs.payload,
            )
            return None
        return None

    def _online(self, dev: Device, obs: Observation) -> DeviceUpdate:
        first = not dev.is_provisioned
        fields: dict[str, Any] = {"online": True, "last_seen": obs.ts}
        if first:
            # Seed step 4: the first `online` on a registered prefix completes provisioning.
            fields.update(is_provisioned=True, provisioned_at=obs.ts)
        Device.update(**fields).where(Device.id == dev.id).execute()
        unfinished = (ProvisioningJob.device == dev.id) & (ProvisioningJob.is_provisioned == False)  # noqa: E712
        if not first:
            # A device provisioned before: only a job that configured it (and waits for it,
            # or gave up waiting) is completed by this `online`; a re-provisioning job
            # still to configure is not, since the device may be running its old settings.
            unfinished &= ProvisioningJob.step == Step.RECONNECT
        jobs = ProvisioningJob.update(
            is_provisioned=True,
            connected_at=obs.ts,
            step=Step.COMPLETE,
            progress=100,
            status=Status.DONE,
            error=None,
            updated_at=obs.ts,
        ).where(unfinished)
        completed = jobs.execute()
        if not dev.online or first:
            Event.create(
                device=dev,
                ts=obs.ts,
                kind="provisioned" if first else "online",
                message=f"{dev.node_name} is online" + (" (provisioned)" if first else ""),
            )
        for key, value in fields.items():
            setattr(dev, key, value)
        return self._update(dev, "online", provisioned=first or completed > 0)

    @classmethod
    def offline_update(cls, dev: Device) -> DeviceUpdate:
        """The update for a device marked offline outside a batch (at broker start)."""
        return cls._update(dev, "offline")

    @staticmethod
    def _update(dev: Device, kind: str, **extra: Any) -> DeviceUpdate:
        return DeviceUpdate(
            node_name=dev.node_name,
            topic_prefix=dev.topic_prefix,
            kind=kind,
            online=dev.online,
            last_seen=dev.last_seen,
            **extra,
        )
