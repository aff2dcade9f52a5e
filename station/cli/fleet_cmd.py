"""`station fleet`: changes to installed devices, rolled out in stages (one canary first,
then a few at a time, only devices online) and confirmed by what each device reports
over MQTT (docs/OTA.md).

    station fleet update --demo 5              # the whole story on a simulated site
    station fleet update --home Smith          # the next firmware for a home's devices
    station fleet rehome --home Smith --broker mqtt://admin:pw@192.168.1.20:1883
    station fleet set-interval 30 --all

Exit code 0 only if every device named was confirmed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TextIO

from station.cli.common import load_settings, open_registry
from station.cli.provision_cmd import demo_count
from station.errors import StationError
from station.fleet.rollout import DeviceProgress, Phase, RolloutResult

if TYPE_CHECKING:
    from station.runtime import StationRuntime

log = logging.getLogger("station.fleet")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet",
        help="update installed devices: firmware, broker, interval (staged, confirmed)",
        description="Changes to installed devices, rolled out in stages: one canary "
        "first, then the rest a few at a time, only devices online. A device counts as "
        "done only when it reports the change over MQTT.",
    )
    verbs = p.add_subparsers(dest="fleet_verb", metavar="VERB")
    up = verbs.add_parser(
        "update",
        help="build the next firmware version and roll it out",
        description="Build a firmware bundle (manifest with each file's SHA-256), serve "
        "it on the LAN, and roll it out: the canary first; if it does not come back "
        "on the new version, it rolls back by itself and nothing else is touched.",
    )
    add_targets(up)
    up.add_argument(
        "--version",
        metavar="X.Y.Z",
        help="the version to build (default: the next patch version after the newest "
        "the devices run)",
    )
    up.add_argument(
        "--bundle",
        type=Path,
        metavar="DIR",
        help="roll out this bundle (`station firmware bundle`), checked against its "
        "manifest first, instead of building one",
    )
    add_rollout_options(up)
    up.add_argument(
        "--bad-bundle",
        action="store_true",
        help="--demo: roll out a firmware that crashes at boot (the canary rolls back "
        "and the rollout stops)",
    )
    up.set_defaults(func=run_update)

    mv = verbs.add_parser(
        "rehome",
        help="move a home's devices to another broker (no visit)",
        description="Tell each device of a home a new broker and its login there "
        "(set_broker). A device counts as moved only when it reports from the new "
        "broker; one the new broker refuses or cannot be reached stays on its old one. "
        "The home points at the new broker once every device has moved.",
    )
    where = mv.add_mutually_exclusive_group(required=True)
    where.add_argument("--home", metavar="NAME", help="the home whose devices move")
    where.add_argument(
        "--demo",
        type=demo_count,
        metavar="N",
        help="a simulated site: provision N devices to the station's broker, then move them",
    )
    mv.add_argument(
        "--broker",
        required=True,
        metavar="URL",
        help="mqtt://ADMIN:PASSWORD@host:port (a Mosquitto with dynamic security, as the "
        "home LAN names it; the login goes to the OS keyring), or 'embedded' (this station)",
    )
    mv.add_argument(
        "--and-back",
        action="store_true",
        help="--demo: then move them back to the station's embedded broker",
    )
    add_rollout_options(mv, timeout=120.0)
    mv.set_defaults(func=run_rehome, device=None, all=False)

    iv = verbs.add_parser(
        "set-interval",
        help="set how often devices send readings (confirmed by each device)",
    )
    iv.add_argument("seconds", type=int, metavar="SECONDS", help="1 to 3600")
    add_targets(iv)
    add_rollout_options(iv, timeout=60.0)
    iv.set_defaults(func=run_set_interval)

    def no_verb(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_verb, log_level=logging.WARNING)


def add_targets(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--home", metavar="NAME", help="every device of this home")
    which.add_argument("--device", action="append", metavar="NODE", help="this device (repeatable)")
    which.add_argument("--all", action="store_true", help="every registered device")
    which.add_argument(
        "--demo",
        type=demo_count,
        metavar="N",
        help="a simulated site: provision N devices running the real firmware, then "
        "update them all",
    )


def add_rollout_options(p: argparse.ArgumentParser, timeout: float = 300.0) -> None:
    p.add_argument(
        "--canary", type=int, default=1, metavar="N", help="devices updated first, alone (1)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="devices updated at a time after the canary (4)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=0,
        metavar="N",
        help="failures after the canary before no more devices are started (0)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="S",
        help=f"seconds a device has to confirm before it counts as failed ({timeout:g})",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to wait for the devices to reconnect to the station's broker "
        "before starting (60)",
    )


# -- output -----------------------------------------------------------------------------


class RolloutPrinter:
    """One line per phase change of a device; called with the rollout's lock held, so
    it only formats and writes."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.lock = threading.Lock()

    def __call__(self, dev: DeviceProgress) -> None:
        stage = "canary" if dev.canary else ""
        line = f"  {stage:<6} {dev.node:<18} {outcome(dev)}"
        with self.lock:
            print(line, file=self.out, flush=True)


