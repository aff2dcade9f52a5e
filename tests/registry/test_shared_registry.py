"""Several stations on one registry (issue 10 part 5): each station's queue runs its
own jobs, a job from before schema 6 is anyone's, and a station that queues another's
device takes its job over, on record. Runs on SQLite and on a real PostgreSQL.

The models of one process share one database connection (peewee's proxy), so here one
Registry plays each station in turn by its `station_id`; tests/e2e/test_shared_registry.py
runs two station processes on one PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from station.registry import Registry, Status, migrations
from station.registry.models import Event, ProvisioningJob


@pytest.fixture
def station(db_url) -> Iterator[Callable[[str | None], Registry]]:
    reg = Registry(db_url)

    def as_station(station_id: str | None) -> Registry:
        reg.station_id = station_id
        return reg

    yield as_station
    reg.close()


def test_each_station_sees_only_its_own_jobs_and_those_of_no_station(station):
    job_a = station("laptop-a").register_device().job
    job_b = station("laptop-b").register_device().job
    assert ProvisioningJob.get_by_id(job_a.id).station == "laptop-a"
    assert ProvisioningJob.get_by_id(job_b.id).station == "laptop-b"
    assert [j.id for j in station("laptop-a").jobs()] == [job_a.id]
    assert [j.id for j in station("laptop-b").jobs()] == [job_b.id]

    anyones = station(None).register_device().job  # no station id: no owner
    assert ProvisioningJob.get_by_id(anyones.id).station is None
    assert sorted(j.id for j in station("laptop-a").jobs()) == sorted([job_a.id, anyones.id])
    assert sorted(j.id for j in station("laptop-b").jobs()) == sorted([job_b.id, anyones.id])
    # Without a station id (a one-station registry) every job is the queue's.
    assert len(station(None).jobs()) == 3


def test_reprovisioning_another_stations_device_makes_the_job_its_own(station):
    issued = station("laptop-a").register_device()
    job = station("laptop-b").reprovision(issued.device)
    assert job.id == issued.job.id  # the open job, reopened
    assert ProvisioningJob.get_by_id(job.id).station == "laptop-b"
    assert [j.id for j in station("laptop-b").jobs()] == [job.id]
    assert station("laptop-a").jobs() == []


def test_take_over_is_on_the_devices_record(station):
    job = station("laptop-a").register_device().job
    station("laptop-b").take_over(job)
    assert ProvisioningJob.get_by_id(job.id).station == "laptop-b"
    event = Event.select().where(Event.kind == "taken_over").get()
    assert event.data == {
        "provisioning_id": job.provisioning_id,
        "from": "laptop-a",
        "to": "laptop-b",
    }
    assert [j.id for j in station("laptop-b").jobs()] == [job.id]
    assert station("laptop-a").jobs() == []


def test_stations_starting_at_once_on_an_empty_database_all_get_the_schema(db_url):
    """Four station processes open one empty database at the same moment: one creates
    the schema, the others wait and find it (on PostgreSQL a concurrent CREATE TABLE IF
    NOT EXISTS failed with a unique violation before the migration lock)."""
    code = (
        "import sys; from station.registry import Registry; "
        "r = Registry(sys.argv[1]); print(r.schema_version); r.close()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == str(migrations.SCHEMA_VERSION)


def test_a_station_starting_its_broker_leaves_another_stations_devices_online(station):
    """Each station's embedded broker marks offline (as it starts) only the devices it
    provisioned last: the others report to the other station's broker."""
    from station.registry.models import Device

    a_first = station("laptop-a").register_device()
    b_own = station("laptop-b").register_device()
    legacy = station(None).register_device()  # a job of no station: anyone's
    moved = station("laptop-a").register_device()
    station("laptop-a").update_job(moved.job, status=Status.DONE)
    again = station("laptop-b").reprovision(moved.device)  # a new job: B's, after A's
    assert again.id != moved.job.id and again.station == "laptop-b"
    Device.update(online=True).execute()

    gone = station("laptop-b").mark_offline(connected=())
    assert sorted(d.node_name for d in gone) == sorted(
        [b_own.device.node_name, legacy.device.node_name, moved.device.node_name]
    )
    assert station("laptop-b").device(a_first.device.node_name).online
