"""The seed's manual flow in a terminal, as a person runs it on the demo:

    station provision --demo 1 --wifi manual

The station asks (the seed's step 2 and step 4 texts); the "person" switches the simulated
laptop's network (the air's laptop placement, in the air folder the demo prints) and
presses Enter. Nothing injects a device address: the manual backend finds the device at
the gateway of the network the laptop is on.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from station.registry import Registry
from station.sim.air import Air

pytestmark = pytest.mark.timeout(240)

AIR_RE = re.compile(r"Air folder: (\S+)\)")
AP_RE = re.compile(r"connect to (esp32-dht11-Setup-[0-9A-F]{6}) \(password: (\w+)\)")


class Terminal:
    """The station's process with a person at its terminal."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "station", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.air: Air | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line)
        self._q.put(None)

    def wait_for(self, pattern: str | tuple[str, ...], timeout: float = 90.0) -> str:
        """Read on until a line contains `pattern` (one of them); returns the text read
        since the call."""
        patterns = (pattern,) if isinstance(pattern, str) else pattern
        end = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            try:
                line = self._q.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.text}") from None
            if line is None:
                raise AssertionError(f"the station ended before {pattern!r}:\n{self.text}")
            self.lines.append(line)
            seen.append(line)
            if (m := AIR_RE.search(line)) and self.air is None:
                self.air = Air(m.group(1))
            if any(p in line for p in patterns):
                return "".join(seen)

    def press_enter(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        self.proc.wait(timeout)
        err = self.proc.stderr.read()
        while (line := self._q.get(timeout=5)) is not None:
            self.lines.append(line)
        return self.proc.returncode, self.text, err

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def env(tmp_path):
    return dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
    )


def _figures(text: str, node: str) -> list[int]:
    return [int(p) for p in re.findall(rf"^\[\s*(\d+)%\] {node}\b", text, re.M)]


def test_manual_flow_in_the_terminal_provisions_the_device(tmp_path, env):
    db = tmp_path / "registry.sqlite3"
    term = Terminal(["--db", str(db), "provision", "--demo", "1", "--wifi", "manual"], env)
    try:
        term.wait_for("WiFi: manual")
        # Step 2: the seed's instruction names the device network and its password.
        step2 = term.wait_for("Air folder:")
        m = AP_RE.search(step2)
        assert m is not None, step2
        ap, password = m.groups()
        assert password == "12345678"
        assert "Step 1 of 5: Prepare device" in term.text
        assert "Step 2 of 5: Connect to device" in step2
        assert "press Enter for “I'm Connected to Device WiFi”" in step2
        air = term.air
        assert air is not None
        assert air.laptop().ssid == "DemoHomeWiFi"  # nothing switched by itself

        # The person presses Enter before switching: the seed's scenario 2, asked again.
        term.press_enter()
        again = term.wait_for("Air folder:", timeout=60)
        assert f"Cannot reach device. Make sure you're connected to {ap}" in again

        # Now they join the device's network, then confirm.
        air.move_laptop(ap, password)
        term.press_enter()

        # Step 3: the networks the device hears, the home network among them.
        step3 = term.wait_for("settings sent")
        assert "Step 3 of 5: Configure device" in step3
        assert "Networks the device hears" in step3
        assert re.search(r"DemoHomeWiFi\s+-?\d+ dBm\s+secured\s+<- home", step3), step3

        # Step 4: the seed's alert; the person goes home, then "Check Device Connection".
        step4 = term.wait_for("Air folder:")
        assert "Step 4 of 5: Reconnect to home WiFi" in step4
        assert "Please reconnect to your home WiFi" in step4 and "DemoHomeWiFi" in step4
        assert "press Enter for “Check Device Connection”" in step4
        air.move_laptop("DemoHomeWiFi")
        term.press_enter()

        done = term.wait_for("devices online")
        rc, text, err = term.finish()
    finally:
        term.kill()
    assert rc == 0, text[-3000:] + err[-3000:]
    assert "Traceback" not in err
    assert "Step 5 of 5: Complete" in done and "✓ Device Connected" in done
    assert "Added to: Demo home" in done
    assert "1 of 1 devices online" in done
    assert _figures(text, "esp32_dht11_001")[-1] == 100
    assert re.search(r"^\[ 20%\]\s+" + re.escape(ap), text, re.M)  # step 1 starts at 20 %
    reg = Registry(str(db))
    try:
        device = reg.devices()[0]
        assert device.is_provisioned
        assert f"Device ID: {device.chip_id}" in done
        # It came online on the station's broker (the tracker's "provisioned" event).
        kinds = [e.kind for e in device.events]
        assert "provisioned" in kinds and device.last_seen is not None
        # (Its `info`, with the home LAN address, may still be in flight when the command
        # ends: the seed's completion is the first `online`, so no IP is asserted here.)
        (job,) = device.jobs
        assert job.is_provisioned and job.connected_at is not None
    finally:
        reg.close()


