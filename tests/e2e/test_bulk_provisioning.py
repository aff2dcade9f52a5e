"""The station provisions simulated devices (real firmware) to `online` on its broker."""

from __future__ import annotations

from station.provisioning import BulkQueue, Status, Step


def test_five_devices_end_to_end(site):
    world = site["world"](5)
    station = site["station"](world, batch_size=3)
    registry = site["registry"]
    home = registry.add_home("Smith", world.home_ssid)
    events = []
    queue = BulkQueue(station, events.append)
    targets = queue.scan()
    assert sorted(t.ssid for t in targets) == sorted(
        f"esp32-dht11-Setup-{c[-6:]}" for c in world.chip_ids
    )
    queue.add(targets, home)
    summary = queue.run(home, world.home_password)
    assert summary.ok, summary
    assert len(summary.done) == 5
    # The registry right afterwards.
    devices = registry.devices()
    assert sorted(d.chip_id for d in devices) == sorted(world.chip_ids)
    for dev in devices:
        assert dev.online and dev.is_provisioned and dev.home.name == "Smith"
        job = dev.jobs[0]
        assert (job.status, job.step, job.progress) == (Status.DONE, Step.COMPLETE, 100)
        assert job.connected_at is not None and job.error is None
        assert set(job.timings) >= {"prepare", "connect", "configure", "reconnect"}
    # The seed's progress figures, in order, for one device.
    pid = devices[0].jobs[0].provisioning_id
    figures = [e.progress for e in events if e.provisioning_id == pid]
    assert figures[0] == 40 and figures[-1] == 100 and figures == sorted(figures)
    assert {60, 80} <= set(figures)
    # The laptop is home and no temporary profile outlived the run.
    laptop = world.air.laptop()
    assert laptop.ssid == world.home_ssid and not laptop.profiles
    # Two trips away (batch of 3 then 2), each ending at home.
    assert laptop.switches >= 5 + 2
