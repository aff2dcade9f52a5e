"""`station` started as a process, the way a user starts it, and stopped by a signal.

- no display: the terminal demo (gui_cmd.run_headless_demo) provisions the batch,
  prints its table and live readings, and Ctrl-C ends it cleanly;
- with a display (offscreen here): SIGINT or SIGTERM closes the window the normal
  way, with no traceback, no MicroPython process and no station-demo-* folder left.

Only the firmware timings are shortened (STATION_DEMO_TIMING=fast).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import micropython_pids, still_running, wait_for

pytestmark = pytest.mark.timeout(180)


class Station:
    """`python -m station ARGS` with output collected on threads (never a full pipe)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self.pids: set[int] = set()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, pattern: str, where: str = "stdout", timeout: float = 120) -> None:
        def seen() -> bool:
            self.pids |= micropython_pids(self.proc.pid)
            if self.proc.poll() is not None:
                raise AssertionError(f"station ended ({self.proc.returncode}):\n{self.output()}")
            return re.search(pattern, getattr(self, where)) is not None

        try:
            wait_for(seen, timeout, 0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; waiting for {pattern!r}:\n{self.output()}") from None

    def stop(self, signum: int, timeout: float = 15) -> float:
        """Send signum; the seconds until the process ended."""
        sent = time.monotonic()
        self.proc.send_signal(signum)
        self.proc.wait(timeout)
        for t in self._readers:
            t.join(5)
        return time.monotonic() - sent

    def output(self) -> str:
        return f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-4000:]}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _env(user_env: dict[str, str], *, display: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    env.update(user_env)
    if display:
        env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _leftovers(user_env: dict[str, str]) -> list[Path]:
    return sorted(Path(user_env["TMPDIR"]).glob("station-demo-*"))


def test_terminal_demo_without_a_display(user_env):
    station = Station(["--demo"], _env(user_env, display=False))
    try:
        station.wait_for(r"running the demo in the terminal", "stderr", 30)
        station.wait_for(r"6 of 6 devices online")  # the final table
        station.wait_for(r"live readings follow")
        # Live readings after the table, from the broker: "<node>: 21.3 °C, 44.0 %RH".
        station.wait_for(r"live readings follow[\s\S]*esp32_dht11_\d+: [\d.]+ °C, [\d.]+ %RH")
        # Six devices running now (each provisioned device rebooted: a new process).
        assert len(micropython_pids(station.proc.pid)) == 6 and len(station.pids) >= 12
        station.pids |= micropython_pids(station.proc.pid)
        took = station.stop(signal.SIGINT)
    finally:
        station.kill()
    assert station.proc.returncode == 0, station.output()
    assert took < 10
    assert "Traceback" not in station.stderr + station.stdout
    assert still_running(station.pids) == set()
    assert _leftovers(user_env) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_gui_closes_on_a_signal(user_env, signum):
    station = Station(["--demo"], _env(user_env, display=True))
    try:
        station.wait_for(r"station ready after", "stderr", 60)
        wait_for(lambda: len(micropython_pids(station.proc.pid)) == 6, 10)
        station.pids = micropython_pids(station.proc.pid)
        assert _leftovers(user_env)  # the demo's registry and air live here while it runs
        took = station.stop(signum)
    finally:
        station.kill()
    assert station.proc.returncode == 128 + signum, station.output()
    assert took < 10, station.output()
    assert "Traceback" not in station.stderr + station.stdout, station.output()
    assert f"{signal.Signals(signum).name}: closing the station" in station.stderr
    assert still_running(station.pids) == set()
    assert _leftovers(user_env) == []


def test_gui_stopped_while_starting_still_cleans_up(user_env):
    # SIGINT while the station-start thread is still bringing up the demo: the window
    # never opens, and the runtime it was starting is stopped all the same.
    station = Station(["--demo"], _env(user_env, display=True))
    try:
        station.wait_for(r"first window after", "stderr", 60)
        took = station.stop(signal.SIGINT, timeout=60)
    finally:
        station.kill()
    assert station.proc.returncode == 128 + signal.SIGINT, station.output()
    assert took < 30, station.output()
    assert "Traceback" not in station.stderr, station.output()
    assert "station ready after" not in station.stderr  # it really was still starting
    assert _leftovers(user_env) == []


def test_provision_demo_through_the_entry_point_leaves_nothing(user_env):
    station = Station(["provision", "--demo", "3"], _env(user_env, display=False))
    try:
        deadline = time.monotonic() + 120
        while station.proc.poll() is None and time.monotonic() < deadline:
            station.pids |= micropython_pids(station.proc.pid)
            time.sleep(0.1)
        for t in station._readers:
            t.join(5)
    finally:
        station.kill()
    assert station.proc.returncode == 0, station.output()
    assert "3 of 3 devices online" in station.stdout
    assert len(station.pids) >= 3
    assert still_running(station.pids) == set()
    assert _leftovers(user_env) == []
    assert "Traceback" not in station.stderr


def test_terminal_demo_stopped_while_starting(user_env):
    station = Station(["--demo"], _env(user_env, display=False))
    try:
        station.wait_for(r"running the demo in the terminal", "stderr", 30)
        took = station.stop(signal.SIGINT, timeout=60)
    finally:
        station.kill()
    assert station.proc.returncode == 130, station.output()
    assert took < 30
    assert "Traceback" not in station.stderr + station.stdout, station.output()
    assert "devices online" not in station.stdout  # it stopped before provisioning
    assert _leftovers(user_env) == []
