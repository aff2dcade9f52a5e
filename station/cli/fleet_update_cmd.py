"""`station fleet update`: a verified firmware update, staged (docs/OTA.md)."""

from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    """Adds `update` to `station fleet` (being built)."""
