"""Command line: one parser, one module per sub-command.

`station` with no sub-command opens the GUI; each module in COMMANDS adds its own
sub-command with `register(subparsers)` and runs it with the `func` it sets.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from station import __version__

# Modules under station.cli that each define register(subparsers).
COMMANDS = [
    "broker_cmd",
    "devices_cmd",
    "accounts_cmd",
    "homes_cmd",
    "provision_cmd",
    "report_cmd",
    "fleet_cmd",
    "firmware_cmd",
    "sim_cmd",
    "backend_api_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="station",
        description="ESP32 provisioning station. Without a sub-command it opens the GUI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: user config dir)")
    parser.add_argument("--db", metavar="URL", help="registry database: a file path or peewee URL")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="GUI with a simulated air and fleet running the real firmware",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"station.cli.{name}").register(sub)
    return parser


def setup_logging(verbosity: int, default_level: int = logging.WARNING) -> None:
    """Long-running commands log at INFO by default (they set `log_level`); -v adds INFO,
    -vv DEBUG everywhere."""
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity else default_level
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if verbosity < 2:
        # amqtt logs every packet and connection at INFO.
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        logging.getLogger("transitions").setLevel(logging.WARNING)


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """The deepest sub-command parser the arguments chose (`station homes add` → add's),
    so a usage error shows that command's usage, not the top-level one."""
    current = parser
    while True:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if not subs or name not in subs[0].choices:
            return current
        current = subs[0].choices[name]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        chosen_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(args.verbose, getattr(args, "log_level", logging.INFO))
    func = getattr(args, "func", None)
    if func is None:
        from station.cli.gui_cmd import run_gui

        func = run_gui  # the window; Ctrl-C during its first imports ends quietly too
    # Commands install their own Ctrl-C/SIGTERM handlers; they last as long as the
    # command (main() called in-process, as tests and scripts do, gets its own back).
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI's last line of defence: a clear message, no traceback
        from station.errors import StationError

        if isinstance(exc, StationError):
            print(f"station: error: {exc}", file=sys.stderr)
            return 2
        raise
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
