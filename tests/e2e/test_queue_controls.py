"""Pause, cancel and skip on a running batch: the laptop always ends at home, no job is
lost, and a later run finishes what is left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from station.provisioning import BulkQueue, Status
from station.registry import ProvisioningJob


def _queue(site, n, listener=None, **settings):
    world = site["world"](n)
    station = site["station"](world, **settings)
    home = site["registry"].add_home("Smith", world.home_ssid)
    queue = BulkQueue(station, listener)
    queue.add(queue.scan(), home)
    return world, home, queue


def _home(world):
    laptop = world.air.laptop()
    return laptop.ssid == world.home_ssid and not laptop.profiles


def test_pause_after_the_device_in_hand_then_continue(site):
    seen = []

    def listener(p):
        if p.status == Status.WAITING and p.progress == 80:
            seen.append(p.provisioning_id)
            if len(seen) == 1:
                queue.pause()

    world, home, queue = _queue(site, 3, listener)
    summary = queue.run(home, world.home_password)
    assert summary.paused and not summary.cancelled
    assert summary.done == seen  # the configured one was still confirmed online
    assert _home(world)
    left = queue.jobs()
    assert len(left) == 2 and all(j.status == Status.REGISTERED for j in left)
    summary = queue.run(home, world.home_password)
    assert summary.ok and len(summary.done) == 2
    assert all(d.is_provisioned for d in site["registry"].devices())


def test_cancel_mid_batch(site):
    cancelled = []

    def listener(p):
        if p.status == Status.WAITING and p.progress == 80 and not cancelled:
            cancelled.append(p.provisioning_id)
            queue.cancel()

    world, home, queue = _queue(site, 3, listener)
    summary = queue.run(home, world.home_password)
    assert summary.cancelled and not summary.ok
    assert _home(world)
    jobs = {j.provisioning_id: j.status for j in ProvisioningJob.select()}
    assert sorted(jobs.values()) == [Status.CANCELLED] * 2 + [Status.WAITING]
    assert jobs[cancelled[0]] == Status.WAITING  # configured: it may still come online
    # Retry brings the cancelled jobs back; the next run also confirms the waiting one.
    for pid in jobs:
        queue.retry(pid)
    summary = queue.run(home, world.home_password)
    assert summary.ok, [site["registry"].job(p).error for p in summary.failed]
    assert sorted(summary.done) == sorted(jobs)
    assert all(d.is_provisioned for d in site["registry"].devices())


def test_skip(site):
    world, home, queue = _queue(site, 2)
    skipped = queue.jobs()[0]
    queue.skip(skipped.provisioning_id)
    summary = queue.run(home, world.home_password)
    assert summary.ok and len(summary.done) == 1
    assert site["registry"].job(skipped.provisioning_id).status == Status.SKIPPED
    assert world.air.setup_ap(world.chip_ids[0]) or world.air.setup_ap(world.chip_ids[1])
    assert _home(world)


def test_ctrl_c_in_the_cli_brings_the_laptop_home(tmp_path):
    env = dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "station", "provision", "--demo", "3", "--switch-delay", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "joining esp32-dht11-Setup-" in line:
            proc.send_signal(signal.SIGINT)  # mid-switch to the first device
            break
    out, err = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert proc.returncode == 130, text + err
    assert "the laptop goes back home first" in err
    assert "Cancelled. Run the same command again to continue." in err
    assert "Traceback" not in err


def test_a_person_declining_the_manual_switch_ends_the_run(site):
    """The manual flow: "Cancel" at the seed's step 2 question is a cancel of the run
    (it used to loop, asking again and again), and the person is asked to go home."""
    from station.sim.wifi import AirGatewayLookup
    from station.wifi.manual import ManualBackend

    world = site["world"](2)
    station = site["station"](world)
    asked = []

    def decline(instruction):
        asked.append(instruction.step)
        return False

    station.wifi = ManualBackend(decline, gateway_lookup=AirGatewayLookup(world.air))
    home = site["registry"].add_home("Smith", world.home_ssid)
    queue = BulkQueue(station)
    queue.add([t for t in BulkQueue(site["station"](world)).scan()], home)
    summary = queue.run(home, world.home_password)
    assert summary.cancelled and not summary.done
    assert asked[0] == 2 and asked.count(2) == 1  # asked once, not again and again
    assert {j.status for j in ProvisioningJob.select()} == {Status.CANCELLED}
