"""`station provision`: the bulk flow from a terminal, with progress and a final table.

    station provision --home Smith --ssid MyHomeWiFi --all
    station provision --demo 5          # a simulated site: nothing else needed

Exit code 0 only if every device came online.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING

from station import broker_target, external_broker
from station.cli.common import load_settings
from station.cli.homes_cmd import check_wifi_password, read_password
from station.cli.report_cmd import report_dir, write_home_report
from station.cli.seed_flow import (
    ProgressPrinter,
    TerminalConfirm,
    add_each,
    device_scan_reporter,
    final_table,
    print_device_networks,
    run_one_by_one,
    run_started,
)
from station.errors import StationError
from station.external_broker import ExternalBroker
from station.provisioning import BulkQueue, SetupTarget, is_setup_ap
from station.registry import Device, Home, Registry
from station.secrets import SecretStore

if TYPE_CHECKING:
    from station.runtime import StationRuntime

log = logging.getLogger("station.provision")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provision", help="provision setup-mode devices in bulk")
    p.add_argument("--home", metavar="NAME", help="the customer site (created if --ssid given)")
    p.add_argument("--ssid", help="the home WiFi network the devices should join")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the home WiFi password from standard input",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every setup AP in range (default)")
    which.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="SSID",
        help="only this setup AP (repeatable)",
    )
    which.add_argument(
        "--reprovision",
        metavar="NODE",
        help="configure a registered device again (same node name, new token); "
        "waits for its setup network, so put it in setup mode (factory reset) first",
    )
    p.add_argument(
        "--wifi",
        metavar="BACKEND",
        help="WiFi backend (networkmanager, pywifi, netsh, macos, manual, simulated)",
    )
    p.add_argument(
        "--demo",
        type=demo_count,
        metavar="N",
        help="simulate a site with N devices running the real firmware",
    )
    p.add_argument(
        "--broker",
        metavar="URL",
        help="--demo: the devices report to this external broker (mqtt[s]://USER:PASS@host:port, "
        "a Mosquitto with its dynamic-security plugin) instead of the station's own; a "
        "real home's broker is set with `station homes add|edit --broker`",
    )
    p.add_argument(
        "--ca",
        metavar="FILE",
        help="--broker mqtts://…: the CA certificate (PEM) that signed the broker's; the "
        "station checks the broker with it and gives it to every device",
    )
    p.add_argument(
        "--switch-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="--demo: seconds a simulated WiFi switch takes (real ones take ~4 s)",
    )
    p.add_argument(
        "--report",
        type=report_dir,
        metavar="DIR",
        help="after the run, write the home's handover report (DIR/<home>-handover.csv "
        "and .pdf, as `station report`)",
    )
    p.set_defaults(func=run, log_level=logging.WARNING)


MAX_DEMO_DEVICES = 200  # as `station sim --devices`


def demo_count(text: str) -> int:
    """--demo N: 1 to MAX_DEMO_DEVICES simulated devices (0 or less is no demo at all)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_DEMO_DEVICES:
        raise argparse.ArgumentTypeError(
            f"--demo takes a number of devices from 1 to {MAX_DEMO_DEVICES}, not {text!r}"
        )
    return n


# -- output ---------------------------------------------------------------------------


# ProgressPrinter (the seed's 20 → 100 %), the final table (real seconds per job) and the
# manual flow's terminal prompts live in station/cli/seed_flow.py.


# -- wiring ---------------------------------------------------------------------------


def resolve_home(
    args: argparse.Namespace, registry: Registry, store: SecretStore, password: str | None
) -> tuple[Home, str]:
    if not args.home:
        raise StationError("say which home with --home NAME (and --ssid for a new one)")
    home = next((h for h in registry.homes() if h.name == args.home), None)
    if home is None:
        if not args.ssid:
            raise StationError(f"no home {args.home!r} yet: give its WiFi with --ssid")
        # (Another station on a shared registry may add it at the same moment.)
        home = registry.ensure_home(args.home, args.ssid)
    if args.ssid and args.ssid != home.wifi_ssid:
        raise StationError(
            f"home {home.name!r} uses WiFi {home.wifi_ssid!r}, not "
            f"{args.ssid!r}; edit the home first"
        )
    if password is None:
        password = store.home_password(home.id)
    if password is None:
        password = read_password(False, command=f"provision --home {home.name!r}")
    check_wifi_password(password)
    store.set_home_password(home.id, password)
    return home, password


