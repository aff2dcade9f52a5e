"""`station homes`: customer sites and their home WiFi (password to the OS keyring)."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from station import broker_target, external_broker
from station.cli.common import existing_registry, load_settings, open_registry
from station.errors import StationError
from station.registry import Home, Registry
from station.secrets import SecretStore


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("homes", help="list, add or remove customer sites (homes)")
    p.set_defaults(func=run_list, log_level=logging.WARNING)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    ls = actions.add_parser("list", help="list the homes (the default)")
    ls.set_defaults(func=run_list)
    add = actions.add_parser("add", help="add a home and its WiFi")
    add.add_argument("name")
    add.add_argument("--ssid", required=True, help="the home WiFi network name")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the WiFi password from standard input (else prompt)",
    )
    add.add_argument("--broker", metavar="URL", help=BROKER_HELP)
    add.add_argument("--ca", metavar="FILE", help=CA_HELP)
    add.set_defaults(func=run_add)
    edit = actions.add_parser("edit", help="change a home's WiFi network or broker")
    edit.add_argument("name")
    edit.add_argument("--ssid", help="the home WiFi network name")
    edit.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a new WiFi password from standard input",
    )
    edit.add_argument("--broker", metavar="URL", help=BROKER_HELP)
    edit.add_argument("--ca", metavar="FILE", help=CA_HELP)
    edit.add_argument(
        "--new-devices-only",
        action="store_true",
        help="--broker for a home with provisioned devices: change only where devices "
        "provisioned from now on report (`station fleet rehome` moves the others)",
    )
    edit.set_defaults(func=run_edit)
    rm = actions.add_parser("remove", help="remove a home (its devices stay registered)")
    rm.add_argument("name")
    rm.set_defaults(func=run_remove)


BROKER_HELP = (
    "where the home's devices report: embedded (this station's broker, the default) or "
    "mqtt[s]://USER:PASSWORD@host[:port], a broker of the home's own (Mosquitto with its "
    "dynamic-security plugin); the login goes to the OS keyring, never to the registry"
)

CA_HELP = (
    "for an mqtts:// broker: the CA certificate (PEM file) that signed the broker's; the "
    "station checks the broker with it and gives it to every device it provisions"
)

PASSWORD_HINT = (
    "give it on standard input with --password-stdin, e.g. "
    "printf '%s\\n' \"$WIFI_PASSWORD\" | station {command} --password-stdin "
    "(an empty line for an open network)"
)


def read_password(from_stdin: bool, command: str = "homes add NAME --ssid SSID") -> str:
    """The home WiFi password: one line of standard input, or asked at the terminal.

    Without a terminal to ask at (a script, `</dev/null`) this is an error that says how
    to pass the password, never an EOFError.
    """
    hint = PASSWORD_HINT.format(command=command)
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise StationError(
                "--password-stdin: standard input ended before a password line; " + hint
            )
        return line.rstrip("\r\n")
    try:
        interactive = sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):
        interactive = False
    if not interactive:
        raise StationError(
            f"the home WiFi password is needed and there is no terminal to ask at: {hint}"
        )
    try:
        return getpass.getpass("Home WiFi password (empty for an open network): ")
    except EOFError:
        raise StationError(f"no home WiFi password was entered: {hint}") from None


def check_wifi_password(password: str) -> None:
    # WPA2: 8-63 characters, or empty for an open network (PROTOCOL.md validation).
    if password and not 8 <= len(password) <= 63:
        raise StationError(
            "a WPA2 password has 8-63 characters (or leave it empty for an open network)"
        )


def run_list(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    if not existing_registry(args, settings):  # a listing never creates a database
        print("No homes yet: add one with `station homes add NAME --ssid SSID`.")
        return 0
    registry = open_registry(args, settings)
    store = SecretStore()
    try:
        homes = registry.homes()
        if not homes:
            print("No homes yet: add one with `station homes add NAME --ssid SSID`.")
        for home in homes:
            saved = "password saved" if store.home_password(home.id) else "no password saved"
            broker = home.broker_url or "embedded broker"
            if home.broker_ca:
                broker += " (TLS, CA given)"
            print(
                f"{home.id:>3}  {home.name}  (WiFi {home.wifi_ssid!r}, {saved}, {broker}, "
                f"{len(home.devices)} devices)"
            )
        print(f"\nWiFi passwords: {store.description}")
        return 0
    finally:
        registry.close()


def run_add(args: argparse.Namespace) -> int:
    password = read_password(
        args.password_stdin, command=f"homes add {args.name!r} --ssid {args.ssid!r}"
    )
    check_wifi_password(password)
    parsed = broker_target.parse(args.broker) if args.broker else None
    if args.ca and parsed is None:
        raise StationError("--ca goes with --broker mqtts://… (a TLS broker)")
    if args.ca and parsed is not None and not parsed.tls:
        raise StationError(f"--ca is for a TLS broker (mqtts://), not {parsed.url}")
    ca = broker_target.load_ca(args.ca) if args.ca else None
    store = SecretStore()  # the login goes to the keyring once all else is checked
    target = external_broker.remember(store, args.broker) if args.broker else None
    registry = open_registry(args, load_settings(args))
    try:
        home = registry.add_home(
            args.name, args.ssid, broker_url=target.url if target else None, broker_ca=ca
        )
        store.set_home_password(home.id, password)
        where = f", devices report to {target.url}" if target else ""
        print(f"Added home {home.name!r} (WiFi {home.wifi_ssid!r}{where}).")
        if target is not None:
            print(check_broker(registry, store, home), file=sys.stderr)
        if not store.persistent:
            print(
                "No OS keyring is available here: the WiFi password is not saved and will "
                "be asked for when you provision.",
                file=sys.stderr,
            )
        return 0
    finally:
        registry.close()


def run_remove(args: argparse.Namespace) -> int:
    registry = open_registry(args, load_settings(args))
    try:
        home = registry.home(args.name)
        SecretStore().delete_home_password(home.id)
        home.delete_instance()
        print(f"Removed home {args.name!r}.")
        return 0
    finally:
        registry.close()


def check_broker(registry: Registry, store: SecretStore, home: Home) -> str:
    """A word on the home's broker now; not a refusal, since an installer may set a home
    up before its broker is reachable (every batch checks it again before it starts)."""
    try:
        ext = external_broker.for_home(registry, store, home)
    except StationError as exc:
        return f"Warning: {exc}. Batches for this home will not start until it can."
    if ext is not None:
        ext.stop()
    return f"Broker {home.broker_url}: reachable, admin login and dynamic security work."


def run_edit(args: argparse.Namespace) -> int:
    if args.ssid is None and args.broker is None and args.ca is None and not args.password_stdin:
        raise StationError("say what to change: --ssid, --password-stdin, --broker and/or --ca")
    ca = broker_target.load_ca(args.ca) if args.ca else None
    settings = load_settings(args)
    if not existing_registry(args, settings):
        raise StationError(f"no home {args.name!r}: no registry database yet")
    store = SecretStore()
    registry = open_registry(args, settings)
    try:
        home = registry.home(args.name)
        fields: dict[str, object] = {}
        if args.ssid is not None:
            fields["wifi_ssid"] = args.ssid
        if args.broker is not None:
            target = external_broker.remember(store, args.broker)
            fields["broker_url"] = target.url if target else None
            placed = [d for d in registry.devices() if d.home_id == home.id and d.is_provisioned]
            if fields["broker_url"] != home.broker_url and placed and not args.new_devices_only:
                # Editing the home does not move them: the station would lose sight of them.
                raise StationError(
                    f"home {home.name!r} has {len(placed)} provisioned device(s) reporting "
                    f"to {home.broker_url or 'the embedded broker'}. Move them without a "
                    f"visit: station fleet rehome --home {home.name!r} --broker URL (the "
                    "home follows once they have moved); or add --new-devices-only to "
                    "change only where devices provisioned from now on report"
                )
            if target is None or not target.tls:
                if ca:
                    raise StationError("--ca is for a TLS broker (mqtts://)")
                fields["broker_ca"] = None  # a plain broker has no CA
        tls = str(fields.get("broker_url", home.broker_url) or "").startswith("mqtts://")
        if ca:
            if not tls:
                raise StationError(
                    f"--ca is for a TLS broker (mqtts://); home {home.name!r} has "
                    f"{home.broker_url or 'the embedded broker'}"
                )
            fields["broker_ca"] = ca
        if args.password_stdin:
            password = read_password(True, command=f"homes edit {home.name!r}")
            check_wifi_password(password)
            store.set_home_password(home.id, password)
        if fields:
            home = registry.edit_home(home, **fields)
        broker = home.broker_url or "the embedded broker"
        print(f"Home {home.name!r}: WiFi {home.wifi_ssid!r}, devices report to {broker}.")
        if args.broker is not None and home.devices.count():
            print(
                f"Its {home.devices.count()} device(s) report where they were configured "
                f"until moved (station fleet rehome) or provisioned again.",
                file=sys.stderr,
            )
        if home.broker_url and (args.broker is not None or ca):
            print(check_broker(registry, store, home), file=sys.stderr)
        return 0
    finally:
        registry.close()
