"""Cold start of the GUI: process start to first window shown, and to the station
ready (broker, registry and, in demo mode, 6 simulated sensors running).

    python benchmarks/gui_startup.py [--runs 3]

Runs `python -m station --demo` offscreen (QT_QPA_PLATFORM=offscreen) and reads
the times the app logs; each run quits on its own once ready.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def one_run() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        # A throwaway user (HOME, TMPDIR too): nothing of a real station is read or left.
        env = dict(
            os.environ,
            QT_QPA_PLATFORM="offscreen",
            STATION_QUIT_AFTER_READY="0.5",
            HOME=tmp,
            TMPDIR=tmp,
            STATION_DATA_DIR=os.path.join(tmp, "data"),
            STATION_CONFIG=os.path.join(tmp, "settings.json"),
        )
        proc = subprocess.run(
            [sys.executable, "-m", "station", "-v", "--demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    first = re.search(r"first window after ([\d.]+) s", proc.stderr)
    ready = re.search(r"station ready after ([\d.]+) s", proc.stderr)
    if proc.returncode != 0 or not first or not ready:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    if "device is off" in proc.stderr:  # a "ready" station whose sensors died is no start
        raise SystemExit(f"demo devices died during start-up:\n{proc.stderr[-3000:]}")
    return float(first.group(1)), float(ready.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"# GUI cold start, {args.runs} runs, {time.strftime('%Y-%m-%d')}")
    firsts, readies = [], []
    for _ in range(args.runs):
        first, ready = one_run()
        firsts.append(first)
        readies.append(ready)
        print(f"first window {first:.2f} s, ready (demo, 6 sensors) {ready:.2f} s", flush=True)
    print(
        f"median: first window {statistics.median(firsts):.2f} s, "
        f"ready {statistics.median(readies):.2f} s"
    )


if __name__ == "__main__":
    main()
