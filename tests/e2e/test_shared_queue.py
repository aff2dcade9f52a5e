"""Two stations' queues on one registry meet the same device (issue 10 part 5): while
one station is configuring it, the other leaves it alone; once the first has left it
(its laptop gone), the other takes the job over and completes it. Real firmware on the
simulated site, the station's real broker and queue."""

from __future__ import annotations

import datetime as dt

from station.provisioning import BulkQueue
from station.provisioning.queue import BUSY_ELSEWHERE_S
from station.registry import Status
from station.registry.models import Event, ProvisioningJob, utcnow


def test_a_device_another_station_is_configuring_is_left_alone_then_taken_over(site):
    registry = site["registry"]
    world = site["world"](1)
    station = site["station"](world)
    home = registry.add_home("Smith", world.home_ssid)

    registry.station_id = "laptop-a"
    queue_a = BulkQueue(station)
    targets = queue_a.scan()
    [job] = queue_a.add(targets, home)
    assert ProvisioningJob.get_by_id(job.id).station == "laptop-a"

    # Laptop B (same registry) scans the same setup AP while A is at work on it.
    registry.station_id = "laptop-b"
    queue_b = BulkQueue(station)
    assert queue_b.add(queue_b.scan(), home) == []
    assert ProvisioningJob.get_by_id(job.id).station == "laptop-a"
    assert queue_b.jobs() == []

    # A went away without finishing: its job is older than BUSY_ELSEWHERE_S.
    stale = utcnow() - dt.timedelta(seconds=BUSY_ELSEWHERE_S + 60)
    ProvisioningJob.update(updated_at=stale).where(ProvisioningJob.id == job.id).execute()
    [taken] = queue_b.add(queue_b.scan(), home)
    assert taken.id == job.id
    assert ProvisioningJob.get_by_id(job.id).station == "laptop-b"
    assert Event.select().where(Event.kind == "taken_over").count() == 1

    summary = queue_b.run(home, world.home_password)
    assert summary.ok, summary
    done = ProvisioningJob.get_by_id(job.id)
    assert (done.status, done.station) == (Status.DONE, "laptop-b")
    assert done.device.online and done.device.is_provisioned


def test_a_run_configures_only_its_homes_devices(site):
    """A queue holding devices of two homes: a run for one home gives its WiFi and
    broker only to that home's devices; the other's stay queued for their own run."""
    registry = site["registry"]
    world = site["world"](2)
    station = site["station"](world)
    smith = registry.add_home("Smith", world.home_ssid)
    jones = registry.add_home("Jones", world.home_ssid)
    queue = BulkQueue(station)
    first, second = sorted(queue.scan(), key=lambda t: t.ssid)
    [for_smith] = queue.add([first], smith)
    [for_jones] = queue.add([second], jones)

    summary = queue.run(smith, world.home_password)
    assert summary.done == [for_smith.provisioning_id], summary
    assert ProvisioningJob.get_by_id(for_jones.id).status is Status.REGISTERED

    summary = queue.run(jones, world.home_password)
    assert summary.done == [for_jones.provisioning_id], summary
    assert {j.device.home.name for j in ProvisioningJob.select()} == {"Smith", "Jones"}