def outcome(dev: DeviceProgress) -> str:
    """The phase and the device's reason; a device never started says only that (the
    summary line says why the rollout stopped)."""
    if dev.phase is Phase.CANCELLED:
        return "not started"
    return str(dev.phase) + (f": {dev.reason}" if dev.reason else "")


def final_table(
    result: RolloutResult,
    columns: Sequence[tuple[str, Callable[[str], str | None]]] = (),
    already: Sequence[str] = (),
) -> str:
    """node, `columns` (title, value of a node), the outcome and its time."""
    titles = ["node", *(t for t, _ in columns), "result"]
    rows = [titles]
    times = ["time"]
    for dev in result.devices:
        took = dev.timings.get(str(dev.phase)) if dev.final else None
        rows.append([dev.node, *((fn(dev.node) or "?") for _, fn in columns), outcome(dev)])
        times.append(f"{took:.1f} s" if took is not None else "")
    for node in already:
        rows.append([node, *((fn(node) or "?") for _, fn in columns), "already done"])
        times.append("")
    widths = [max(len(r[i]) for r in rows) for i in range(len(titles))]
    lines = []
    for i, (r, t) in enumerate(zip(rows, times, strict=True)):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + "  " + t)
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(line.rstrip() for line in lines)


def drive(session: Cancellable, run: Callable[[], RolloutResult]) -> tuple[RolloutResult, bool]:
    """Run the rollout; the first Ctrl-C cancels it (no more devices started, those under
    way finish), a second one leaves at once. -> (result, cancelled)."""
    cancelled = threading.Event()

    def on_signal(*_a: object) -> None:
        if cancelled.is_set():
            raise KeyboardInterrupt
        cancelled.set()
        print(
            "\nCancelling: no more devices are started; those under way finish "
            "(Ctrl-C again to leave them now)...",
            file=sys.stderr,
            flush=True,
        )
        session.cancel()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return run(), cancelled.is_set()


class Cancellable(Protocol):
    def cancel(self) -> None: ...


def summary(result: RolloutResult, what: str) -> str:
    confirmed = result.count(Phase.CONFIRMED)
    return f"\n{confirmed} of {len(result.devices)} device(s) {what}" + (
        f"; stopped: {result.stopped}" if result.stopped else "."
    )


# -- wiring -------------------------------------------------------------------------------


def start_runtime(args: argparse.Namespace) -> StationRuntime:
    """A demo site (provisioned here), or this computer's station with its broker."""
    from station import control
    from station.runtime import StationRuntime

    settings = load_settings(args)
    if args.demo:
        print(
            f"Starting {args.demo} simulated devices (real firmware, MicroPython unix port)...",
            flush=True,
        )
        rt = StationRuntime.start(settings, db=args.db, demo_devices=args.demo)
        try:
            provision_demo(rt)
        except BaseException:
            rt.stop()
            raise
        return rt
    registry = open_registry(args, settings)
    location = registry.location
    registry.close()
    running = control.find(location)
    if running is not None:
        # Its broker holds the devices: a second one cannot serve them.
        raise StationError(
            f"the station is running (process {running.pid}) and its broker holds the "
            "devices: use its Update firmware action, or close it and run this again"
        )
    return StationRuntime.start(settings, db=args.db)


