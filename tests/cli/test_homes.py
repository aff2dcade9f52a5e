"""Homes and their WiFi passwords: keyring when there is one, never the database."""

from __future__ import annotations

import io

from station.cli import main
from station.registry import Registry
from station.secrets import SecretStore


def add_home(db, monkeypatch, password="correct horse 42"):
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["--db", db, "homes", "add", "Smith", "--ssid", "My Home WiFi", "--password-stdin"])


def test_add_home_stores_password_in_keyring_only(tmp_path, monkeypatch, memory_keyring, capsys):
    db = str(tmp_path / "r.db")
    assert add_home(db, monkeypatch) == 0
    assert "Added home 'Smith'" in capsys.readouterr().out
    reg = Registry(db)
    home = reg.home("Smith")
    assert home.wifi_ssid == "My Home WiFi"
    reg.close()
    assert SecretStore().home_password(home.id) == "correct horse 42"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"correct horse 42" not in raw
    assert main(["--db", db, "homes"]) == 0
    out = capsys.readouterr().out
    assert "Smith" in out and "password saved" in out and "OS keyring" in out


def test_without_keyring_says_so_and_saves_nothing(tmp_path, monkeypatch, no_keyring, capsys):
    db = str(tmp_path / "r.db")
    assert add_home(db, monkeypatch) == 0
    err = capsys.readouterr().err
    assert "No OS keyring" in err
    store = SecretStore()
    assert not store.persistent
    assert store.home_password(1) is None
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"correct horse 42" not in raw


def test_memory_fallback_keeps_password_for_the_run(no_keyring):
    store = SecretStore()
    store.set_home_password(7, "temporary-pass")
    assert store.home_password(7) == "temporary-pass"
    store.delete_home_password(7)
    assert store.home_password(7) is None


def test_bad_password_and_duplicate_home(tmp_path, monkeypatch, memory_keyring, capsys):
    db = str(tmp_path / "r.db")
    assert add_home(db, monkeypatch, password="short") == 2
    assert "8-63 characters" in capsys.readouterr().err
    assert add_home(db, monkeypatch) == 0
    assert add_home(db, monkeypatch) == 2
    assert "already exists" in capsys.readouterr().err


def test_remove_home_keeps_devices(tmp_path, monkeypatch, memory_keyring, capsys):
    db = str(tmp_path / "r.db")
    add_home(db, monkeypatch)
    reg = Registry(db)
    home = reg.home("Smith")
    reg.register_device(home=home, name="Hall")
    reg.close()
    assert main(["--db", db, "homes", "remove", "Smith"]) == 0
    assert memory_keyring.items == {}
    reg = Registry(db)
    assert reg.homes() == []
    assert reg.devices()[0].home is None and reg.devices()[0].name == "Hall"
    reg.close()
    assert main(["--db", db, "homes", "remove", "Smith"]) == 2
