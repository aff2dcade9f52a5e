"""Firmware pieces checked on their own, on the MicroPython unix port where the
behaviour depends on MicroPython (ticks, random), and the spec's timing defaults."""

from __future__ import annotations

import json
import runpy
import subprocess

from station.sim.device import find_micropython
from station.sim.firmware import FIRMWARE_DIR


def _run(firmware_dir, code: str) -> str:
    proc = subprocess.run(
        [find_micropython(), "-X", "heapsize=96k", "-c", code],
        env={"MICROPYPATH": f".frozen:{firmware_dir}"},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_timing_defaults_are_the_spec():
    # Tests run with FAST timings; these are what a real device does (PROTOCOL.md,
    # issue 3, firmware/README.md).
    t = runpy.run_path(str(FIRMWARE_DIR / "factory.py"))["TIMING"]
    assert t["fallback_s"] == 60
    assert t["keepalive_s"] == 30
    assert t["interval_s"] == 10
    assert (t["backoff_min_ms"], t["backoff_max_ms"]) == (1000, 60000)
    assert t["restart_delay_ms"] == 1000
    assert t["unproven_retry_ms"] == 3000
    assert t["trial_s"] == 20 and t["probe_ms"] == 3000


def test_backoff_doubles_to_the_cap_with_jitter(firmware_dir):
    out = _run(
        firmware_dir,
        """
import json, random, util
random.seed(7)
b = util.Backoff(1000, 60000)
seq = []
for _ in range(9):
    d = b.cur
    seq.append((d, b.next_ms()))
capped = [b.next_ms() for _ in range(300)]
b.reset()
print(json.dumps({"seq": seq, "capped": capped, "reset": b.cur}))
""",
    )
    r = json.loads(out)
    assert [d for d, _ in r["seq"]] == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    assert all(d // 2 <= v <= d for d, v in r["seq"])
    capped = r["capped"]
    assert all(30000 <= v <= 60000 for v in capped)
    # Jitter: spread over the whole [d/2, d] range, not a few fixed values.
    assert len(set(capped)) > 250
    assert min(capped) < 33000 and max(capped) > 57000
    assert r["reset"] == 1000


def test_setup_retry_survives_the_ticks_wrap(firmware_dir):
    # ticks_ms wraps every 2**30 ms on an ESP32 and ticks_diff is only right within
    # half of that (~6.2 days): a request tick kept forever would, after 6.2 days,
    # look recent again and hold the retries off for days.
    out = _run(
        firmware_dir,
        """
import setupmode

class Clock:  # an ESP32's 30-bit ticks
    now = 1000
    @staticmethod
    def ticks_ms():
        return Clock.now & 0x3FFFFFFF
    @staticmethod
    def ticks_add(a, b):
        return (a + b) & 0x3FFFFFFF
    @staticmethod
    def ticks_diff(a, b):
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d

class Dev:
    cfg = {"wifi": {}, "mqtt": {}}
    timing = {"busy_s": 300}

setupmode.time = Clock
m = setupmode.SetupMode(Dev())
got = [m._should_retry()]          # nobody used the API
m._touch()
Clock.now += 299000
got.append(m._should_retry())      # a person is at it
Clock.now += 2000
got.append(m._should_retry())      # busy_s is over
Clock.now += 7 * 86400 * 1000
got.append(m._should_retry())      # a week later: past half the ticks period
print(got)
""",
    )
    assert out == "[True, False, True, True]"
