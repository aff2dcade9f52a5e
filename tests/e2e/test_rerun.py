"""Re-running a failed batch and re-provisioning a device, through `station provision`
as a user runs it: the simulated site's chips keep their registry entries (same node
names), nothing is registered twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from station.registry import Registry, Status
from station.runtime import demo_chip_seed
from station.sim.fleet import fleet_chip_ids

NODES = ["esp32_dht11_001", "esp32_dht11_002", "esp32_dht11_003"]


def _station(tmp_path, *args: str, stdin: str | None = None, timeout: float = 240):
    env = dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
    )
    return subprocess.run(
        [sys.executable, "-m", "station", "--db", str(tmp_path / "r.db"), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _registry_facts(tmp_path) -> tuple[dict, dict]:
    reg = Registry(str(tmp_path / "r.db"))
    try:
        devices = {d.node_name: (d.chip_id, d.token_hash, d.is_provisioned) for d in reg.devices()}
        jobs: dict[str, list] = {}
        for status in Status:
            for job in reg.jobs((status,)):
                jobs.setdefault(job.device.node_name, []).append(job.status)
        return devices, jobs
    finally:
        reg.close()


def test_rerun_after_a_failed_batch_reuses_the_entries(tmp_path):
    # A wrong home password: every device fails in step 3, before its AP is left.
    first = _station(
        tmp_path, "provision", "--demo", "3", "--password-stdin", stdin="not-the-password\n"
    )
    assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
    assert "0 of 3 devices online" in first.stdout
    devices, jobs = _registry_facts(tmp_path)
    assert sorted(devices) == NODES
    assert all(chip for chip, _, _ in devices.values())  # /api/info came before the failure
    assert jobs == {n: [Status.FAILED] for n in NODES}

    # What reruns before this fix left: the first chip registered again (no chip id,
    # a failed job over the same setup AP), an orphan row.
    reg = Registry(str(tmp_path / "r.db"))
    try:
        ap = reg.device(NODES[0]).jobs[0].ap_ssid
        orphan = reg.register_device(home=reg.homes()[0], ap_ssid=ap)
        reg.update_job(orphan.job, status=Status.FAILED, error="already registered")
        assert orphan.device.node_name == "esp32_dht11_004"
    finally:
        reg.close()

    # The same site again (same chips, back in setup mode), the right password.
    second = _station(tmp_path, "provision", "--demo", "3")
    out = second.stdout
    assert second.returncode == 0, out[-3000:] + second.stderr[-3000:]
    assert "3 of 3 devices online" in out
    assert out.count("already registered as esp32_dht11_00") == 3
    assert "esp32_dht11_005" not in out  # no new entry
    for node in NODES:
        assert any(line.startswith(node) and " online " in line for line in out.splitlines())
    after, jobs = _registry_facts(tmp_path)
    assert sorted(after) == NODES  # exactly three entries, under their first names
    assert {n: chip for n, (chip, _, _) in after.items()} == {
        n: chip for n, (chip, _, _) in devices.items()
    }
    assert all(provisioned for _, _, provisioned in after.values())
    # Fresh tokens: the ones issued in the failed run stop working.
    assert all(after[n][1] != devices[n][1] for n in NODES)
    # A new job each. The device's first `online` completes every job of it (the
    # seed's status per provisioning id: is the device provisioned); the failure stays
    # in its event log.
    assert jobs == {n: [Status.DONE, Status.DONE] for n in NODES}
    reg = Registry(str(tmp_path / "r.db"))
    try:
        for node in NODES:
            kinds = [e.kind for e in reg.events(reg.device(node))]
            assert kinds.count("provisioning_failed") == 1
            assert kinds.count("reprovision") == 1
        first_events = reg.events(reg.device(NODES[0]))
        assert [e.data for e in first_events if e.kind == "orphans_removed"] == [
            {"removed": ["esp32_dht11_004"]}
        ]
    finally:
        reg.close()


def test_reprovision_a_device_by_node_name(tmp_path):
    first = _station(tmp_path, "provision", "--demo", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before, _ = _registry_facts(tmp_path)
    assert sorted(before) == NODES[:2]

    # A new demo site = the devices factory reset: their setup APs are up again.
    again = _station(tmp_path, "provision", "--demo", "2", "--reprovision", NODES[0])
    out = again.stdout
    assert again.returncode == 0, out[-3000:] + again.stderr[-3000:]
    assert f"Re-provisioning {NODES[0]}" in out
    assert "factory reset" in out
    assert "1 of 1 devices online" in out
    after, jobs = _registry_facts(tmp_path)
    assert sorted(after) == NODES[:2]
    assert after[NODES[0]][0] == before[NODES[0]][0]
    assert after[NODES[0]][1] != before[NODES[0]][1]  # a new token
    assert after[NODES[1]][1] == before[NODES[1]][1]  # the other one untouched
    assert jobs == {NODES[0]: [Status.DONE, Status.DONE], NODES[1]: [Status.DONE]}


def test_reprovision_says_what_to_do_when_its_setup_ap_never_appears(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))  # this station's id
    first = _station(tmp_path, "provision", "--demo", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (tmp_path / "settings.json").write_text(
        json.dumps({"provisioning": {"online_timeout_s": 3}}), encoding="utf-8"
    )
    # A one-device demo has only the first of the two chips: the other one's AP never
    # shows. (Which node that chip got depends on the order the scan found them.)
    second_chip = fleet_chip_ids(2, demo_chip_seed(shared=True))[1]
    devices, _ = _registry_facts(tmp_path)
    [absent] = [node for node, (chip, _, _) in devices.items() if chip == second_chip]
    missing = _station(tmp_path, "provision", "--demo", "1", "--reprovision", absent)
    out = missing.stdout
    assert missing.returncode == 1, out[-3000:] + missing.stderr[-3000:]
    assert "Waiting up to 3 s" in out
    assert "did not appear within 3 s" in out
    assert "Traceback" not in missing.stderr
    _, jobs = _registry_facts(tmp_path)
    # Statuses in vocabulary order: the first run's job, then the one that gave up.
    assert jobs[absent] == [Status.DONE, Status.FAILED]
