"""The staged rollout's rules (station/fleet/rollout.py), driven by scripted devices
that answer the way the firmware's update is specified to (progress events, then
`info` with the new version, or a rollback with its reason). The firmware's own side
is tested on the MicroPython unix port where it is built (issue 11)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from station.fleet.rollout import FirmwareChange, Phase, Rollout

CHANGE = FirmwareChange("1.1.0", "http://127.0.0.1:1/x/manifest.json", "ab" * 32)


class ScriptedFleet:
    """Devices that act out a behaviour: ok, rollback, silent, stuck (reboots, never
    comes back with the new version), offline."""

    def __init__(self, behaviour: dict[str, str], step_s: float = 0.01) -> None:
        self.behaviour = behaviour
        self.step_s = step_s
        self.rollout: Rollout | None = None
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def is_online(self, node: str) -> bool:
        return self.behaviour[node] != "offline"

    def send(self, node: str, command: dict[str, Any]) -> None:
        with self._lock:
            self.sent.append((node, command))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        threading.Thread(target=self._act, args=(node, command), daemon=True).start()

    def _act(self, node: str, command: dict[str, Any]) -> None:
        assert self.rollout is not None
        how = self.behaviour[node]
        if how != "silent":
            for state in ("downloading", "verifying", "rebooting"):
                time.sleep(self.step_s)
                self.rollout.observe(node, "event", {"event": "ota", "state": state})
        time.sleep(self.step_s)
        with self._lock:
            self.in_flight -= 1
        if how == "ok":
            self.rollout.observe(node, "info", {"firmware": command["version"]})
        elif how == "rollback":
            reason = "new firmware did not reach its broker in 60 s"
            self.rollout.observe(
                node, "event", {"event": "ota", "state": "rolled_back", "reason": reason}
            )
            self.rollout.observe(node, "info", {"firmware": "1.0.0"})
        elif how == "stuck":
            self.rollout.observe(node, "info", {"firmware": "1.0.0"})  # the old one


def rollout_of(behaviour: dict[str, str], **kw: Any) -> tuple[Rollout, ScriptedFleet]:
    fleet = ScriptedFleet(behaviour)
    rollout = Rollout(list(behaviour), CHANGE, fleet, **kw)
    fleet.rollout = rollout
    return rollout, fleet


def phases(result) -> dict[str, Phase]:
    return {d.node: d.phase for d in result.devices}


def test_every_device_is_confirmed_by_the_version_it_reports_canary_first():
    nodes = {f"n{i}": "ok" for i in range(7)}
    rollout, fleet = rollout_of(nodes, concurrency=2)
    result = rollout.run()
    assert result.ok and result.stopped == ""
    assert set(phases(result).values()) == {Phase.CONFIRMED}
    # The canary alone first: the second command went out after it confirmed.
    canary = next(d for d in result.devices if d.canary)
    assert fleet.sent[0][0] == canary.node
    others = [d for d in result.devices if not d.canary]
    assert canary.finished is not None
    assert all(d.started is not None and d.started >= canary.finished for d in others)
    assert fleet.max_in_flight <= 2
    assert fleet.sent[0][1] == {
        "cmd": "ota",
        "url": CHANGE.url,
        "sha256": CHANGE.digest,
        "version": "1.1.0",
    }
    timings = canary.timings
    assert timings["downloading"] <= timings["verifying"] <= timings["rebooting"]
    assert timings["rebooting"] <= timings["confirmed"]


def test_a_canary_that_rolls_back_stops_the_rollout_before_any_other_device():
    rollout, fleet = rollout_of({"a": "rollback", "b": "ok", "c": "ok"})
    result = rollout.run()
    assert not result.ok
    assert phases(result) == {"a": Phase.ROLLED_BACK, "b": Phase.CANCELLED, "c": Phase.CANCELLED}
    assert result.stopped == (
        "the canary a rolled back: new firmware did not reach its broker in 60 s"
    )
    assert [n for n, _ in fleet.sent] == ["a"]
    assert result.devices[1].reason == result.stopped


def test_an_offline_device_is_skipped_and_never_the_canary():
    rollout, fleet = rollout_of({"a": "offline", "b": "ok", "c": "ok"})
    result = rollout.run()
    assert phases(result) == {"a": Phase.SKIPPED, "b": Phase.CONFIRMED, "c": Phase.CONFIRMED}
    assert next(d for d in result.devices if d.canary).node == "b"
    assert result.ok  # skipped devices are said, not failures
    assert "a" not in [n for n, _ in fleet.sent]


def test_progress_without_the_new_version_is_not_a_confirmation():
    """A device that reports every phase and comes back with its old version has not
    been updated: it fails when its time is up, with what was last heard."""
    rollout, _ = rollout_of({"a": "stuck"}, device_timeout_s=0.5)
    result = rollout.run()
    [dev] = result.devices
    assert dev.phase is Phase.FAILED
    assert dev.reason == "not confirmed within 0.5 s (last heard: rebooting)"
    assert result.stopped == f"the canary a failed: {dev.reason}"


def test_failures_after_the_canary_stop_the_rollout_past_max_failures():
    behaviour = {"c": "ok", "f1": "rollback", "f2": "rollback", "x": "ok", "y": "ok"}
    rollout, fleet = rollout_of(behaviour, concurrency=1, max_failures=1)
    result = rollout.run()
    got = phases(result)
    assert got["c"] is Phase.CONFIRMED
    assert got["f1"] is Phase.ROLLED_BACK and got["f2"] is Phase.ROLLED_BACK
    assert got["x"] is Phase.CANCELLED and got["y"] is Phase.CANCELLED
    assert result.stopped == "2 devices failed (allowed: 1)"
    assert [n for n, _ in fleet.sent] == ["c", "f1", "f2"]


def test_pause_holds_new_starts_and_resume_goes_on():
    rollout, fleet = rollout_of({"a": "ok", "b": "ok"})
    rollout.pause()
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(rollout.run()))
    worker.start()
    time.sleep(0.5)
    assert fleet.sent == []
    rollout.resume()
    worker.join(10)
    assert done and done[0].ok


def test_cancel_lets_running_devices_finish_and_starts_no_more():
    behaviour = {f"n{i}": "ok" for i in range(6)}
    fleet = ScriptedFleet(behaviour, step_s=0.1)
    rollout = Rollout(list(behaviour), CHANGE, fleet, concurrency=2)
    fleet.rollout = rollout
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(rollout.run()))
    worker.start()
    while len(fleet.sent) < 3:  # the canary, then two more
        time.sleep(0.01)
    rollout.cancel()
    worker.join(10)
    result = done[0]
    got = phases(result)
    assert result.stopped == "cancelled"
    assert [got[n] for n, _ in fleet.sent] == [Phase.CONFIRMED] * len(fleet.sent)
    assert sum(p is Phase.CANCELLED for p in got.values()) == 6 - len(fleet.sent)


@pytest.mark.parametrize("bad", [{"concurrency": 0}, {"canary": -1}, {"max_failures": -1}])
def test_bad_limits_are_refused(bad):
    with pytest.raises(ValueError):
        Rollout(["a"], CHANGE, ScriptedFleet({"a": "ok"}), **bad)


def test_abandon_returns_at_once_and_says_which_were_not_followed():
    behaviour = {f"n{i}": "silent" for i in range(4)}  # never confirm: run() would wait
    fleet = ScriptedFleet(behaviour)
    rollout = Rollout(list(behaviour), CHANGE, fleet, canary=0, concurrency=2)
    fleet.rollout = rollout
    done: list[Any] = []
    worker = threading.Thread(target=lambda: done.append(rollout.run()))
    worker.start()
    while len(fleet.sent) < 2:
        time.sleep(0.01)
    rollout.abandon("the station was closed")
    worker.join(5)
    assert not worker.is_alive()  # not the 300 s device timeout
    got = phases(done[0])
    assert [got[n] for n, _ in fleet.sent] == [Phase.ABANDONED, Phase.ABANDONED]
    assert sum(p is Phase.CANCELLED for p in got.values()) == 2  # never started
    assert {d.reason for d in done[0].devices if d.phase is Phase.ABANDONED} == {
        "the station was closed"
    }
    assert not done[0].ok
