"""`station backend-api`: the seed's backend endpoints (and, by default, the MQTT broker)
in the foreground, so the seed's mobile app can use this station as its backend."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from station.cli.common import load_settings, open_registry

log = logging.getLogger("station.backend_api")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backend-api",
        help="serve the seed app's backend API (register/status) with the MQTT broker",
    )
    p.add_argument(
        "--bind", metavar="HOST", help="listen address of both servers (default 0.0.0.0)"
    )
    p.add_argument("--port", type=int, default=8000, help="API port (default 8000; 0 = any)")
    p.add_argument(
        "--broker-port", type=int, help="MQTT broker port (default: settings, 1883; 0 = any)"
    )
    p.add_argument(
        "--advertise",
        metavar="HOST",
        help="broker address handed to devices (default: settings broker.advertise_host, "
        "else this computer's LAN address)",
    )
    p.add_argument(
        "--no-broker",
        action="store_true",
        help="serve only the API; a `station broker` on the same database does the MQTT side",
    )
    p.add_argument(
        "--seed-app-devices",
        action="store_true",
        default=None,
        help="let devices registered now log in WITHOUT a token (the seed's mobile app "
        "sends no MQTT credentials); anyone who learns such a node name can then publish "
        "as that device: use on a trusted network only (setting broker.seed_app_devices)",
    )
    p.set_defaults(func=run, log_level=logging.INFO)


def run(args: argparse.Namespace) -> int:
    from station.backend_api import BackendApi
    from station.netinfo import lan_address

    settings = load_settings(args)
    if args.bind:
        settings.broker.bind_host = args.bind
    if args.broker_port is not None:
        settings.broker.port = args.broker_port
    if args.seed_app_devices:
        settings.broker.seed_app_devices = True
    settings.validate()
    advertise = args.advertise or settings.broker.advertise_host or lan_address()
    registry = open_registry(args, settings)
    broker = None
    if not args.no_broker:
        from broker import EmbeddedBroker

        broker = EmbeddedBroker(
            registry,
            settings.broker,
            reading_min_interval_s=settings.registry.reading_min_interval_s,
        )
    api = BackendApi(
        registry,
        broker_host=advertise,
        broker_port=None if broker else settings.broker.port,
        broker=broker,
        bind_host=settings.broker.bind_host,
        port=args.port,
        seed_app_devices=settings.broker.seed_app_devices,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if broker is not None:
            broker.start()
            print(f"broker listening on {settings.broker.bind_host}:{broker.port}", flush=True)
        api.start()
        # Machine-readable line for scripts and tests that start us with --port 0.
        print(f"backend API listening on {api.bind_host}:{api.port}", flush=True)
        log.info("devices will be told to use the broker at %s:%d", advertise, api.broker_port)
        if advertise.startswith("127."):
            log.warning(
                "advertising a loopback address: real devices cannot reach it (use --advertise)"
            )
        while not stop.wait(0.5):
            pass
    finally:
        api.stop()
        if broker is not None:
            broker.stop()
        registry.close()
    return 0