def provision_demo(rt: StationRuntime) -> None:
    from station.provisioning import BulkQueue

    home = rt.registry.homes()[0]  # the demo's own home (StationRuntime.start)
    queue = BulkQueue(rt.provisioning_station())
    began = time.monotonic()
    queue.add(queue.scan(), home)
    password = rt.secrets.home_password(home.id)
    assert password is not None  # the demo stored it (StationRuntime.start)
    summary = queue.run(home, password)
    print(
        f"Provisioned {len(summary.done)} of {len(summary.done) + len(summary.failed)} "
        f"devices into {home.name!r} ({time.monotonic() - began:.0f} s).",
        flush=True,
    )
    if not summary.done:
        raise StationError("no demo device was provisioned: nothing to update")


def chosen_nodes(args: argparse.Namespace, rt: StationRuntime) -> list[str]:
    registry = rt.registry
    if args.device:
        return [registry.device(n).node_name for n in args.device]
    devices = registry.devices()
    if args.home:
        home = next((h for h in registry.homes() if h.name == args.home), None)
        if home is None:
            raise StationError(f"no home {args.home!r} (see `station homes`)")
        devices = [d for d in devices if d.home is not None and d.home.id == home.id]
        if not devices:
            raise StationError(f"home {home.name!r} has no device")
    if not devices:
        raise StationError("no device is registered yet")
    return [d.node_name for d in devices]


def wait_online(rt: StationRuntime, nodes: Sequence[str], timeout: float) -> None:
    """Devices of the embedded broker reconnect to it a few seconds after it starts:
    give them `timeout` seconds (those of a home's own broker are there already)."""
    registry = rt.registry

    def online() -> int:
        return sum(registry.device(n).online for n in nodes)

    if online() == len(nodes) or timeout <= 0:
        return
    print(
        f"Waiting up to {timeout:g} s for the devices to reach the broker "
        f"({online()} of {len(nodes)} online)...",
        flush=True,
    )
    deadline = time.monotonic() + timeout
    while online() < len(nodes) and time.monotonic() < deadline:
        time.sleep(0.5)


def run_update(args: argparse.Namespace) -> int:
    from station.fleet.bundle import load_bundle
    from station.fleet.session import FirmwareUpdate
    from station.sim import firmware

    if args.bad_bundle and not args.demo:
        raise StationError(
            "--bad-bundle is for a demo site (--demo N): it rolls out a firmware that "
            "crashes at boot"
        )
    if args.version is not None:
        firmware.check_version(args.version)  # refused before anything starts
    bundle = None
    if args.bundle is not None:
        if args.bad_bundle:
            raise StationError("--bundle and --bad-bundle: choose one")
        bundle = load_bundle(args.bundle)  # BundleError says what differs
    rt = start_runtime(args)
    update: FirmwareUpdate | None = None
    try:
        nodes = chosen_nodes(args, rt)
        if not args.demo:
            wait_online(rt, nodes, args.wait)
        printer = RolloutPrinter()
        update = FirmwareUpdate(
            rt,
            nodes,
            version=args.version,
            bundle=bundle,
            canary=args.canary,
            concurrency=args.concurrency,
            max_failures=args.max_failures,
            device_timeout_s=args.timeout,
            on_progress=printer,
            bad_bundle=args.bad_bundle,
        )
        bundle = update.prepare()
        kind = " (a firmware that crashes at boot)" if args.bad_bundle else ""
        print(
            f"Firmware {update.version}{kind}: {len(bundle.manifest['files'])} files, "
            f"{bundle.size / 1024:.0f} KB, served at {update.url}\n"
            f"Updating {len(update.nodes)} device(s): {args.canary} canary first, then "
            f"{args.concurrency} at a time.",
            flush=True,
        )
        if update.already:
            print(f"Already on {update.version}: {', '.join(update.already)}", flush=True)
        result, cancelled = drive(update, update.run)
        registry = rt.registry

        def reports(node: str) -> str | None:
            try:
                return registry.device(node).firmware
            except StationError:  # removed meanwhile
                return None

        previous = update.previous
        columns: list[tuple[str, Callable[[str], str | None]]] = [
            ("before", lambda n: previous.get(n)),
            ("reports", reports),
        ]
        print("\n" + final_table(result, columns, update.already), flush=True)
        print(summary(result, f"confirmed on firmware {update.version}"), flush=True)
        if cancelled:
            return 130
        left = [d.node for d in result.devices if d.phase is not Phase.CONFIRMED]
        if left and not args.demo:
            print(
                f"To try the others again: station fleet update --version {update.version} "
                + " ".join(f"--device {n}" for n in left),
                file=sys.stderr,
            )
        return 0 if not left else 1
    finally:
        if update is not None:
            update.close()
        rt.stop()


