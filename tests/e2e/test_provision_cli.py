"""`station provision --demo N` as a new user runs it: one command, a whole batch."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_batch_from_the_command_line(tmp_path):
    env = dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "station", "provision", "--demo", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "WiFi: simulated" in out
    assert "Found 3 device(s) in setup mode." in out
    assert "3 of 3 devices online" in out
    for pct in ("[ 40%]", "[ 60%]", "[ 80%]", "[100%]"):
        assert pct in out
    assert "Traceback" not in proc.stderr
    # A demo never touches the user's real registry.
    assert not (tmp_path / "data" / "registry.sqlite3").exists()
