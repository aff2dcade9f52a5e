"""`station fleet`: changes to devices already installed, rolled out in stages and
confirmed by what each device reports (docs/OTA.md).

    station fleet update --demo 5              # the whole story on a simulated site
    station fleet update --home Smith          # a new firmware for a home's devices
    station fleet rehome --home Smith --broker mqtt://…   # move devices to another broker

Each verb lives in a module of its own (fleet_update_cmd, fleet_config_cmd), which adds
its parser with register(verbs).
"""

from __future__ import annotations

import argparse
import logging

from station.cli import fleet_config_cmd, fleet_update_cmd


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet",
        help="update installed devices: firmware, settings, broker (staged, confirmed)",
        description="Changes to installed devices, rolled out in stages: one canary "
        "first, then the rest a few at a time, only devices online. A device counts as "
        "done only when it reports the change over MQTT.",
    )
    verbs = p.add_subparsers(dest="fleet_verb", metavar="VERB")
    fleet_update_cmd.register(verbs)
    fleet_config_cmd.register(verbs)

    def no_verb(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=no_verb, log_level=logging.WARNING)
