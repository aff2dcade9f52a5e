"""`station firmware probe`: the figures the unix-port runs give (heap free, start-up
time, a WiFi trial's result), measured on a real ESP32 over its USB serial port, plus
what no simulation can show: the raw `WLAN.status()` codes a trial goes through and
the RTC memory's size (docs/HARDWARE.md).

The probe is a MicroPython script run on the board with `mpremote run` (the firmware
must be on it: `station firmware deploy`); it prints `PROBE key value...` lines that
`parse` reads. It leaves the board's stored config and RTC note as they were; a reset
starts the firmware again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from station.errors import StationError

# The firmware's modules, imported in the order app.py needs them.
MODULES = ("util", "factory", "devconfig", "validate", "net", "httpd", "mqttc", "trial", "app")
TRIAL_TIMEOUT_MS = 30_000

_SCRIPT = """
import gc, sys, time
t0 = time.ticks_ms()
gc.collect()
free_start = gc.mem_free()
import machine
from board.esp32 import Board
b = Board()
for m in MODULES:
    __import__(m)
gc.collect()
print("PROBE start_ms", time.ticks_diff(time.ticks_ms(), t0))
print("PROBE heap_free", gc.mem_free())
print("PROBE heap_free_before_imports", free_start)
print("PROBE platform", sys.platform, sys.implementation[1])
print("PROBE chip_id", b.chip_id())
rtc = machine.RTC()
kept = rtc.memory()  # the firmware's note, put back below
size = 0
for n in (4096, 2048, 1024, 512):
    try:
        rtc.memory(b"p" * n)
    except Exception:
        continue
    size = n if rtc.memory() == b"p" * n else -n
    break
rtc.memory(kept)
print("PROBE rtc_bytes", size)
if SSID is not None:
    b.sta_connect(SSID, PASSWORD)
    seq = []
    word = "connecting"
    start = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), start) < TIMEOUT_MS:
        raw = b._sta.status()
        word = b.sta_status()
        if not seq or seq[-1][0] != raw:
            seq.append((raw, word, time.ticks_diff(time.ticks_ms(), start)))
        if word not in ("connecting", "idle"):
            break
        time.sleep_ms(100)
    print("PROBE trial", word, time.ticks_diff(time.ticks_ms(), start))
    print("PROBE trial_ip", b.sta_ip())
    print("PROBE status_sequence", " ".join("%s:%s@%d" % s for s in seq))
    b.sta_disconnect()
gc.collect()
print("PROBE heap_free_end", gc.mem_free())
print("PROBE done")
"""


def script(ssid: str | None = None, password: str = "") -> str:
    """The probe for the board (values embedded as MicroPython literals)."""
    head = (
        f"MODULES = {MODULES!r}\nSSID = {ssid!r}\nPASSWORD = {password!r}\n"
        f"TIMEOUT_MS = {TRIAL_TIMEOUT_MS}\n"
    )
    return head + _SCRIPT


def parse(output: str) -> dict[str, str]:
    """The PROBE lines of a run, key -> the rest of the line."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("PROBE "):
            key, _, rest = line[6:].partition(" ")
            found[key] = rest.strip()
    if "done" not in found:
        tail = "\n".join(output.strip().splitlines()[-8:])
        raise StationError(f"the probe did not finish on the board:\n{tail}")
    return found


def report(found: dict[str, str]) -> str:
    """What a person reads, in the words of docs/PERFORMANCE.md's unix-port figures."""
    lines = [
        f"board: {found.get('platform', '?')}, chip {found.get('chip_id', '?')}",
        f"start-up (board + every firmware module imported): {found.get('start_ms', '?')} ms",
        f"heap free after imports: {found.get('heap_free', '?')} B "
        f"(before: {found.get('heap_free_before_imports', '?')} B; at the end: "
        f"{found.get('heap_free_end', '?')} B)",
        f"RTC memory: holds {found.get('rtc_bytes', '?')} B (of 4096/2048/1024/512 tried, "
        "the largest it took and gave back)",
    ]
    if "trial" in found:
        word, _, ms = found["trial"].partition(" ")
        lines.append(f"trial: {word} after {ms} ms (ip {found.get('trial_ip', 'None')})")
        lines.append(f"WLAN.status() went: {found.get('status_sequence', '')}")
    return "\n".join(lines)


def run(
    port: str, ssid: str | None = None, password: str = "", mpremote: str | None = None
) -> dict[str, str]:
    """Run the probe on the board at `port`; its PROBE figures."""
    tool = mpremote or shutil.which("mpremote") or str(Path(sys.executable).with_name("mpremote"))
    if not Path(tool).exists() and shutil.which(tool) is None:
        raise StationError("mpremote is not installed: pip install -e '.[flash]'")
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        path = Path(tmp) / "probe.py"
        path.write_text(script(ssid, password), encoding="utf-8")
        try:
            proc = subprocess.run(
                [tool, "connect", port, "run", str(path)],
                capture_output=True,
                text=True,
                timeout=TRIAL_TIMEOUT_MS / 1000 + 60,
            )
        except subprocess.TimeoutExpired:
            raise StationError(f"the board at {port} did not finish the probe in time") from None
    if proc.returncode != 0 and "PROBE done" not in proc.stdout:
        raise StationError(
            f"mpremote could not run the probe on {port}: "
            + (proc.stderr.strip() or proc.stdout.strip())[-600:]
        )
    return parse(proc.stdout)


def as_json(found: dict[str, str]) -> str:
    return json.dumps(found, sort_keys=True)
