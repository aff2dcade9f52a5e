"""`station sim-device` and `station sim`: the real firmware on simulated ESP32s."""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from station.errors import ConfigError
from station.sim import firmware
from station.sim.air import Air
from station.sim.device import DEFAULT_HEAP, TIMING_KEYS, SimDevice, check_timing, run_foreground
from station.sim.fleet import Fleet, fleet_chip_ids


def register(subparsers: argparse._SubParsersAction) -> None:
    one = subparsers.add_parser(
        "sim-device",
        help="run one simulated ESP32 (real firmware on the MicroPython unix port)",
        description="Run one simulated device. Its setup API is announced in the air folder "
        "(aps/<CHIP_ID>.json, key 'api'); its console is printed here.",
    )
    one.add_argument("--chip-id", required=True, help="12 hex digits, e.g. A4CF12EF5678")
    one.add_argument(
        "--flash", type=Path, help="flash folder (default: AIR/devices/<CHIP_ID>/flash)"
    )
    one.add_argument(
        "--api-port", type=int, help="fixed loopback port for its API (default: a free one)"
    )
    one.add_argument(
        "--log", type=Path, help="write the console to this file instead of the terminal"
    )
    _common(one)
    one.set_defaults(func=run_sim_device)

    many = subparsers.add_parser(
        "sim",
        help="run a fleet of simulated ESP32s until Ctrl-C",
        description="Run N simulated devices with distinct, stable chip ids. Each one's console "
        "goes to AIR/devices/<CHIP_ID>/device.log.",
    )
    many.add_argument("--devices", type=int, default=3, metavar="N", help="how many (default: 3)")
    many.add_argument(
        "--seed", default="sim", help="chip ids derive from it (default: %(default)s)"
    )
    many.add_argument(
        "--network",
        metavar="SSID:PASSWORD",
        help="also put this home network on the air (the demo's home WiFi)",
    )
    many.add_argument(
        "--reach",
        action="append",
        default=[],
        metavar="HOST:PORT[=HOST:PORT]",
        help="a broker the --network reaches: the address devices dial "
        "[= the loopback address that answers]; repeatable",
    )
    _common(many)
    many.set_defaults(func=run_sim)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--air", type=Path, required=True, help="the shared air folder (created if missing)"
    )
    parser.add_argument(
        "--heap", default=DEFAULT_HEAP, help="MicroPython heap size (default: %(default)s)"
    )
    parser.add_argument(
        "--timing",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"firmware timing override, repeatable; keys: {', '.join(sorted(TIMING_KEYS))}",
    )
    parser.add_argument("--micropython", help="the unix-port binary (default: the installed one)")


def parse_timing(items: list[str]) -> dict[str, int]:
    timing: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ConfigError(f"--timing wants KEY=INTEGER, got {item!r}")
        timing[key.strip()] = int(value)
    return check_timing(timing)


def parse_reach(items: list[str]) -> dict[str, str]:
    reach: dict[str, str] = {}
    for item in items:
        dest, _, target = item.partition("=")
        reach[dest] = target or dest
    return reach


def run_sim_device(args: argparse.Namespace) -> int:
    air = Air(args.air)
    with tempfile.TemporaryDirectory(prefix="station-fw-") as fw:
        firmware.build(Path(fw), board="host")
        device = SimDevice(
            air,
            args.chip_id,
            fw,
            heap=args.heap,
            timing=parse_timing(args.timing),
            flash_dir=args.flash,
            log_path=args.log,
            echo=args.log is None,
            api_port=args.api_port,
            micropython=args.micropython,
        )
        print(
            f"sim-device {device.chip_id}: flash {device.flash_dir}, air {air.root}. "
            "Ctrl-C stops it.",
            flush=True,
        )
        return run_foreground(device)


def run_sim(args: argparse.Namespace) -> int:
    if not 1 <= args.devices <= 200:
        raise ConfigError("--devices must be 1-200")
    air = Air(args.air)
    timing = parse_timing(args.timing)
    if args.network:
        ssid, _, password = args.network.partition(":")
        try:
            air.add_home_network(ssid, password, reach=parse_reach(args.reach))
        except ValueError as exc:
            raise ConfigError(f"--network/--reach: {exc}") from exc
        print(
            f"home network {ssid!r} on the air"
            + (f", reaching {', '.join(args.reach)}" if args.reach else "")
        )
    elif args.reach:
        raise ConfigError("--reach needs --network")
    chips = fleet_chip_ids(args.devices, args.seed)
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = signal.signal(signal.SIGTERM, on_term)
    with tempfile.TemporaryDirectory(prefix="station-fw-") as fw:
        firmware.build(Path(fw), board="host")
        fleet = Fleet(air, fw, chips, heap=args.heap, timing=timing, micropython=args.micropython)
        try:
            fleet.start()
            print(
                f"{len(chips)} devices running; consoles in {air.root / 'devices'}. "
                "Ctrl-C stops them.",
                flush=True,
            )
            _watch(air, chips, lambda: stopping)
        except KeyboardInterrupt:
            pass
        finally:
            print("stopping the fleet…", flush=True)
            fleet.stop()
            signal.signal(signal.SIGTERM, previous)
    return 0


def _watch(air: Air, chips: list[str], stopping: object) -> None:
    """Print each device's setup AP as it comes and goes (what curl needs)."""
    shown: dict[str, str | None] = dict.fromkeys(chips)
    while not stopping():  # type: ignore[operator]
        for chip in chips:
            ap = air.setup_ap(chip)
            now = f"{ap.ssid}  {ap.api_url}" if ap and ap.api else None
            if now != shown[chip]:
                shown[chip] = now
                print(
                    f"{chip}  "
                    + (f"setup AP {now}" if now else "AP down (running, rebooting or off)"),
                    flush=True,
                )
        time.sleep(0.25)