def run(args: argparse.Namespace) -> int:
    from station.runtime import StationRuntime

    settings = load_settings(args)
    if args.wifi:
        settings.provisioning.wifi_backend = args.wifi
    password = read_password(True) if args.password_stdin else None
    if args.broker and not args.demo:
        raise StationError(
            "--broker is for a demo site (--demo N); a real home's broker is part of the "
            "home: `station homes edit HOME --broker URL`"
        )
    demo_broker = broker_target.parse(args.broker) if args.broker else None
    if args.ca and (demo_broker is None or not demo_broker.tls):
        raise StationError("--ca goes with --broker mqtts://… (a TLS broker)")
    # Read and checked before anything starts: a bad file is one clear line.
    ca = broker_target.load_ca(args.ca) if args.ca else None
    if args.demo:
        print(
            f"Starting {args.demo} simulated devices (real firmware, MicroPython unix port)...",
            flush=True,
        )
    rt = StationRuntime.start(
        settings,
        db=args.db,
        demo_devices=args.demo or 0,
        demo_switch_delay=args.switch_delay,
        # The home's own broker is on its LAN: the simulated devices reach it as it is.
        demo_reach=[f"{demo_broker.host}:{demo_broker.port}"] if demo_broker else (),
    )
    cancel_requested = threading.Event()
    external: ExternalBroker | None = None
    try:
        if rt.demo is not None:
            args.home = args.home or "Demo home"
            args.ssid = args.ssid or rt.demo.home_ssid
            password = rt.demo.home_password if password is None else password
        registry = rt.registry
        device = registry.device(args.reprovision) if args.reprovision else None
        if device is not None and not args.home and device.home is not None:
            args.home = device.home.name
        # The home (and its password) first: no WiFi is touched for a home that is not there.
        home, password = resolve_home(args, registry, rt.secrets, password)
        if args.broker:
            target = external_broker.remember(rt.secrets, args.broker)
            home = registry.edit_home(
                home,
                broker_url=target.url if target else None,
                broker_ca=ca if target is not None and target.tls else None,
            )
        # A home with its own broker: checked before anything is configured.
        external = external_broker.for_home(
            registry,
            rt.secrets,
            home,
            reading_min_interval_s=settings.registry.reading_min_interval_s,
        )
        if external is not None:
            print(f"Broker: {external.target.url} (the home's own; logins by dynamic security)")
        # On a simulated site the person moves the simulated laptop (type a network name).
        air = rt.demo.air if rt.demo is not None else None
        confirm = TerminalConfirm(
            move=air.move_laptop if air is not None else None,
            air_root=str(air.root) if air is not None else None,
        )
        rt.choose_wifi(confirm=confirm)
        wifi = rt.wifi
        if wifi is None:
            raise StationError("no WiFi backend could be chosen")
        print(f"WiFi: {wifi.name} ({rt.wifi_reason})", flush=True)
        # The manual backend (the seed's own flow): one device at a time, the person
        # switching WiFi when asked.
        manual = wifi.name == "manual"
        if manual:
            wifi.usual_home = home.wifi_ssid  # where step 4 sends the person back to
        assert rt.radio is not None  # chosen above
        report = rt.radio.recover(rt.journal())  # one radio job: nothing interleaves
        if str(report):
            log.info("%s", report)
        printer = ProgressPrinter(steps=manual)
        station = rt.provisioning_station()
        if external is not None:
            station.broker = external
            station.broker_host, station.broker_port = external.address
            station.broker_ca = external.device_ca
        if manual:
            # Step 3 shows the networks the device hears (GET /api/scan), with a warning
            # when the home network is not among them. Not in a bulk run: a real ESP32
            # scan takes seconds per device, and each batch must be home within
            # max_away_s (a missing home network still fails the device's trial).
            station.client_factory = device_scan_reporter(
                print_device_networks(home.wifi_ssid, sys.stdout)
            )
        queue = BulkQueue(station, printer)
        confirm.on_cancel = queue.cancel

        def on_signal(*_a: object) -> None:
            if cancel_requested.is_set():
                return
            cancel_requested.set()
            print("\nCancelling: the laptop goes back home first...", file=sys.stderr)
            queue.cancel()
            confirm.cancelled.set()
            if confirm.prompting:  # waiting for Enter: stop waiting
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

        if device is not None:
            return reprovision(queue, device, home, password, cancel_requested)
        since = run_started()
        if manual:
            targets = manual_targets(args, rt, settings.provisioning.setup_ssid_prefix)
            pids, summary = run_one_by_one(queue, targets, home, password, printer)
            table, ok = final_table(registry, pids, since)
            print("\n" + table, flush=True)
            if args.report:
                write_home_report(
                    registry, home, args.report, f"{station.broker_host}:{station.broker_port}"
                )
            if summary.cancelled:
                print("Cancelled. Run the same command again to continue.", file=sys.stderr)
                return 130
            return 0 if ok and summary.ok else 1
        targets = queue.scan()
        if args.device:
            wanted = set(args.device)
            missing = wanted - {t.ssid for t in targets}
            if missing:
                print("not in range: " + ", ".join(sorted(missing)), file=sys.stderr)
            targets = [t for t in targets if t.ssid in wanted]
        resumed = queue.jobs()
        if not targets and not resumed:
            print(
                "No device in setup mode found (looking for "
                f"{settings.provisioning.setup_ssid_prefix}-XXXXXX)."
            )
            return 1
        print(
            f"Found {len(targets)} device(s) in setup mode"
            + (f"; resuming {len(resumed)} unfinished job(s)" if resumed else "")
            + ".",
            flush=True,
        )
        add_each(queue, targets, home, printer)
        pids = [j.provisioning_id for j in queue.jobs()]
        summary = queue.run(home, password)
        pids += [p for p in summary.done + summary.failed if p not in pids]
        table, ok = final_table(registry, pids, since)
        print("\n" + table, flush=True)
        if args.report:
            write_home_report(
                registry, home, args.report, f"{station.broker_host}:{station.broker_port}"
            )
        if summary.cancelled:
            print("Cancelled. Run the same command again to continue.", file=sys.stderr)
            return 130
        return 0 if ok and summary.ok else 1
    finally:
        if external is not None:
            external.stop()
        rt.stop()


