"""`station fleet rehome|set-interval`: configuration changes, staged and confirmed."""

from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    """Adds the configuration verbs to `station fleet` (being built)."""
