"""The registry's job vocabulary and job operations (real SQLite files)."""

from __future__ import annotations

from old_schema import downgrade

from station.registry import OPEN, Registry, Status, Step, migrations
from station.registry.models import ProvisioningJob


def test_job_columns_read_back_as_members(registry):
    issued = registry.register_device()
    job = registry.job(issued.job.provisioning_id)
    assert job.status is Status.REGISTERED
    assert job.step is Step.PREPARE
    # The model's own default is a word of the vocabulary too.
    bare = ProvisioningJob.create(provisioning_id="bare", device=issued.device)
    assert registry.job("bare").status is Status.REGISTERED
    assert bare.status in Status


def test_station_provisioning_still_exports_the_vocabulary():
    from station import provisioning
    from station.provisioning import steps

    assert provisioning.Status is Status and provisioning.Step is Step
    assert steps.OPEN is OPEN


def test_schema_1_pending_rows_become_registered(tmp_path):
    path = tmp_path / "r.db"
    reg = Registry(str(path))
    reg.register_device()
    reg.register_device()
    reg.close()
    # A database as schema 1 left it: one job with the old default word.
    downgrade(
        path,
        1,
        "UPDATE provisioning_job SET status='pending' WHERE id=1",
        "UPDATE provisioning_job SET status='failed' WHERE id=2",
    )

    reg = Registry(str(path))
    try:
        assert reg.schema_version == migrations.SCHEMA_VERSION == 8
        statuses = [j.status for j in ProvisioningJob.select().order_by(ProvisioningJob.id)]
        assert statuses == [Status.REGISTERED, Status.FAILED]
        # 2 -> 3: every existing device proves its token (no seed-app login).
        assert [d.seed_app_login for d in reg.devices()] == [False, False]
        assert reg.credentials(reg.devices()[0].mqtt_username).seed_app_login is False
    finally:
        reg.close()


def test_jobs_in_queue_order_and_by_status(registry):
    a, b, c = (registry.register_device() for _ in range(3))
    registry.update_job(a.job, queue_position=3)
    registry.update_job(b.job, queue_position=1, status=Status.WAITING)
    registry.update_job(c.job, queue_position=2, status=Status.DONE)
    assert [j.id for j in registry.jobs()] == [b.job.id, a.job.id]
    assert [j.id for j in registry.jobs((Status.DONE,))] == [c.job.id]
    assert registry.next_queue_position() == 4


def test_open_job_for_ap_by_bssid_else_ssid(registry):
    by_bssid = registry.register_device(ap_ssid="esp32-dht11-Setup", ap_bssid="24:0a:c4:00:00:01")
    by_ssid = registry.register_device(ap_ssid="esp32-dht11-Setup-ABCDEF")
    assert registry.open_job_for_ap("esp32-dht11-Setup", "24:0a:c4:00:00:01").id == by_bssid.job.id
    assert registry.open_job_for_ap("esp32-dht11-Setup", "24:0a:c4:00:00:02") is None
    assert registry.open_job_for_ap("esp32-dht11-Setup-ABCDEF").id == by_ssid.job.id
    registry.update_job(by_ssid.job, status=Status.FAILED)
    assert registry.open_job_for_ap("esp32-dht11-Setup-ABCDEF") is None


def test_device_for_ap_by_chip_suffix_then_bssid_then_ssid(registry):
    first = registry.register_device(ap_ssid="esp32-dht11-Setup-EF5678")
    registry.set_chip_id(first.device, "A4CF12EF5678")
    # An orphan from a rerun before this fix: same AP, no chip id. The chip wins.
    registry.register_device(ap_ssid="esp32-dht11-Setup-EF5678")
    assert registry.device_for_ap("x", None, "ef5678").id == first.device.id
    # No chip id learned yet (it failed before /api/info): its job's AP tells.
    early = registry.register_device(
        ap_ssid="esp32-dht11-Setup-111111", ap_bssid="aa:bb:cc:00:00:01"
    )
    assert registry.device_for_ap("esp32-dht11-Setup-111111", None, "111111").id == early.device.id
    assert (
        registry.device_for_ap("esp32-dht11-Setup", "AA:BB:CC:00:00:01", None).id == early.device.id
    )
    # The seed's plain SSID and no BSSID: nothing tells units apart.
    registry.register_device(ap_ssid="esp32-dht11-Setup")
    assert registry.device_for_ap("esp32-dht11-Setup", None, None) is None
    assert registry.device_for_ap("esp32-dht11-Setup-999999", None, "999999") is None


