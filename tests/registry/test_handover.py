"""Schema 7's location note and the handover report's rows, on both registry databases
(a SQLite file and a real PostgreSQL server: the `registry` fixture does both)."""

from __future__ import annotations

import csv
import datetime as dt
import re

import pytest
from old_schema import downgrade

from station import handover
from station.registry import Registry, RegistryError, Status, Step, migrations
from station.registry.models import Device, Reading, utcnow


def test_location_note_set_changed_and_cleared(registry):
    dev = registry.register_device(name="old").device
    assert dev.location is None
    got = registry.describe_device(dev, name="  Kitchen sensor ", location="Küche, über der Tür")
    assert (got.name, got.location) == ("Kitchen sensor", "Küche, über der Tür")
    assert registry.device(dev.node_name).location == "Küche, über der Tür"
    # None leaves a field as it is; "" clears the location (NULL, "not noted").
    got = registry.describe_device(dev, location="")
    assert (got.name, got.location) == ("Kitchen sensor", None)
    assert registry.describe_device(dev).name == "Kitchen sensor"
    assert "described" in [e.kind for e in registry.events(dev)]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("x" * 101, "101 characters long; at most 100"),
        ("two\nlines", "control character (U+000A)"),
        ("tab\there", "control character (U+0009)"),
        ("bidi \u202e trick", "control character (U+202E)"),
    ],
)
def test_bad_notes_are_refused_and_nothing_changes(registry, text, words):
    dev = registry.register_device(name="kept").device
    with pytest.raises(RegistryError, match=re.escape(words)):
        registry.describe_device(dev, location=text)
    with pytest.raises(RegistryError, match=r"control|characters"):
        registry.describe_device(dev, name=text)
    again = registry.device(dev.id)
    assert (again.name, again.location) == ("kept", None)
    # 100 characters and an emoji with a zero-width joiner are fine.
    assert registry.describe_device(dev, location="y" * 100).location == "y" * 100
    assert registry.describe_device(dev, name="🧑\u200d🍳 kitchen").name == "🧑\u200d🍳 kitchen"


def test_schema_6_database_gets_the_location_column(tmp_path):
    path = tmp_path / "r.db"
    reg = Registry(str(path))
    node = reg.register_device(name="kept").device.node_name
    reg.close()
    downgrade(path, 6)

    reg = Registry(str(path))
    try:
        assert reg.schema_version == migrations.SCHEMA_VERSION == 8
        dev = reg.device(node)
        assert (dev.name, dev.location) == ("kept", None)
        assert reg.describe_device(dev, location="hall").location == "hall"
    finally:
        reg.close()


def test_schema_7_database_gets_the_broker_address_column(tmp_path):
    path = tmp_path / "r.db"
    reg = Registry(str(path))
    node = reg.register_device(name="kept").device.node_name
    reg.close()
    downgrade(path, 7)

    reg = Registry(str(path))
    try:
        assert reg.schema_version == migrations.SCHEMA_VERSION == 8
        dev = reg.device(node)
        assert (dev.name, dev.broker_address) == ("kept", None)
    finally:
        reg.close()


def _home_with_three(registry: Registry):
    """Smith: one device online with readings, one offline, one that failed twice."""
    home = registry.add_home("Smith", "SmithWiFi")
    other = registry.add_home("Jones", "JonesWiFi")
    now = utcnow().replace(microsecond=0)
    issued = [registry.register_device(home=home) for _ in range(3)]
    tokens = [i.token for i in issued]
    a, b, c = (i.device for i in issued)
    registry.register_device(home=other)  # not in Smith's report
    for n, dev in enumerate((a, b, c)):
        registry.set_chip_id(dev, f"A4CF1200000{n}", mac=f"A4:CF:12:00:00:0{n}", firmware="1.0.0")
    registry.describe_device(a, name="Kitchen", location="above the fridge")
    for dev, online in ((a, True), (b, False)):
        Device.update(
            is_provisioned=True,
            provisioned_at=now - dt.timedelta(hours=2),
            online=online,
            last_state={"temperature": 21.5, "humidity": 40, "rssi": -61},
        ).where(Device.id == dev.id).execute()
    job_a = issued[0].job
    registry.update_job(
        job_a,
        status=Status.DONE,
        step=Step.COMPLETE,
        is_provisioned=True,
        timings={"prepare": 0.1, "connect": 2.0, "configure": 3.0, "reconnect": 4.5},
    )
    Reading.insert_many(
        [
            {"device": a.id, "ts": now - dt.timedelta(minutes=m), "temperature": 21, "rssi": -60}
            for m in (90, 30, 5)
        ]
    ).execute()
    reason = "the device refused the WiFi password for SmithWiFi (wrong password?)"
    registry.update_job(
        issued[2].job, status=Status.FAILED, step=Step.CONFIGURE, error=reason, attempts=2
    )
    registry.log_event(c, "provisioning_failed", reason, {"step": "configure"})
    registry.log_event(c, "provisioning_failed", "no answer from 192.168.4.1", {"step": "connect"})
    return home, (a, b, c), tokens, now, reason


