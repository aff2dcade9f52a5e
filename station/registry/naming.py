"""Node names and topic prefixes: the seed's `esp32_dht11_001` / `home/esp32_dht11_001`."""

from __future__ import annotations

import re

NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def node_name(prefix: str, number: int) -> str:
    return f"{prefix}{number:03d}"


def topic_prefix(root: str, node: str) -> str:
    return f"{root.strip('/')}/{node}" if root.strip("/") else node


def next_number(prefix: str, existing: list[str]) -> int:
    """One more than the highest number already used after `prefix` (gaps are not reused,
    so a removed device's retained topics never get a new owner)."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    numbers = [int(m.group(1)) for name in existing if (m := pattern.match(name))]
    return max(numbers, default=0) + 1
