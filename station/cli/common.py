"""Shared helpers for sub-commands: settings and registry from the global options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from station import settings as settings_mod
from station.errors import StationError
from station.registry import Registry
from station.settings import Settings, station_id


def load_settings(args: argparse.Namespace) -> Settings:
    return settings_mod.load(Path(args.config) if getattr(args, "config", None) else None)


def registry_url(args: argparse.Namespace, settings: Settings) -> str | None:
    return getattr(args, "db", None) or settings.registry.url


def sqlite_file(url: str | None) -> Path | None:
    """The SQLite file a registry URL names (None: the default file); None when it is not
    a file (":memory:", a server URL)."""
    if url is None:
        from station.registry.db import default_path

        return default_path()
    if url == ":memory:":
        return None
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme not in ("sqlite", "sqliteext", "sqlite+pool") or not rest or rest == ":memory:":
            return None
        path = rest.split("?", 1)[0]
        # peewee: sqlite:///relative.db, sqlite:////absolute.db
        return Path(path[1:] if path.startswith("/") else path).expanduser()
    return Path(url).expanduser()


def existing_registry(args: argparse.Namespace, settings: Settings) -> bool:
    """For read-only commands: does the registry exist? They must not create one.

    False when the default file is not there yet (nothing registered so far); a database
    named by --db or the settings that does not exist is an error (a typo, most likely).
    """
    url = registry_url(args, settings)
    path = sqlite_file(url)
    if path is None or path.exists():
        return True
    if url is None:
        return False
    raise StationError(
        f"the registry database {path} does not exist (nothing was created). Check the "
        "path given with --db or in the settings; `station provision` creates a new one."
    )


def open_registry(args: argparse.Namespace, settings: Settings) -> Registry:
    url = registry_url(args, settings)
    prov = settings.provisioning
    return Registry(
        url,
        node_name_prefix=prov.node_name_prefix,
        topic_root=prov.topic_root,
        station_id=station_id(),
    )


def confirm(question: str, assume_yes: bool) -> bool:
    """Ask on the terminal; without one, refuse with the flag that skips the question."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise StationError(f"{question} Needs confirmation: add --yes to run without a terminal.")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")
