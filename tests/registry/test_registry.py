"""Registry operations on a real SQLite file (and :memory:)."""

from __future__ import annotations

import peewee
import pytest

from station.errors import ConfigError
from station.registry import Registry, RegistryError, migrations
from station.registry.credentials import hash_token, verify_token
from station.registry.db import make_database
from station.registry.naming import next_number


def test_seed_names_and_prefixes(registry):
    home = registry.add_home("Smith", "MyHomeWiFi")
    first = registry.register_device(
        home=home, name="Living Room Sensor", requested_chip_id="temp_1234567890"
    )
    second = registry.register_device(home=home)
    assert first.device.node_name == "esp32_dht11_001"
    assert first.device.topic_prefix == "home/esp32_dht11_001"
    assert first.device.mqtt_username == "esp32_dht11_001"
    assert second.device.node_name == "esp32_dht11_002"
    assert first.job.provisioning_id != second.job.provisioning_id
    assert first.job.progress == 40 and first.job.requested_chip_id == "temp_1234567890"
    assert verify_token(first.token, registry.device("esp32_dht11_001").token_hash)
    assert not verify_token(second.token, registry.device("esp32_dht11_001").token_hash)


def test_removed_device_number_is_not_reused(registry):
    registry.register_device()
    last = registry.register_device()
    registry.remove_device(last.device)
    # A removed device's retained topics must never get a new owner.
    assert registry.register_device().device.node_name == "esp32_dht11_003"


def test_allocation_survives_collisions_with_foreign_rows(registry):
    # Rows written by another station on a shared database, with a gap.
    from station.registry.models import Device

    Device.create(
        node_name="esp32_dht11_007",
        topic_prefix="home/esp32_dht11_007",
        mqtt_username="esp32_dht11_007",
        token_hash="sha256$x",
    )
    assert registry.register_device().device.node_name == "esp32_dht11_008"


def test_many_allocations_are_unique(registry):
    names = {registry.register_device().device.node_name for _ in range(50)}
    assert len(names) == 50


def test_chip_id_is_unique(registry):
    a, b = registry.register_device(), registry.register_device()
    registry.set_chip_id(a.device, "A4CF12EF5678", firmware="1.0.0", mac="A4:CF:12:EF:56:78")
    assert registry.device("A4CF12EF5678").node_name == a.device.node_name
    with pytest.raises(RegistryError, match="already registered as esp32_dht11_001"):
        registry.set_chip_id(b.device, "A4CF12EF5678")


def test_home_validation(registry):
    registry.add_home("Smith", "MyHomeWiFi")
    with pytest.raises(RegistryError, match="already exists"):
        registry.add_home("Smith", "Other")
    with pytest.raises(RegistryError, match="1-32 bytes"):
        registry.add_home("Jones", "x" * 33)
    with pytest.raises(RegistryError, match="needs a name"):
        registry.add_home("  ", "Net")
    assert [h.name for h in registry.homes()] == ["Smith"]
    assert registry.home("Smith").wifi_ssid == "MyHomeWiFi"


def test_rotate_token_invalidates_old(registry):
    issued = registry.register_device()
    new = registry.rotate_token(issued.device)
    stored = registry.device(issued.device.node_name).token_hash
    assert verify_token(new, stored) and not verify_token(issued.token, stored)


def test_token_hash_format():
    assert hash_token("abc").startswith("sha256$")
    assert verify_token(b"abc", hash_token("abc"))
    assert not verify_token(None, hash_token("abc"))
    assert not verify_token(b"\xff", hash_token("abc"))
    assert not verify_token("abc", "md5$whatever")


def test_sqlite_file_uses_wal(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    assert reg.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert reg.db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    reg.close()


def test_memory_and_url_forms(tmp_path):
    mem = Registry(":memory:")
    mem.register_device()
    assert len(mem.devices()) == 1
    mem.close()
    url = Registry(f"sqlite:///{tmp_path}/u.db")
    assert url.location.endswith("u.db")
    url.close()
    with pytest.raises(ConfigError):
        make_database("nosuchscheme://x/y")


def test_default_location_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    reg = Registry()
    assert (tmp_path / "data" / "registry.sqlite3").exists()
    reg.close()


def test_prune_readings(registry):
    import datetime as dt

    from station.registry.models import Reading, utcnow

    issued = registry.register_device()
    Reading.create(device=issued.device, ts=utcnow() - dt.timedelta(days=40), temperature=1)
    Reading.create(device=issued.device, ts=utcnow(), temperature=2)
    assert registry.prune_readings(30) == 1
    assert [r.temperature for r in registry.readings(issued.device)] == [2]


def test_cascade_on_remove(registry):
    issued = registry.register_device()
    registry.log_event(issued.device, "note", "hello")
    registry.remove_device(issued.device)
    assert registry.job(issued.job.provisioning_id) is None
    assert registry.events() == [] or all(e.device_id is None for e in registry.events())


def test_next_number():
    assert next_number("p_", []) == 1
    assert next_number("p_", ["p_001", "p_010", "q_500", "p_x"]) == 11


# -- migrations --------------------------------------------------------------------


def test_new_database_gets_current_version(db_url):
    reg = Registry(db_url)
    assert migrations.schema_version(reg.db) == migrations.SCHEMA_VERSION
    reg.close()


def test_newer_database_is_refused(db_url):
    reg = Registry(db_url)
    reg.db.execute_sql("UPDATE meta SET value='99' WHERE key='schema_version'")
    reg.close()
    with pytest.raises(ConfigError, match="schema version 99, newer"):
        Registry(db_url)


def test_older_database_is_upgraded_in_place(db_url, monkeypatch):
    """A release that adds a column registers a step; an old database opens with it
    applied and keeps its rows."""
    old = Registry(db_url)
    old.register_device(name="Attic")
    old.close()

    def add_note_column(db, migrator):
        from playhouse.migrate import migrate as run

        run(migrator.add_column("device", "note", peewee.TextField(default="")))

    monkeypatch.setitem(migrations.MIGRATIONS, migrations.SCHEMA_VERSION, add_note_column)
    db = make_database(db_url)
    assert (
        migrations.migrate(db, target=migrations.SCHEMA_VERSION + 1)
        == migrations.SCHEMA_VERSION + 1
    )
    cols = {c.name for c in db.get_columns("device")}
    assert "note" in cols
    assert db.execute_sql("SELECT name FROM device").fetchall() == [("Attic",)]
    db.close()


def test_failed_migration_leaves_database_untouched(db_url, monkeypatch):
    Registry(db_url).close()

    def broken(db, migrator):
        db.execute_sql("ALTER TABLE device ADD COLUMN half_done TEXT")
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(migrations.MIGRATIONS, migrations.SCHEMA_VERSION, broken)
    db = make_database(db_url)
    with pytest.raises(RuntimeError):
        migrations.migrate(db, target=migrations.SCHEMA_VERSION + 1)
    assert migrations.schema_version(db) == migrations.SCHEMA_VERSION
    assert "half_done" not in {c.name for c in db.get_columns("device")}
    db.close()
