"""`station broker`: the MQTT broker and registry in the foreground, logging device events."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from station.cli.common import load_settings, open_registry
from station.registry.tracking import DeviceUpdate

log = logging.getLogger("station.broker")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the MQTT broker and device registry in the foreground")
    p.add_argument("--bind", metavar="HOST", help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (default 1883)")
    p.add_argument(
        "--allow-anonymous",
        action="store_true",
        default=None,
        help="let clients without credentials subscribe (read-only)",
    )
    p.set_defaults(func=run, log_level=logging.INFO)


def describe(update: DeviceUpdate) -> str:
    if update.kind == "state" and update.state:
        s = update.state
        if s.get("error"):
            return f"{update.node_name}: sensor error {s['error']}"
        return (
            f"{update.node_name}: {s.get('temperature')} °C, {s.get('humidity')} %RH, "
            f"rssi {s.get('rssi')}"
        )
    if update.kind == "online":
        return f"{update.node_name} online" + (" — provisioned" if update.provisioned else "")
    if update.kind == "info" and update.info:
        return f"{update.node_name} info: " + ", ".join(f"{k}={v}" for k, v in update.info.items())
    if update.kind == "event":
        return f"{update.node_name} event: {update.data}"
    return f"{update.node_name} {update.kind}"


def run(args: argparse.Namespace) -> int:
    from broker import EmbeddedBroker

    settings = load_settings(args)
    if args.bind:
        settings.broker.bind_host = args.bind
    if args.port is not None:
        settings.broker.port = args.port
    if args.allow_anonymous:
        settings.broker.allow_anonymous = True
    settings.validate()
    registry = open_registry(args, settings)
    pruned = registry.prune_readings(settings.registry.reading_retention_days)
    if pruned:
        log.info(
            "pruned %d readings older than %d days",
            pruned,
            settings.registry.reading_retention_days,
        )
    broker = EmbeddedBroker(
        registry, settings.broker, reading_min_interval_s=settings.registry.reading_min_interval_s
    )
    broker.add_listener(lambda update: log.info("%s", describe(update)))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    broker.start()
    from station import control

    announcement = control.announce(broker, registry.location)  # for `station devices …`
    # Machine-readable line for scripts and tests that start us with --port 0.
    print(f"broker listening on {settings.broker.bind_host}:{broker.port}", flush=True)
    log.info(
        "registry: %s — %d devices; Ctrl-C to stop", registry.location, len(registry.devices())
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        control.withdraw(announcement)
        broker.stop()
        registry.close()
    return 0
