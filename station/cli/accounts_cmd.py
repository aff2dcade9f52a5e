"""`station accounts`: MQTT logins for tools that are not devices (Home Assistant,
Node-RED, MQTT Explorer, mosquitto_sub).

    station accounts add homeassistant --role observer   # the password is the last line
    station accounts list
    station accounts rotate homeassistant                # a new password, the old one dies
    station accounts remove homeassistant --yes

Roles (broker/access.py): an observer reads every device topic, Home Assistant's
discovery (`homeassistant/#`) and `$SYS/#`, and publishes only its birth/will on
`homeassistant/status`; an operator may also send device commands (`<prefix>/cmd`).
The password is shown once and stored only as a hash. A running station (GUI or
`station broker`) on the same registry takes a new account at its next login, and a
removed or rotated one at once: its connections are closed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from station.cli.common import confirm, existing_registry, load_settings, open_registry
from station.errors import StationError
from station.registry.models import Account, AccountRole

ROLE_HELP = {
    AccountRole.OBSERVER: "read device topics, homeassistant/# and $SYS/#; "
    "publish only homeassistant/status (birth/will)",
    AccountRole.OPERATOR: "an observer that may also send device commands (<prefix>/cmd)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "accounts",
        help="MQTT logins for Home Assistant and other tools (not devices)",
        description="Without a sub-command: the account list (as `accounts list`). Roles: "
        + "; ".join(f"{r.value}: {h}" for r, h in ROLE_HELP.items()),
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=run_list, log_level=logging.WARNING)
    verbs = p.add_subparsers(dest="accounts_verb", metavar="{list,add,rotate,remove}")
    ls = verbs.add_parser("list", help="the accounts, their roles and dates (never passwords)")
    ls.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ls.set_defaults(func=run_list)
    add = verbs.add_parser(
        "add",
        help="create an account; its password is printed once, alone on the last line",
    )
    add.add_argument("name", metavar="NAME", help="the login name (e.g. homeassistant)")
    add.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in AccountRole],
        help="; ".join(f"{r.value}: {h}" for r, h in ROLE_HELP.items()),
    )
    add.set_defaults(func=run_add)
    rot = verbs.add_parser(
        "rotate", help="give an account a new password (printed last); the old one stops"
    )
    rot.add_argument("name", metavar="NAME")
    rot.set_defaults(func=run_rotate)
    rm = verbs.add_parser("remove", help="delete an account; its connections are closed")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rm.set_defaults(func=run_remove)


def _when(account: Account) -> str:
    return account.created_at.strftime("%Y-%m-%d %H:%M") + " UTC"


def run_list(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if not existing_registry(args, settings):
        if not args.json:
            print("No accounts yet (no registry database yet).")
        return 0
    registry = open_registry(args, settings)
    try:
        accounts = registry.accounts.all()
        if args.json:
            for a in accounts:
                print(
                    json.dumps(
                        {
                            "name": a.name,
                            "role": str(a.role),
                            "created_at": a.created_at.isoformat() + "Z",
                            "rotated_at": a.rotated_at.isoformat() + "Z" if a.rotated_at else None,
                        }
                    )
                )
            return 0
        if not accounts:
            print(f"No accounts yet ({registry.location}). Add one with:")
            print("  station accounts add homeassistant --role observer")
            return 0
        rows = [("name", "role", "created", "new password")]
        rows += [
            (
                a.name,
                str(a.role),
                _when(a),
                a.rotated_at.strftime("%Y-%m-%d %H:%M") + " UTC" if a.rotated_at else "–",
            )
            for a in accounts
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for i, r in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
        return 0
    finally:
        registry.close()


def _print_login(name: str, password: str, port: int, verb: str) -> None:
    print(
        f"MQTT login for {name!r}: username {name}, port {port} on this computer. "
        "The password is shown only this once (the station keeps a hash); "
        f"{verb} it in the tool now:",
        file=sys.stderr,
    )
    print(password)  # alone on the last line of standard output, for scripts


def run_add(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    registry = open_registry(args, settings)
    try:
        issued = registry.accounts.add(args.name, args.role)
        # A running station that refused this name a moment ago may still remember that
        # (broker/access.py MISS_TTL_S): told, it lets the account in at once.
        told = _tell_running_station(registry.location, issued.account.name, "")
        print(
            f"Added {issued.account.role} account {issued.account.name!r} "
            f"({registry.location}).{told}"
        )
        _print_login(issued.account.name, issued.password, settings.broker.port, "enter")
        return 0
    finally:
        registry.close()


def _tell_running_station(
    registry_location: str, name: str, done: str = " The running station closed its connections."
) -> str:
    """Make a running station drop what it holds of the account (its cached login, and
    connections made with it); what happened, for the user."""
    from station import control

    try:
        remote = control.connect(registry_location)
    except control.NotRunning as exc:
        if not done:  # a new account: found by the running station within seconds anyway
            return ""
        return f" The running station could not be told ({exc}); restart it."
    if remote is None:
        return ""
    with remote:
        remote.account_changed(name)
    return done


def run_rotate(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if not existing_registry(args, settings):
        raise StationError(f"no account {args.name!r}: no registry database yet")
    registry = open_registry(args, settings)
    try:
        issued = registry.accounts.rotate(args.name)
        told = _tell_running_station(registry.location, issued.account.name)
        print(f"New password for {issued.account.name!r}; the old one no longer works.{told}")
        _print_login(issued.account.name, issued.password, settings.broker.port, "update")
        return 0
    finally:
        registry.close()


def run_remove(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if not existing_registry(args, settings):
        raise StationError(f"no account {args.name!r}: no registry database yet")
    registry = open_registry(args, settings)
    try:
        account = registry.accounts.get(args.name)
        if not confirm(
            f"Remove the {account.role} account {account.name!r}? Tools using it can no "
            "longer log in.",
            args.yes,
        ):
            print("Nothing removed.")
            return 1
        registry.accounts.remove(account.name)
        told = _tell_running_station(registry.location, account.name)
        print(f"Removed the account {account.name!r}.{told}")
        return 0
    finally:
        registry.close()