def test_report_rows_and_csv(registry, tmp_path):
    _home, (a, b, c), tokens, now, reason = _home_with_three(registry)
    report = handover.gather(registry, "Smith", station_broker="192.168.1.20:1883")
    assert report.home == "Smith" and report.broker == "this station's broker (192.168.1.20:1883)"
    assert [r.node_name for r in report.rows] == [a.node_name, b.node_name, c.node_name]
    ra, rb, rc = report.rows
    assert (ra.name, ra.location, ra.chip_id, ra.mac) == (
        "Kitchen",
        "above the fridge",
        "A4CF12000000",
        "A4:CF:12:00:00:00",
    )
    assert [r.state for r in report.rows] == ["online", "offline", "failed"]
    assert (report.count("online"), report.count("offline"), report.count("failed")) == (1, 1, 1)
    assert ra.rssi == -61 and ra.readings == 3
    assert ra.first_reading == now - dt.timedelta(minutes=90)
    assert ra.last_reading == now - dt.timedelta(minutes=5)
    assert ra.provisioning_s == 9.6 and ra.attempts == 1 and not ra.failures
    assert rb.readings == 0 and rb.first_reading is None
    assert rc.attempts == 2
    assert [f.reason for f in rc.failures] == [
        f"configure: {reason}",
        "connect: no answer from 192.168.4.1",
    ]
    assert ra.qr_text == f"A4CF12000000 {a.node_name}"

    path = handover.write_csv(report, tmp_path / "r.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a BOM: Excel reads it as UTF-8
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert [r["node"] for r in rows] == [a.node_name, b.node_name, c.node_name]
    assert rows[0]["RSSI dBm"] == "-61" and rows[0]["location"] == "above the fridge"
    assert rows[0]["first reading (UTC)"] == f"{now - dt.timedelta(minutes=90):%Y-%m-%d %H:%M:%S}"
    assert reason in rows[2]["failures"] and rows[2]["state"] == "failed"
    text = raw.decode("utf-8-sig")
    for token in tokens:
        assert token not in text
    for dev in registry.devices():
        assert dev.token_hash.split("$")[-1] not in text


def test_external_broker_home_shows_its_url_and_no_login(registry):
    home = registry.add_home("Lake house", "Lake", broker_url="mqtts://broker.lake:8883")
    registry.register_device(home=home)
    report = handover.gather(registry, home.id)
    assert report.broker == "mqtts://broker.lake:8883"
    assert report.rows[0].broker == "mqtts://broker.lake:8883"


def test_a_device_reporting_another_broker_says_so(registry):
    """A home moved halfway (station.fleet.rehome): the row shows where the device is."""
    home = registry.add_home("Lake house", "Lake", broker_url="mqtt://broker.lake:1883")
    on_it, moved = (registry.register_device(home=home).device for _ in range(2))
    Device.update(broker_address="broker.lake:1883").where(Device.id == on_it.id).execute()
    Device.update(broker_address="10.0.0.9:1883").where(Device.id == moved.id).execute()
    rows = handover.gather(registry, home.id).rows
    assert [r.broker for r in rows] == [
        "mqtt://broker.lake:1883",
        "mqtt://broker.lake:1883 (the device reports 10.0.0.9:1883)",
    ]


def test_a_formula_in_a_note_stays_text_in_the_csv(registry, tmp_path):
    home = registry.add_home("Smith", "SmithWiFi")
    dev = registry.register_device(home=home).device
    registry.describe_device(dev, name='=HYPERLINK("http://x")', location="+1 floor")
    path = handover.write_csv(handover.gather(registry, "Smith"), tmp_path / "r.csv")
    row = next(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
    assert row["name"] == '\'=HYPERLINK("http://x")' and row["location"] == "'+1 floor"


def test_one_query_per_table_whatever_the_number_of_devices(registry, monkeypatch):
    home = registry.add_home("Smith", "SmithWiFi")
    counted: list[str] = []
    real = registry.db.execute_sql

    def counting(sql, *args, **kwargs):
        counted.append(sql)
        return real(sql, *args, **kwargs)

    def queries() -> int:
        counted.clear()
        monkeypatch.setattr(registry.db, "execute_sql", counting)
        handover.gather(registry, "Smith")
        monkeypatch.undo()
        return len(counted)

    for _ in range(2):
        registry.register_device(home=home)
    few = queries()
    for _ in range(20):
        dev = registry.register_device(home=home).device
        registry.log_event(dev, "provisioning_failed", "x", {"step": "connect"})
        Reading.create(device=dev, temperature=20)
    assert queries() == few <= 5  # home, devices, jobs, readings, events


def test_unknown_home_names_the_homes(registry):
    registry.add_home("Smith", "SmithWiFi")
    with pytest.raises(handover.ReportError, match="no home 'Smyth'; the homes are: Smith"):
        handover.gather(registry, "Smyth")
