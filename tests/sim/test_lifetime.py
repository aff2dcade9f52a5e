"""How long a simulated device lives: as long as the process that launched it,
whichever thread started or rebooted it, and not a moment longer (SIGKILL included).

Linux's PR_SET_PDEATHSIG fires when the forking *thread* ends (FIELD-NOTES.md,
"Linux processes"); the GUI starts its demo fleet on a short-lived thread, so these
tests start and reboot devices from threads that have ended before they look.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

import requests
from support import wait_for

from station.sim.device import SimDevice
from station.sim.fleet import Fleet, fleet_chip_ids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie is dead for our purposes
    except FileNotFoundError:
        return False


def _in_a_thread_that_ends(fn) -> None:
    worker = threading.Thread(target=fn, name="short-lived")
    worker.start()
    worker.join(30)
    assert not worker.is_alive()


def _answers_info(air, chip: str) -> bool:
    ap = air.setup_ap(chip)
    if ap is None:
        return False
    return requests.get(ap.api_url + "/api/info", timeout=5).json()["chip_id"] == chip


def test_a_fleet_started_from_a_thread_that_ended_keeps_running(air, firmware_dir, fast):
    chips = fleet_chip_ids(2)
    fleet = Fleet(air, firmware_dir, chips, timing=fast)
    try:
        _in_a_thread_that_ends(fleet.start)
        for chip in chips:
            air.wait_for_setup_ap(chip)
        time.sleep(3)  # the old code's devices were gone within a second
        assert all(d.running for d in fleet.devices), [d.exit_codes for d in fleet.devices]
        assert all(_answers_info(air, chip) for chip in chips)
    finally:
        fleet.stop()


def test_a_device_rebooted_from_a_thread_that_ended_keeps_running(air, firmware_dir, fast):
    device = SimDevice(air, "A4CF12EF5678", firmware_dir, timing=fast)
    try:
        _in_a_thread_that_ends(device.start)
        ap = device.wait_for_setup_ap()
        requests.post(ap.api_url + "/api/restart", timeout=5)
        # poll() inside wait_for_reboot starts the fresh process from this worker.
        _in_a_thread_that_ends(lambda: device.wait_for_reboot(1))
        device.wait_for_setup_ap()
        time.sleep(3)
        assert device.running, device.exit_codes
        assert device.boots == 2 and _answers_info(air, device.chip_id)
    finally:
        device.stop()


def test_a_sigkilled_launcher_takes_its_devices_down(air, firmware_dir, tmp_path):
    # The launcher starts its fleet from a thread that ends, as the GUI does; its devices
    # must outlive that thread and still die with the launcher process.
    chips = fleet_chip_ids(2)
    script = tmp_path / "launcher.py"
    script.write_text(
        textwrap.dedent(f"""
        import threading, time
        from station.sim.air import Air
        from station.sim.fleet import Fleet
        fleet = Fleet(Air({str(air.root)!r}), {str(firmware_dir)!r}, {chips!r},
                      timing={{"button_window_ms": 0}})
        t = threading.Thread(target=fleet.start)
        t.start()
        t.join()
        print(" ".join(str(d.pid) for d in fleet.devices), flush=True)
        time.sleep(120)
    """)
    )
    launcher = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        pids = [int(p) for p in launcher.stdout.readline().split()]
        assert len(pids) == 2
        for chip in chips:
            air.wait_for_setup_ap(chip)
        time.sleep(2)
        assert all(_alive(p) for p in pids)
        launcher.kill()
        launcher.wait(5)
        wait_for(lambda: not any(_alive(p) for p in pids), 5)
    finally:
        launcher.kill()
        launcher.wait()
        launcher.stdout.close()
        for p in pids:
            if _alive(p):
                os.kill(p, 9)
