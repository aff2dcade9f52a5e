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

from station.cli.common import load_settings
from station.cli.homes_cmd import check_wifi_password, read_password
from station.errors import StationError
from station.provisioning import BulkQueue, Progress
from station.registry import Device, Home, Registry
from station.secrets import SecretStore

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
        type=int,
        metavar="N",
        help="simulate a site with N devices running the real firmware",
    )
    p.add_argument(
        "--switch-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="--demo: seconds a simulated WiFi switch takes (real ones take ~4 s)",
    )
    p.set_defaults(func=run, log_level=logging.WARNING)


# -- output ---------------------------------------------------------------------------


class ProgressPrinter:
    """One line per step change; stable and readable in a log or a terminal."""

    def __init__(self, out=sys.stdout) -> None:
        self.out = out
        self.lock = threading.Lock()

    def __call__(self, p: Progress) -> None:
        line = f"[{p.progress:3d}%] {p.node_name:<16} {p.ap_ssid or '':<25} {p.message}"
        if p.error:
            line += f"\n       error: {p.error}"
        with self.lock:
            print(line, file=self.out, flush=True)


def final_table(registry: Registry, pids: list[str]) -> tuple[str, bool]:
    jobs = [j for j in (registry.job(pid) for pid in pids) if j is not None]
    rows = [("node", "chip id", "setup AP", "result", "seconds", "error")]
    all_ok = bool(jobs)
    for job in jobs:
        ok = job.is_provisioned
        all_ok &= ok
        total = sum((job.timings or {}).values())
        rows.append(
            (
                job.device.node_name,
                job.device.chip_id or "–",
                job.ap_ssid or "–",
                "online" if ok else job.status,
                f"{total:.1f}",
                job.error or "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True))
            + ("  " + r[5] if r[5] else "")
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    done = sum(j.is_provisioned for j in jobs)
    lines.append(f"\n{done} of {len(jobs)} devices online")
    return "\n".join(lines), all_ok


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
        home = registry.add_home(args.home, args.ssid)
    elif args.ssid and args.ssid != home.wifi_ssid:
        raise StationError(
            f"home {home.name!r} uses WiFi {home.wifi_ssid!r}, not "
            f"{args.ssid!r}; edit the home first"
        )
    if password is None:
        password = store.home_password(home.id)
    if password is None:
        password = read_password(False)
    check_wifi_password(password)
    store.set_home_password(home.id, password)
    return home, password


def run(args: argparse.Namespace) -> int:
    from station.runtime import StationRuntime
    from station.wifi.guard import recover

    settings = load_settings(args)
    if args.wifi:
        settings.provisioning.wifi_backend = args.wifi
    password = read_password(True) if args.password_stdin else None
    if args.demo:
        print(
            f"Starting {args.demo} simulated devices (real firmware, MicroPython unix port)...",
            flush=True,
        )
    rt = StationRuntime.start(
        settings, db=args.db, demo_devices=args.demo or 0, demo_switch_delay=args.switch_delay
    )
    cancel_requested = threading.Event()
    try:
        if rt.demo is not None:
            args.home = args.home or "Demo home"
            args.ssid = args.ssid or rt.demo.home_ssid
            password = rt.demo.home_password if password is None else password
        else:
            rt.choose_wifi(confirm=_terminal_confirm)
        print(f"WiFi: {rt.wifi.name} ({rt.wifi_reason})", flush=True)
        report = recover(rt.wifi, rt.journal())
        if str(report):
            log.info("%s", report)
        registry = rt.registry
        device = registry.device(args.reprovision) if args.reprovision else None
        if device is not None and not args.home and device.home is not None:
            args.home = device.home.name
        home, password = resolve_home(args, registry, rt.secrets, password)
        queue = BulkQueue(rt.provisioning_station(), ProgressPrinter())

        def on_signal(*_a: object) -> None:
            if cancel_requested.is_set():
                return
            cancel_requested.set()
            print("\nCancelling: the laptop goes back home first...", file=sys.stderr)
            queue.cancel()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

        if device is not None:
            return reprovision(queue, device, home, password, cancel_requested)
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
        queue.add(targets, home)
        pids = [j.provisioning_id for j in queue.jobs()]
        summary = queue.run(home, password)
        pids += [p for p in summary.done + summary.failed if p not in pids]
        table, ok = final_table(registry, pids)
        print("\n" + table, flush=True)
        if summary.cancelled:
            print("Cancelled. Run the same command again to continue.", file=sys.stderr)
            return 130
        return 0 if ok and summary.ok else 1
    finally:
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


def _terminal_confirm(instruction) -> bool:
    """The manual backend's confirmation: the seed's text and button, in a terminal."""
    print(f"\n{instruction.title}\n{instruction.text}", flush=True)
    try:
        input(f"Press Enter for “{instruction.action}” (Ctrl-C to cancel) ")
    except (EOFError, KeyboardInterrupt):
        return False
    return True
