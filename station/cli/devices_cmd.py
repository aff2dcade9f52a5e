"""`station devices`: the registry's device table."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging

from station.cli.common import confirm, existing_registry, load_settings, open_registry
from station.commands import COMMANDS, CommandError, TextArg
from station.errors import StationError
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
    p = sub.add_parser(
        "devices",
        help="the registry's device table; remove a device; send a device a command",
        description="Without a sub-command: the device table (as `devices list`).",
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=run, log_level=logging.WARNING)
    verbs = p.add_subparsers(dest="devices_verb", metavar="{list,edit,remove,command}")
    lst = verbs.add_parser("list", help="the device table (the default)")
    lst.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    lst.set_defaults(func=run)
    ed = verbs.add_parser(
        "edit",
        help="set a device's name and its room/location note (for the handover report)",
        description="Set a device's name and/or where it is installed (at most 100 "
        "characters each, one line); an empty value clears it.",
    )
    ed.add_argument("node", metavar="NODE", help="node name (esp32_dht11_001) or chip id")
    ed.add_argument("--name", metavar="TEXT", help="the device's name (e.g. 'Kitchen sensor')")
    ed.add_argument(
        "--location", metavar="TEXT", help="room/location note (e.g. 'kitchen, above the door')"
    )
    ed.set_defaults(func=run_edit)
    rm = verbs.add_parser(
        "remove",
        help="delete a device: its login stops working, Home Assistant forgets it",
    )
    rm.add_argument("node", metavar="NODE", help="node name (esp32_dht11_001) or chip id")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(func=run_remove)
    cmd = verbs.add_parser(
        "command",
        help="send a command to a connected device and print its answer",
        description="Commands (PROTOCOL.md section 2): "
        + "; ".join(
            f"{c.name}{''.join(f' {a.name.upper()}' for a in c.args)}: {c.help}"
            for c in COMMANDS.values()
        ),
    )
    cmd.add_argument("node", metavar="NODE", help="node name (esp32_dht11_001) or chip id")
    cmd.add_argument("command", choices=list(COMMANDS), help="the command")
    cmd.add_argument("values", nargs="*", metavar="VALUE", help="its arguments, in order")
    cmd.add_argument("--yes", action="store_true", help="do not ask before a factory reset")
    cmd.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the answer (10)"
    )
    cmd.set_defaults(func=run_command)


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
        "location": dev.location,
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


# -- remove and command --------------------------------------------------------------------


def _station_broker(registry_location: str):
    """The running station's broker (another process), else a stand-in for none."""
    from station import control

    remote = control.connect(registry_location)
    return remote if remote is not None else control.NoBroker()


def run_remove(args: argparse.Namespace) -> int:
    from station.device_ops import DeviceOps, label

    settings = load_settings(args)
    if not existing_registry(args, settings):
        raise StationError(f"no device {args.node!r}: no device is registered yet")
    registry = open_registry(args, settings)
    broker = None
    try:
        device = registry.device(args.node)
        if not confirm(
            f"Remove {label(device)}? Its history is deleted and its MQTT login stops working.",
            args.yes,
        ):
            print("Nothing removed.")
            return 1
        broker = _station_broker(registry.location)
        removal = DeviceOps(registry, broker).remove(device)
        where = (
            f"; cleared {len(removal.cleared)} retained topics on the running station's broker"
            if removal.cleared
            else ""
        )
        print(f"Removed {removal.label}{where}.")
        return 0
    finally:
        if broker is not None and hasattr(broker, "close"):
            broker.close()
        registry.close()


def run_edit(args: argparse.Namespace) -> int:
    if args.name is None and args.location is None:
        raise StationError("say what to change: --name TEXT and/or --location TEXT")
    settings = load_settings(args)
    if not existing_registry(args, settings):
        raise StationError(f"no device {args.node!r}: no device is registered yet")
    registry = open_registry(args, settings)
    try:
        device = registry.describe_device(
            registry.device(args.node), name=args.name, location=args.location
        )
        print(
            f"{device.node_name}: name {device.name or '(none)'!r}, "
            f"location {device.location or '(none)'!r}"
        )
        return 0
    finally:
        registry.close()


def _values(args: argparse.Namespace) -> dict[str, int | str]:
    """The command's arguments from the command line: whole numbers for its numeric
    arguments, text as given for its text ones (ota's url, sha256, version); each then
    checked by the command table (station/commands.py) as the device checks it."""
    spec = COMMANDS[args.command]
    if len(args.values) != len(spec.args):
        wanted = " ".join(a.name.upper() for a in spec.args) or "no value"
        raise CommandError(
            f"{spec.name} takes {wanted} ({'; '.join(a.help for a in spec.args)})"
            if spec.args
            else f"{spec.name} takes no value"
        )
    values: dict[str, int | str] = {}
    for arg, text in zip(spec.args, args.values, strict=True):
        if isinstance(arg, TextArg):
            values[arg.name] = text
            continue
        try:
            values[arg.name] = int(text)
        except ValueError:
            raise CommandError(f"{arg.name} must be a whole number, got {text!r}") from None
    return values


def run_command(args: argparse.Namespace) -> int:
    from station import commands, control
    from station.device_ops import DeviceOps

    spec = COMMANDS[args.command]
    values = _values(args)
    commands.build(spec.name, **values)  # a bad value is refused before anything opens
    settings = load_settings(args)
    if not existing_registry(args, settings):
        raise StationError(f"no device {args.node!r}: no device is registered yet")
    registry = open_registry(args, settings)
    try:
        device = registry.device(args.node)
        if spec.confirm and not confirm(
            f"{spec.label} {device.node_name}? {spec.confirm}", args.yes
        ):
            print("Nothing sent.")
            return 1
        home = device.home
        if home is not None and home.broker_url:
            # The device reports to its home's own broker: the command goes there.
            from station import external_broker
            from station.secrets import SecretStore

            ext = external_broker.for_home(registry, SecretStore(), home)
            assert ext is not None  # a home with a broker URL
            try:
                reply = ext.reply_to(
                    device,
                    spec.name,
                    lambda: DeviceOps(registry, ext).send(device, spec.name, **values),
                    args.timeout,
                )
            finally:
                ext.stop()
        else:
            remote = control.connect(registry.location)
            if remote is None:
                control.NoBroker().send_command(device, {})  # raises with the explanation
                return 2
            with remote:
                DeviceOps(registry, remote).send(device, spec.name, **values)
                reply = remote.wait_reply(device, spec.name, args.timeout)
        if reply is None:
            state = "online" if device.online else "offline"
            print(
                f"Sent {spec.name} to {device.node_name}; no answer within {args.timeout:g} s "
                f"(the registry has it {state}; commands are not queued for offline devices)."
            )
            return 1
        print(f"{device.node_name}: {commands.describe_reply(reply)}")
        return 0 if reply.get("ok") else 1
    finally:
        registry.close()