def run_rehome(args: argparse.Namespace) -> int:

    from station import broker_target

    if args.and_back and not args.demo:
        raise StationError("--and-back is for a demo site (--demo N)")
    broker_target.parse(args.broker)  # a bad URL is refused before anything starts
    rt = start_runtime(args)
    try:
        home = args.home or rt.registry.homes()[0].name  # a demo's own home
        if not args.demo:
            nodes = [d.node_name for d in rt.registry.devices() if d.home and d.home.name == home]
            wait_online(rt, nodes, args.wait)
        code = _move(rt, args, home, args.broker)
        if code == 0 and args.and_back:
            print("\nAnd back:", flush=True)
            code = _move(rt, args, home, "embedded")
        return code
    finally:
        rt.stop()


def _move(rt: StationRuntime, args: argparse.Namespace, home: str, broker: str) -> int:
    from station.fleet.rehome import BrokerMove

    move = BrokerMove(
        rt,
        home,
        broker,
        canary=args.canary,
        concurrency=args.concurrency,
        max_failures=args.max_failures,
        device_timeout_s=args.timeout,
        on_progress=RolloutPrinter(),
    )
    with move:
        target = move.target_url or "the station's embedded broker"
        print(
            f"Moving {len(move.nodes)} device(s) of {move.home.name!r} to {target} (they "
            f"are told {move.address}): {args.canary} canary first.",
            flush=True,
        )
        if move.already:
            print(f"Already there: {', '.join(move.already)}", flush=True)
        result, cancelled = drive(move, move.run)
    print("\n" + final_table(result, already=move.already), flush=True)
    print(summary(result, f"moved to {move.address}"), flush=True)
    if move.home_moved:
        print(f"Home {move.home.name!r} now reports to {target}.", flush=True)
    else:
        print(
            f"Home {move.home.name!r} still points at its old broker: the devices not "
            "moved are still there (run the same command again to move them).",
            flush=True,
        )
    if cancelled:
        return 130
    return 0 if move.home_moved else 1


def run_set_interval(args: argparse.Namespace) -> int:
    from station import commands
    from station.fleet.interval import IntervalUpdate

    commands.INTERVAL.check(args.seconds)  # refused before anything starts
    rt = start_runtime(args)
    try:
        nodes = chosen_nodes(args, rt)
        if not args.demo:
            wait_online(rt, nodes, args.wait)
        with IntervalUpdate(
            rt,
            nodes,
            args.seconds,
            canary=args.canary,
            concurrency=args.concurrency,
            max_failures=args.max_failures,
            device_timeout_s=args.timeout,
            on_progress=RolloutPrinter(),
        ) as change:
            print(f"Interval {args.seconds} s for {len(nodes)} device(s).", flush=True)
            result, cancelled = drive(change, change.run)
        print("\n" + final_table(result), flush=True)
        print(summary(result, f"confirmed on {args.seconds} s"), flush=True)
        if cancelled:
            return 130
        return 0 if all(d.phase is Phase.CONFIRMED for d in result.devices) else 1
    finally:
        rt.stop()
