"""`station` with no sub-command: the desktop window (Qt lives only in station.ui).

Without a screen (a headless Linux box or SSH session) it says so and runs the
station headless instead: the broker and registry in the foreground, and where this
computer has no WiFi control, the demo site provisioned in the terminal first.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("station")


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True  # the user chose a platform (offscreen, vnc, ...)
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_gui(args: argparse.Namespace) -> int:
    if has_display():
        from station.ui.app import run

        return run(args)
    from station.cli.common import load_settings

    settings = load_settings(args)
    demo = 6 if args.demo else 0
    if not demo and settings.provisioning.wifi_backend == "auto":
        from station.wifi.select import select_backend

        try:
            demo = 6 if select_backend().name == "manual" else 0
        except Exception:
            demo = 6
    if not demo:
        print(
            "No display found: running the station headless (MQTT broker + device "
            "registry). `station --help` lists the other commands.",
            file=sys.stderr,
        )
        from station.cli import broker_cmd

        args.bind = args.port = args.allow_anonymous = None
        return broker_cmd.run(args)
    return run_headless_demo(args, settings, demo)


def run_headless_demo(args: argparse.Namespace, settings, devices: int) -> int:
    """The demo in a terminal: a simulated site, provisioned, then live readings."""
    from station.cli.broker_cmd import describe
    from station.cli.provision_cmd import ProgressPrinter, final_table
    from station.provisioning import BulkQueue
    from station.runtime import StationRuntime

    print(
        f"No display and no WiFi control here: running the demo in the terminal — a "
        f"simulated home WiFi and {devices} simulated sensors running the real firmware "
        "(MicroPython unix port).",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()
    queues: list[BulkQueue] = []

    def on_signal(*_a: object) -> None:
        stop.set()
        for q in queues:
            q.cancel()

    # Before the start-up, which takes seconds: Ctrl-C then still stops the devices and
    # removes the demo's temporary folder instead of a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    rt = StationRuntime.start(settings, db=getattr(args, "db", None), demo_devices=devices)
    try:
        if stop.is_set():
            return 130
        queue = BulkQueue(rt.provisioning_station(), ProgressPrinter())
        queues.append(queue)
        home = rt.registry.homes()[0]
        queue.add(queue.scan(), home)
        summary = queue.run(home, rt.secrets.home_password(home.id) or "")
        table, _ok = final_table(rt.registry, summary.done + summary.failed)
        print("\n" + table, flush=True)
        if stop.is_set():
            return 130
        print(
            f"\nMQTT broker on {rt.settings.broker.bind_host}:{rt.broker.port}; live "
            "readings follow (Ctrl-C to stop).",
            flush=True,
        )
        rt.broker.add_listener(
            lambda u: (
                print(describe(u), flush=True) if u.kind in ("state", "online", "offline") else None
            )
        )
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        rt.stop()
