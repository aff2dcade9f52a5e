"""`station` with no sub-command: the desktop window (Qt lives only in station.ui).

Without a screen (a headless Linux box or SSH session) it says so and runs the
station headless instead: the broker and registry in the foreground.
"""

from __future__ import annotations

import argparse
import os
import sys


def has_display() -> bool:
    if os.environ.get("QT_QPA_PLATFORM"):
        return True  # the user chose a platform (offscreen, vnc, ...)
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_gui(args: argparse.Namespace) -> int:
    if not has_display():
        print(
            "No display found: running the station headless (MQTT broker + device "
            "registry). `station --help` lists the other commands.",
            file=sys.stderr,
        )
        from station.cli import broker_cmd

        args.bind = args.port = args.allow_anonymous = None
        return broker_cmd.run(args)
    from station.ui.app import run

    return run(args)