def reprovision(
    queue: BulkQueue,
    device: Device,
    home: Home,
    password: str,
    cancel_requested: threading.Event,
) -> int:
    """`--reprovision NODE`: the same node name and topic, a new token, configured again
    over its setup network (which a running device shows only after a factory reset)."""
    registry = queue.station.registry
    timeout = queue.station.settings.online_timeout_s
    print(
        f"Re-provisioning {device.node_name}: it keeps its node name and topic and gets a "
        "new token.\nIf it is running, put it in setup mode first: a factory reset (hold "
        "BOOT for 5 s while powering it on) brings up its setup network.\n"
        f"Waiting up to {timeout:.0f} s for it...",
        flush=True,
    )
    job, target = queue.reprovision(device, home, timeout)
    pids = [job.provisioning_id]
    summary = None
    if target is not None:
        print(f"Found {target.ssid}.", flush=True)
        summary = queue.run(home, password)
        pids += [p for p in summary.done + summary.failed if p not in pids]
    table, ok = final_table(registry, pids)
    print("\n" + table, flush=True)
    if cancel_requested.is_set():
        print("Cancelled. Run the same command again to continue.", file=sys.stderr)
        return 130
    return 0 if summary is not None and ok and summary.ok else 1


def manual_targets(args: argparse.Namespace, rt: StationRuntime, prefix: str) -> list[SetupTarget]:
    """The manual flow cannot scan: the devices are the ones named with --device (on a
    simulated site, every device of the demo)."""
    if args.device:
        bad = [name for name in args.device if not is_setup_ap(name, prefix)]
        if bad:
            raise StationError(
                f"{', '.join(bad)}: not a device setup network. They are named "
                f"{prefix}-XXXXXX (printed on the device)."
            )
        return [SetupTarget(name) for name in dict.fromkeys(args.device)]
    if rt.demo is not None:
        return [SetupTarget(ap.ssid) for ap in rt.demo.air.setup_aps()]
    raise StationError(
        "with manual WiFi switching the station cannot scan: name the device's network "
        f"with --device {prefix}-XXXXXX (printed on the device or its box)"
    )
