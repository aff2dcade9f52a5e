"""`station devices`: the registry's device table."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging

from station.cli.common import existing_registry, load_settings, open_registry
from station.registry.models import Device, utcnow

COLUMNS = (
    "node",
    "name",
    "chip id",
    "state",
    "temp °C",
    "hum %",
    "rssi",
    "ip",
    "firmware",
    "last seen",
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="print the registry's device table")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=run, log_level=logging.WARNING)


def ago(ts: dt.datetime | None, now: dt.datetime) -> str:
    if ts is None:
        return "never"
    secs = int((now - ts).total_seconds())
    if secs < 60:
        return f"{secs}s ago"
    if secs < 3600:
        return f"{secs // 60}m ago"
    if secs < 86400:
        return f"{secs // 3600}h ago"
    return f"{secs // 86400}d ago"


def row(dev: Device, now: dt.datetime) -> tuple[str, ...]:
    state = dev.last_state or {}
    status = "online" if dev.online else ("offline" if dev.is_provisioned else "pending")

    def fmt(value: object) -> str:
        return "–" if value is None else str(value)

    return (
        dev.node_name,
        dev.name or "–",
        fmt(dev.chip_id),
        status,
        fmt(state.get("temperature")),
        fmt(state.get("humidity")),
        fmt(state.get("rssi")),
        fmt(dev.ip),
        fmt(dev.firmware),
        ago(dev.last_seen, now),
    )


def as_json(dev: Device) -> dict:
    return {
        "node_name": dev.node_name,
        "name": dev.name,
        "chip_id": dev.chip_id,
        "topic_prefix": dev.topic_prefix,
        "online": dev.online,
        "is_provisioned": dev.is_provisioned,
        "ip": dev.ip,
        "firmware": dev.firmware,
        "last_seen": dev.last_seen.isoformat() + "Z" if dev.last_seen else None,
        "state": dev.last_state,
    }


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if not existing_registry(args, settings):  # a listing never creates a database
        if not args.json:
            print("No devices registered yet (no registry database yet).")
        return 0
    registry = open_registry(args, settings)
    try:
        devices = registry.devices()
        if args.json:
            for dev in devices:
                print(json.dumps(as_json(dev)))
            return 0
        if not devices:
            print(f"No devices registered yet ({registry.location}).")
            return 0
        now = utcnow()
        rows = [COLUMNS, *(row(d, now) for d in devices)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
        for i, r in enumerate(rows):
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
        online = sum(d.online for d in devices)
        print(f"\n{online} online / {len(devices)} devices — {registry.location}")
        return 0
    finally:
        registry.close()
