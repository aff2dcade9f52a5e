"""Shared helpers for sub-commands: settings and registry from the global options."""

from __future__ import annotations

import argparse
from pathlib import Path

from station import settings as settings_mod
from station.registry import Registry
from station.settings import Settings


def load_settings(args: argparse.Namespace) -> Settings:
    return settings_mod.load(Path(args.config) if getattr(args, "config", None) else None)


def open_registry(args: argparse.Namespace, settings: Settings) -> Registry:
    url = getattr(args, "db", None) or settings.registry.url
    prov = settings.provisioning
    return Registry(url, node_name_prefix=prov.node_name_prefix, topic_root=prov.topic_root)
