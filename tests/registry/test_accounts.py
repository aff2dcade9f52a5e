"""Integration accounts in the registry (real SQLite files)."""

from __future__ import annotations

import pytest
from old_schema import downgrade

from station.registry import Registry, migrations
from station.registry.accounts import AccountError
from station.registry.credentials import verify_token
from station.registry.models import AccountRole


def test_add_stores_only_a_hash_of_the_password(registry):
    issued = registry.accounts.add("homeassistant", "observer")
    assert issued.account.role is AccountRole.OBSERVER
    assert len(issued.password) >= 40  # 256 random bits, url-safe
    cred = registry.accounts.credentials("homeassistant")
    assert cred.password_hash.startswith("sha256$")
    assert verify_token(issued.password, cred.password_hash)
    rows = registry.db.execute_sql("SELECT * FROM account").fetchall()
    assert len(rows) == 1 and "homeassistant" in rows[0]
    assert not [v for v in rows[0] if isinstance(v, str) and issued.password in v]


def test_the_sqlite_file_never_holds_the_password(tmp_path):
    reg = Registry(str(tmp_path / "r.db"))
    password = reg.accounts.add("homeassistant", "observer").password
    reg.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("r.db*"))  # with the WAL
    assert b"homeassistant" in raw
    assert password.encode() not in raw


def test_rotate_replaces_the_password(registry):
    first = registry.accounts.add("nodered", AccountRole.OPERATOR)
    second = registry.accounts.rotate("nodered")
    cred = registry.accounts.credentials("nodered")
    assert first.password != second.password
    assert not verify_token(first.password, cred.password_hash)
    assert verify_token(second.password, cred.password_hash)
    assert registry.accounts.get("nodered").rotated_at is not None
    assert cred.role is AccountRole.OPERATOR


def test_remove_and_list(registry):
    registry.accounts.add("b-tool", "observer")
    registry.accounts.add("a.tool", "operator")
    assert [a.name for a in registry.accounts.all()] == ["a.tool", "b-tool"]
    registry.accounts.remove("a.tool")
    assert [a.name for a in registry.accounts.all()] == ["b-tool"]
    assert registry.accounts.credentials("a.tool") is None
    with pytest.raises(AccountError, match=r"no account 'a\.tool'"):
        registry.accounts.remove("a.tool")
    with pytest.raises(AccountError, match="no account"):
        registry.accounts.rotate("ghost")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "1-32 letters"),
        ("has space", "1-32 letters"),
        ("x" * 33, "1-32 letters"),
        ("-dash-first", "1-32 letters"),
        ("a/b", "1-32 letters"),
        ("station", "station's own login"),
        ("Station", "station's own login"),
        ("esp32_dht11_900", "looks like a device's node name"),
    ],
)
def test_names_that_could_clash_are_refused(registry, name, message):
    with pytest.raises(AccountError, match=message):
        registry.accounts.add(name, "observer")
    assert registry.accounts.all() == []


def test_a_device_login_name_is_refused(tmp_path):
    reg = Registry(str(tmp_path / "r.db"), node_name_prefix="sensor")
    try:
        device = reg.register_device().device
        other = Registry(str(tmp_path / "r.db"), node_name_prefix="other_")
        try:
            with pytest.raises(AccountError, match="is a device's login"):
                other.accounts.add(device.node_name, "observer")
        finally:
            other.close()
    finally:
        reg.close()


def test_duplicate_and_unknown_role_are_clear_errors(registry):
    registry.accounts.add("ha", "observer")
    with pytest.raises(AccountError, match=r"already exists .*accounts rotate ha"):
        registry.accounts.add("ha", "operator")
    with pytest.raises(AccountError, match=r"unknown role 'admin' .*observer, operator"):
        registry.accounts.add("ha2", "admin")
    assert registry.accounts.get("ha").role is AccountRole.OBSERVER


def test_schema_3_database_gets_the_account_table_and_keeps_its_devices(tmp_path):
    path = tmp_path / "r.db"
    reg = Registry(str(path))
    node = reg.register_device().device.node_name
    reg.close()
    downgrade(path, 3)

    reg = Registry(str(path))
    try:
        assert reg.schema_version == migrations.SCHEMA_VERSION == 8
        assert [d.node_name for d in reg.devices()] == [node]
        assert reg.accounts.add("ha", "observer").account.name == "ha"
    finally:
        reg.close()
