"""Configuration changes a rollout carries (station.fleet.rollout.Change), each confirmed
only by what the device then reports in its `info` (docs/FLEET.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station import commands


@dataclass(frozen=True)
class IntervalChange:
    """Seconds between readings (the set_interval command, kept across reboots)."""

    value: int
    event: str = "set_interval"  # its only report is the reply and the info after it

    def __post_init__(self) -> None:
        commands.INTERVAL.check(self.value)  # CommandError: the device would refuse it

    def command(self, node: str) -> dict[str, Any]:
        return {"cmd": "set_interval", "value": self.value}

    def confirmed_by(self, info: dict[str, Any]) -> bool:
        return info.get("interval") == self.value


@dataclass(frozen=True)
class BrokerChange:
    """Another broker: its address as the devices reach it, and each device's login
    there, `login_for(node) -> (username, token)`, asked when the device's turn comes
    (station.fleet.rehome creates it on that broker then). The device reports `broker`
    in its info once that broker has taken it; one that refuses it or is not there
    leaves the device on its old broker, which hears a `set_broker` `failed` event
    with the reason."""

    host: str
    port: int
    login_for: Callable[[str], tuple[str, str]]
    event: str = "set_broker"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self, node: str) -> dict[str, Any]:
        username, token = self.login_for(node)
        return {
            "cmd": "set_broker",
            "broker": self.host,
            "port": self.port,
            "username": username,
            "password": token,
        }

    def confirmed_by(self, info: dict[str, Any]) -> bool:
        return info.get("broker") == self.address
