"""`station homes add|edit --broker URL`: a home's own broker, its admin login moved from
the URL to the keyring, checked against a real Mosquitto 2.0.11 with dynamic security."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from mosquitto import Mosquitto
from tls_ca import TestCA

from station.broker_target import parse
from station.cli import main
from station.registry import Registry
from station.secrets import SecretStore


@pytest.fixture
def mosq(tmp_path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=("admin", "s3cret-admin")) as m:
        yield m


def add(db, monkeypatch, *extra: str) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO("wifi-password-1\n"))
    return main(["--db", db, "homes", "add", "Smith", "--ssid", "Home", "--password-stdin", *extra])


def test_the_login_goes_to_the_keyring_and_the_broker_is_checked(
    tmp_path, monkeypatch, memory_keyring, mosq, capsys
):
    db = str(tmp_path / "r.db")
    url = f"mqtt://admin:s3cret-admin@127.0.0.1:{mosq.port}"
    assert add(db, monkeypatch, "--broker", url) == 0
    out, err = capsys.readouterr()
    assert f"devices report to mqtt://127.0.0.1:{mosq.port}" in out
    assert "reachable, admin login and dynamic security work" in err
    assert "s3cret-admin" not in out + err
    reg = Registry(db)
    assert reg.home("Smith").broker_url == f"mqtt://127.0.0.1:{mosq.port}"
    reg.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"s3cret-admin" not in raw
    key = parse(f"mqtt://127.0.0.1:{mosq.port}").key
    assert SecretStore().broker_login(key) == ("admin", "s3cret-admin")
    assert main(["--db", db, "homes"]) == 0
    assert f"mqtt://127.0.0.1:{mosq.port}" in capsys.readouterr().out


def test_a_broker_that_refuses_is_a_warning_not_a_lost_home(
    tmp_path, monkeypatch, memory_keyring, mosq, capsys
):
    db = str(tmp_path / "r.db")
    assert (
        add(db, monkeypatch, "--broker", f"mqtt://admin:not-the-pw-xyz@127.0.0.1:{mosq.port}") == 0
    )
    err = capsys.readouterr().err
    assert "Warning:" in err and "refused the admin login 'admin'" in err
    assert "not-the-pw-xyz" not in err  # the password is never shown


def test_edit_moves_a_home_between_brokers(tmp_path, monkeypatch, memory_keyring, mosq, capsys):
    db = str(tmp_path / "r.db")
    assert add(db, monkeypatch) == 0
    url = "mqtts://admin:s3cret-admin@broker.example:8883"
    assert main(["--db", db, "homes", "edit", "Smith", "--broker", url]) == 0
    captured = capsys.readouterr()
    assert "devices report to mqtts://broker.example:8883" in captured.out
    assert "Warning:" in captured.err  # not reachable from here: said, not refused
    assert main(["--db", db, "homes", "edit", "Smith", "--broker", "embedded"]) == 0
    assert "devices report to the embedded broker" in capsys.readouterr().out
    reg = Registry(db)
    assert reg.home("Smith").broker_url is None
    reg.close()


def test_editing_the_broker_of_a_home_with_devices_points_to_the_move(
    tmp_path, monkeypatch, memory_keyring, capsys
):
    db = str(tmp_path / "r.db")
    assert add(db, monkeypatch) == 0
    reg = Registry(db)
    device = reg.register_device(home=reg.home("Smith")).device
    device.is_provisioned = True  # as provisioning leaves it
    device.save()
    reg.close()
    url = "mqtt://admin:pw@broker.example:1883"
    assert main(["--db", db, "homes", "edit", "Smith", "--broker", url]) == 2
    err = capsys.readouterr().err
    assert "has 1 provisioned device(s) reporting to the embedded broker" in err
    assert "station fleet rehome --home 'Smith' --broker URL" in err
    reg = Registry(db)
    assert reg.home("Smith").broker_url is None  # nothing changed
    reg.close()
    # On purpose, for the devices provisioned from now on:
    assert main(["--db", db, "homes", "edit", "Smith", "--broker", url, "--new-devices-only"]) == 0
    assert "until moved (station fleet rehome)" in capsys.readouterr().err
    reg = Registry(db)
    assert reg.home("Smith").broker_url == "mqtt://broker.example:1883"
    reg.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x", "unknown scheme"),
        ("mqtt://admin@host", "no password"),
        ("mqtt://host:70000", "out of range"),
        ("mqtt://host/path", "only scheme, login, host and port"),
    ],
)
def test_bad_broker_urls_are_clear_errors(
    tmp_path, monkeypatch, memory_keyring, capsys, url, message
):
    db = str(tmp_path / "r.db")
    assert add(db, monkeypatch, "--broker", url) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r.db").exists()  # refused before anything was written


def test_edit_needs_something_to_change(tmp_path, monkeypatch, memory_keyring, capsys):
    db = str(tmp_path / "r.db")
    assert add(db, monkeypatch) == 0
    assert main(["--db", db, "homes", "edit", "Smith"]) == 2
    assert "say what to change" in capsys.readouterr().err


def test_a_tls_home_keeps_its_ca_and_its_broker_is_checked_with_it(
    tmp_path, monkeypatch, memory_keyring, capsys
):
    ca = TestCA(tmp_path / "ca")
    with Mosquitto(
        tmp_path / "tls", dynsec_admin=("admin", "s3cret-admin"), tls=ca.issue("broker")
    ) as m:
        db = str(tmp_path / "r.db")
        url = f"mqtts://admin:s3cret-admin@127.0.0.1:{m.port}"
        assert add(db, monkeypatch, "--broker", url, "--ca", str(ca.path)) == 0
        out, err = capsys.readouterr()
        assert "reachable, admin login and dynamic security work" in err, err
        assert "s3cret-admin" not in out + err
        assert main(["--db", db, "homes", "list"]) == 0
        assert f"mqtts://127.0.0.1:{m.port} (TLS, CA given)" in capsys.readouterr().out

        # Another CA for the same broker: kept (a warning, as any check), and it fails.
        other = TestCA(tmp_path / "other")
        assert main(["--db", db, "homes", "edit", "Smith", "--ca", str(other.path)]) == 0
        assert "does not trust" in capsys.readouterr().err
    reg = Registry(db)
    assert reg.home("Smith").broker_ca == other.pem
    reg.close()

    # Back to a plain broker: the CA goes with the TLS.
    plain = "mqtt://admin:s3cret-admin@127.0.0.1:1"
    assert main(["--db", db, "homes", "edit", "Smith", "--broker", plain]) == 0
    reg = Registry(db)
    assert reg.home("Smith").broker_ca is None
    reg.close()


@pytest.mark.parametrize(
    ("broker", "ca_text", "message"),
    [
        ("mqtt://admin:pw@host", "CA", "--ca is for a TLS broker (mqtts://)"),
        (None, "CA", "--ca goes with --broker mqtts://"),
        ("mqtts://admin:pw@host", "not a certificate", "no PEM certificate"),
        ("mqtts://admin:pw@host", None, "no such file"),
    ],
)
def test_bad_ca_options_are_clear_errors_and_add_nothing(
    tmp_path, monkeypatch, memory_keyring, capsys, broker, ca_text, message
):
    path = tmp_path / "ca.pem"
    if ca_text is not None:
        path.write_text(TestCA(tmp_path / "ca").pem if ca_text == "CA" else ca_text)
    db = str(tmp_path / "r.db")
    extra = ["--broker", broker] if broker else []
    assert add(db, monkeypatch, *extra, "--ca", str(path)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r.db").exists()


def test_ca_for_a_home_on_the_embedded_broker_is_refused(
    tmp_path, monkeypatch, memory_keyring, capsys
):
    db = str(tmp_path / "r.db")
    assert add(db, monkeypatch) == 0
    path = tmp_path / "ca.pem"
    path.write_text(TestCA(tmp_path / "ca").pem)
    capsys.readouterr()
    assert main(["--db", db, "homes", "edit", "Smith", "--ca", str(path)]) == 2
    assert "has the embedded broker" in capsys.readouterr().err
    reg = Registry(db)
    assert reg.home("Smith").broker_ca is None
    reg.close()


@pytest.mark.parametrize(
    "url", ["mqtt//admin:s3cret-x@host", "admin:s3cret-x@host:1883", "http://a:s3cret-x@h"]
)
def test_a_password_in_a_mistyped_url_is_never_shown(
    tmp_path, monkeypatch, memory_keyring, capsys, url
):
    db = str(tmp_path / "r.db")
    assert add(db, monkeypatch, "--broker", url) == 2
    err = capsys.readouterr().err
    assert "s3cret-x" not in err and "***" in err, err