def test_person_stays_on_the_device_network_the_table_shows_the_real_wait(tmp_path, env):
    """The device cannot reach this laptop's broker while the laptop is not home: the wait
    times out (shortened to 4 s), and the final table shows the seconds it really took."""
    cfg = tmp_path / "settings.json"
    cfg.write_text(json.dumps({"provisioning": {"online_timeout_s": 4}}))
    term = Terminal(["--config", str(cfg), "provision", "--demo", "1", "--wifi", "manual"], env)
    try:
        step2 = term.wait_for("Air folder:")
        m = AP_RE.search(step2)
        assert m is not None and term.air is not None
        term.air.move_laptop(*m.groups())
        term.press_enter()
        term.wait_for("Please reconnect to your home WiFi")
        term.wait_for("Air folder:")
        # They do not go home, and confirm anyway (as often as they are asked).
        asked = 1
        while True:
            term.press_enter()
            got = term.wait_for(("Air folder:", "did not come online"), timeout=60)
            if "did not come online" in got:
                break
            asked += 1
            assert asked <= 3  # the manual backend asks at most three times
        rc, text, err = term.finish()
    finally:
        term.kill()
    assert rc == 1, text[-3000:] + err[-3000:]
    assert "did not come online within 4 s" in text
    row = next(ln for ln in text.splitlines() if ln.startswith("esp32_dht11_001 "))
    seconds = float(row.split()[4])
    assert seconds >= 4.0, row  # the 4 s wait is in it; the step timings alone are ~2 s
    assert "0 of 1 devices online" in text


def test_ctrl_c_at_the_prompt_cancels_and_still_sends_the_person_home(tmp_path, env):
    term = Terminal(["provision", "--demo", "1", "--wifi", "manual"], env)
    try:
        term.wait_for("Air folder:")  # step 2's prompt is waiting for Enter
        term.proc.send_signal(signal.SIGINT)
        back = term.wait_for("Air folder:", timeout=30)  # step 4: go home even so
        assert "(no answer: cancelled)" in back
        assert "Please reconnect to your home WiFi" in back
        term.press_enter()
        rc, text, err = term.finish()
    finally:
        term.kill()
    assert rc == 130, text[-2000:] + err[-2000:]
    assert "Cancelling: the laptop goes back home first" in err
    assert "Run the same command again to continue" in err
    assert "Traceback" not in err


def test_two_devices_one_after_the_other_moving_the_laptop_by_typing(tmp_path, env):
    """`--demo 2 --wifi manual`: the seed's five steps for each device in turn; the person
    moves the simulated laptop by typing the network's name at the prompt (the demo's
    stand-in for the WiFi settings), then presses Enter."""
    term = Terminal(["provision", "--demo", "2", "--wifi", "manual"], env)
    joined: list[str] = []
    try:
        for _device in range(2):
            step2 = term.wait_for("Air folder:")
            m = AP_RE.search(step2)
            assert m is not None, step2
            joined.append(m.group(1))
            term.proc.stdin.write(m.group(1) + "\n\n")  # join it, then "I'm Connected"
            term.proc.stdin.flush()
            term.wait_for("Please reconnect to your home WiFi")
            term.proc.stdin.write("DemoHomeWiFi\n\n")  # back home, then "Check Device …"
            term.proc.stdin.flush()
            term.wait_for("Added to: Demo home")
        rc, text, err = term.finish()
    finally:
        term.kill()
    assert rc == 0, text[-3000:] + err[-3000:]
    assert len(set(joined)) == 2  # each device's own network, one after the other
    assert text.count("(the simulated laptop is now on DemoHomeWiFi)") == 2
    assert text.count("✓ Device Connected") == 2
    assert "2 of 2 devices online" in text
    for node in ("esp32_dht11_001", "esp32_dht11_002"):
        figures = _figures(text, node)
        assert figures == sorted(figures) and figures[-1] == 100