def test_reprovision_opens_a_job_on_the_same_device(registry):
    home = registry.add_home("Smith", "MyHomeWiFi")
    issued = registry.register_device(home=home, ap_ssid="esp32-dht11-Setup-EF5678")
    registry.update_job(issued.job, status=Status.DONE, step=Step.COMPLETE, progress=100)
    job = registry.reprovision(issued.device)
    assert job.id != issued.job.id
    assert job.device.id == issued.device.id and job.device.node_name == "esp32_dht11_001"
    assert (job.status, job.step, job.progress) == (Status.REGISTERED, Step.PREPARE, 40)
    assert job.ap_ssid == "esp32-dht11-Setup-EF5678"  # from its last job
    assert job.home.id == home.id
    assert job.queue_position == 1
    assert registry.events(issued.device)[0].kind == "reprovision"
    # Asked again while that job is open: the same job, reopened over the AP given.
    registry.update_job(job, status=Status.WAITING, step=Step.RECONNECT, error="x")
    again = registry.reprovision(issued.device, ap_ssid="esp32-dht11-Setup-EF5678", ap_bssid="b")
    assert again.id == job.id
    assert (again.status, again.error, again.ap_bssid) == (Status.REGISTERED, None, "b")
    assert len(registry.devices()) == 1
    assert ProvisioningJob.select().count() == 2


def test_mark_offline_spares_the_connected(registry):
    from station.registry.models import Device

    names = [registry.register_device().device.node_name for _ in range(3)]
    Device.update(online=True).execute()
    gone = registry.mark_offline(connected={names[1]})
    assert sorted(d.node_name for d in gone) == [names[0], names[2]]
    assert all(not d.online for d in gone)
    assert {d.node_name: d.online for d in registry.devices()} == {
        names[0]: False,
        names[1]: True,
        names[2]: False,
    }
    assert registry.events(registry.device(names[0]))[0].kind == "offline"
    assert registry.events(registry.device(names[1]))[0].kind != "offline"
    assert registry.mark_offline(connected={names[1]}) == []


def test_mark_offline_leaves_devices_of_a_home_with_its_own_broker(registry):
    from station.registry.models import Device

    own = registry.add_home("Smith", "SmithWiFi", broker_url="mqtt://10.0.0.2:1883")
    here = registry.add_home("Jones", "JonesWiFi")
    elsewhere = registry.register_device(home=own).device.node_name
    local = registry.register_device(home=here).device.node_name
    homeless = registry.register_device().device.node_name
    Device.update(online=True).execute()
    gone = registry.mark_offline(connected=())
    assert sorted(d.node_name for d in gone) == sorted([local, homeless])
    assert registry.device(elsewhere).online  # followed on its home's broker


def test_move_job_drops_only_a_new_entry(registry):
    import pytest

    from station.registry import RegistryError

    home = registry.add_home("Smith", "MyHomeWiFi")
    known = registry.register_device()
    registry.set_chip_id(known.device, "A4CF12EF5678")
    fresh = registry.register_device(home=home, ap_ssid="esp32-dht11-Setup")
    dropped = registry.move_job(fresh.job, known.device)
    assert dropped.node_name == "esp32_dht11_002"
    assert [d.node_name for d in registry.devices()] == ["esp32_dht11_001"]
    job = registry.job(fresh.job.provisioning_id)
    assert job.device.id == known.device.id and job.device.home.id == home.id
    assert registry.register_device().device.node_name == "esp32_dht11_003"
    # An entry that has a chip (or history) is never dropped.
    other = registry.register_device()
    registry.set_chip_id(other.device, "A4CF12000001")
    with pytest.raises(RegistryError, match="not a new entry"):
        registry.move_job(other.job, known.device)
    assert len(registry.devices()) == 3


def test_drop_orphans_removes_only_reregistrations_of_that_ap(registry):
    ap = "esp32-dht11-Setup-EF5678"
    first = registry.register_device(ap_ssid=ap)
    registry.set_chip_id(first.device, "A4CF12EF5678")
    orphan = registry.register_device(ap_ssid=ap)
    registry.update_job(orphan.job, status=Status.FAILED)
    in_flight = registry.register_device(ap_ssid=ap)  # open job: not an orphan
    other_ap = registry.register_device(ap_ssid="esp32-dht11-Setup-111111")
    registry.update_job(other_ap.job, status=Status.FAILED)
    api = registry.register_device()  # backend API: no AP at all
    registry.update_job(api.job, status=Status.FAILED)

    dropped = registry.drop_orphans(first.device, ap)
    assert [d.node_name for d in dropped] == [orphan.device.node_name]
    assert [d.node_name for d in registry.devices()] == [
        first.device.node_name,
        in_flight.device.node_name,
        other_ap.device.node_name,
        api.device.node_name,
    ]
    assert registry.events(first.device)[0].kind == "orphans_removed"
    assert registry.drop_orphans(first.device, ap) == []
