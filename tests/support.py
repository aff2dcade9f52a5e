"""Helpers shared by tests (importable as `support`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil

from station.sim.demo import FAST_TIMING

# The fast firmware timings every test uses: one definition (station/sim/demo.py,
# also what the demo runs with STATION_DEMO_TIMING=fast); a copy, so no test can
# change it for the next.
FAST: dict[str, int] = dict(FAST_TIMING)


def station_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a `station` run as a user's, in throwaway folders: its data
    (registry, station id) and settings under tmp_path, the demo on FAST timings."""
    import os

    return dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
        STATION_DEMO_TIMING="fast",
        **extra,
    )


def run_station(
    tmp_path: Path, *args: str, timeout: float = 200, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`python -m station ARGS` as a user runs it (station_env), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "station", *args],
        env=station_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value or fail with the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class Client:
    """A paho client that records what it receives; never reconnects on its own."""

    mqtt: mqtt.Client
    rc: object = None
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    suback: list = field(default_factory=list)
    disconnected: bool = False

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False):
        info = self.mqtt.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(3)
        return info

    def subscribe(self, topic: str, qos: int = 1) -> list:
        before = len(self.suback)
        self.mqtt.subscribe(topic, qos)
        wait_for(lambda: len(self.suback) > before, 3)
        return self.suback[-1]

    def received(self, topic: str) -> list[bytes]:
        return [payload for t, payload, _ in self.messages if t == topic]

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()

    def go_silent(self) -> None:
        """Stop all traffic without closing the socket: a device losing power."""
        self.mqtt.loop_stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def micropython_pids(root_pid: int | None = None) -> set[int]:
    """MicroPython processes under root_pid (default: this process), any depth."""
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for child in children:
        try:
            if "micropython" in child.name():
                found.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return found


def still_running(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


STATION = str(Path(sys.executable).with_name("station"))


def station_cli(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """The `station` command as a user runs it, in a subprocess."""
    return subprocess.run(
        [STATION, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
