"""`station` with no sub-command: the desktop window (Qt lives only in station.ui)."""

from __future__ import annotations

import argparse


def run_gui(args: argparse.Namespace) -> int:
    from station.ui.app import run

    return run(args)
