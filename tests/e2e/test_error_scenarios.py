"""The seed's error scenarios and a wrong home password, end to end: each is reported
in plain words, nothing is lost, and the laptop always ends on its home network."""

from __future__ import annotations

import pytest

from station.provisioning import BulkQueue, Status, Step
from station.sim.demo import BROKER_HOST, BROKER_PORT


def _setup(site, n=1, **settings):
    world = site["world"](n)
    station = site["station"](world, **settings)
    home = site["registry"].add_home("Smith", world.home_ssid)
    queue = BulkQueue(station)
    queue.add(queue.scan(), home)
    return world, station, home, queue


def _assert_home(world):
    laptop = world.air.laptop()
    assert laptop.ssid == world.home_ssid and not laptop.profiles


def test_wrong_home_password_is_reported_before_leaving_the_ap(site):
    world, _station, home, queue = _setup(site)
    summary = queue.run(home, "not-the-password")
    assert not summary.ok and len(summary.failed) == 1
    job = site["registry"].job(summary.failed[0])
    assert (job.status, job.step) == (Status.FAILED, Step.CONFIGURE)
    assert "password" in job.error.lower()
    assert "not-the-password" not in job.error
    # The device was never restarted: it is still in setup mode, its AP up.
    assert world.air.setup_ap(world.chip_ids[0]) is not None
    assert not site["registry"].device(job.device.node_name).is_provisioned
    _assert_home(world)
    # Retry with the right password: the same job, the same device, online.
    queue.retry(job.provisioning_id)
    summary = queue.run(home, world.home_password)
    assert summary.ok and summary.done == [job.provisioning_id]
    assert len(site["registry"].devices()) == 1


def test_device_unreachable_in_step_3(site):
    """Seed scenario 2: on the device's network, but the device does not answer."""
    world, _station, home, queue = _setup(site)
    chip = world.chip_ids[0]
    ap = world.air.setup_ap(chip)
    announced = (world.air.root / "aps" / f"{chip}.json").read_text()
    world.fleet.devices[0].stop()
    # The AP stays on the air (the radio is up) but its web server is dead: the laptop
    # joins fine and then nobody answers at the device address.
    (world.air.root / "aps" / f"{chip}.json").write_text(announced)
    summary = queue.run(home, world.home_password)
    assert len(summary.failed) == 1
    job = site["registry"].job(summary.failed[0])
    assert job.status == Status.FAILED and job.step in (Step.CONNECT, Step.CONFIGURE)
    assert "Cannot reach device" in job.error and ap.ssid in job.error
    _assert_home(world)


def test_device_never_comes_online(site):
    """Seed scenario 3: configured, but it never reaches the broker; a timeout with a
    retry hint, and it is marked provisioned if it connects later."""
    world, _station, home, queue = _setup(site, online_timeout_s=3)
    # The home network no longer routes to the station's broker.
    world.air.add_home_network(world.home_ssid, world.home_password, reach={})
    summary = queue.run(home, world.home_password)
    assert len(summary.failed) == 1
    job = site["registry"].job(summary.failed[0])
    assert (job.status, job.step) == (Status.FAILED, Step.RECONNECT)
    assert "did not come online" in job.error and "retry" in job.error
    _assert_home(world)
    # The route comes back: the device connects in the background and is provisioned.
    target = f"127.0.0.1:{site['broker'].port}"
    world.air.add_home_network(
        world.home_ssid, world.home_password, reach={f"{BROKER_HOST}:{BROKER_PORT}": target}
    )
    from support import wait_for

    wait_for(lambda: site["registry"].job(job.provisioning_id).is_provisioned, 25)
    job = site["registry"].job(job.provisioning_id)
    assert job.status == Status.DONE and job.error is None


def test_registry_unreachable_in_step_1(site):
    """Seed scenario 1: the backend (here the station's own registry) cannot be reached
    while preparing; a clear error, nothing half-registered, the laptop never left."""
    from station.provisioning import ProvisioningError

    world = site["world"](1)
    station = site["station"](world)
    registry = site["registry"]
    home = registry.add_home("Smith", world.home_ssid)
    queue = BulkQueue(station)
    targets = queue.scan()
    registry.db.execute_sql("PRAGMA query_only = 1")  # every write now fails
    try:
        with pytest.raises(ProvisioningError, match="Cannot reach the device registry"):
            queue.add(targets, home)
    finally:
        registry.db.execute_sql("PRAGMA query_only = 0")
    assert registry.devices() == []
    assert world.air.laptop().switches == 0
    # Once the registry is back, the same device is registered once.
    queue.add(queue.scan(), home)
    assert len(registry.devices()) == 1
