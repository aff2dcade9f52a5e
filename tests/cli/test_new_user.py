"""The `station` command as a new user meets it (issue 8, 1b): each case reproduced
through the entry point, with the clear message or the right behaviour."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest

from station.cli import main
from station.registry import Registry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def own_dirs(tmp_path, monkeypatch):
    """In-process runs use this test's data and config folders (journal, registry)."""
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STATION_CONFIG", str(tmp_path / "settings.json"))


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["STATION_DATA_DIR"] = str(tmp_path / "data")
    e["STATION_CONFIG"] = str(tmp_path / "settings.json")
    return e


@pytest.fixture
def config(tmp_path):
    """Settings with the broker on a free loopback port (no real station data touched)."""
    cfg = tmp_path / "settings.json"
    cfg.write_text(json.dumps({"broker": {"bind_host": "127.0.0.1", "port": 0}}))
    return str(cfg)


def station(env, *args: str, stdin=subprocess.DEVNULL, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "station", *args],
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# -- passwords without a terminal ----------------------------------------------------------


def test_homes_add_without_a_terminal_says_how_to_pass_the_password(tmp_path, env):
    db = str(tmp_path / "r.db")
    proc = station(env, "--db", db, "homes", "add", "X", "--ssid", "Y")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "EOFError" not in proc.stderr
    assert "the home WiFi password is needed" in proc.stderr
    assert "| station homes add 'X' --ssid 'Y' --password-stdin" in proc.stderr
    # Nothing half-done: no home was added.
    reg = Registry(db)
    assert reg.homes() == []
    reg.close()


def test_password_stdin_that_is_empty_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    db = str(tmp_path / "r.db")
    rc = main(["--db", db, "homes", "add", "X", "--ssid", "Y", "--password-stdin"])
    assert rc == 2
    assert "standard input ended before a password line" in capsys.readouterr().err


def test_provision_without_a_terminal_says_how_to_pass_the_password(tmp_path, env, config):
    db = str(tmp_path / "r.db")
    reg = Registry(db)
    reg.add_home("X", "HomeNet")  # no password saved (no keyring in a subprocess here)
    reg.close()
    proc = station(env, "--config", config, "--db", db, "provision", "--home", "X")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "EOFError" not in proc.stderr
    assert "the home WiFi password is needed" in proc.stderr
    assert "provision --home 'X' --password-stdin" in proc.stderr
    assert "WiFi:" not in proc.stdout  # refused before any WiFi work


# -- sub-commands and their usage ----------------------------------------------------------------


def test_homes_list_is_a_command(tmp_path, monkeypatch, memory_keyring, capsys):
    db = str(tmp_path / "r.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse 42\n"))
    assert main(["--db", db, "homes", "add", "Smith", "--ssid", "Net", "--password-stdin"]) == 0
    capsys.readouterr()
    assert main(["--db", db, "homes", "list"]) == 0
    out = capsys.readouterr().out
    assert "Smith" in out and "WiFi 'Net'" in out and "password saved" in out
    assert "correct horse 42" not in out


def test_unknown_option_shows_the_sub_commands_usage(env):
    proc = station(env, "devices", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: station devices")
    assert "station devices: error: unrecognized arguments: --bogus" in proc.stderr


def test_unknown_option_of_a_nested_command_shows_its_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["homes", "list", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: station homes list")
    assert "unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("n", ["-1", "0", "201", "many"])
def test_demo_count_must_be_1_to_200(n, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["provision", "--demo", n])
    assert exc.value.code == 2
    err = capsys.readouterr()
    assert "--demo takes a number of devices from 1 to 200" in err.err
    assert err.err.startswith("usage: station provision")
    assert "Starting" not in err.out  # no simulated device was started


# -- read-only listings never create a database ------------------------------------------------


@pytest.mark.parametrize("command", [["devices"], ["devices", "--json"], ["homes", "list"]])
def test_listing_a_database_that_does_not_exist(tmp_path, capsys, command):
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    assert main(["--db", str(missing), *command]) == 2
    err = capsys.readouterr().err
    assert f"the registry database {missing} does not exist" in err
    assert not (tmp_path / "nonexistent").exists()  # neither the folder nor a file


def test_first_listing_on_a_new_machine_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STATION_CONFIG", str(tmp_path / "settings.json"))
    assert main(["devices"]) == 0
    assert "No devices registered yet" in capsys.readouterr().out
    assert not (tmp_path / "data" / "registry.sqlite3").exists()


# -- provisioning: the home first, then WiFi ------------------------------------------------------


def test_unknown_home_is_refused_before_any_wifi(tmp_path, monkeypatch, capsys, config):
    import station.wifi.select as select

    def no_wifi(*_a, **_k):
        raise AssertionError("WiFi was touched before the home was checked")

    monkeypatch.setattr(select, "select_backend", no_wifi)
    db = str(tmp_path / "r.db")
    rc = main(["--config", config, "--db", db, "provision", "--home", "nosuch", "--wifi", "pywifi"])
    assert rc == 2
    out, err = capsys.readouterr()
    assert "no home 'nosuch' yet: give its WiFi with --ssid" in err
    assert "WiFi:" not in out


def test_manual_backend_with_device_needs_no_scan(tmp_path, monkeypatch, memory_keyring, capsys):
    """`--wifi manual --device SSID`: no scan; the seed's step 2 instruction comes at once
    (here nobody answers it, so the run is cancelled and the person is sent home)."""
    cfg = tmp_path / "settings.json"
    # No real network is probed: nobody confirms, so the device address is never used.
    cfg.write_text(json.dumps({"broker": {"bind_host": "127.0.0.1", "port": 0}}))
    db = str(tmp_path / "r.db")
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse 42\n"))
    ap = "esp32-dht11-Setup-EF5678"
    rc = main(
        [
            "--config",
            str(cfg),
            "--db",
            db,
            "provision",
            "--home",
            "H",
            "--ssid",
            "HomeNet",
            "--password-stdin",
            "--wifi",
            "manual",
            "--device",
            ap,
        ]
    )
    out, err = capsys.readouterr()
    assert "cannot scan" not in out + err
    assert "WiFi: manual" in out
    assert f"connect to {ap} (password: 12345678)" in out
    assert "Press Enter for “I'm Connected to Device WiFi”" in out
    assert "Please reconnect to your home WiFi" in out and "HomeNet" in out
    assert rc == 130  # no answer = cancel
    assert "correct horse 42" not in out + err
    reg = Registry(db)
    jobs = list(reg.jobs(("registered", "running", "waiting", "cancelled", "failed")))
    reg.close()
    assert [j.ap_ssid for j in jobs] == [ap]  # registered in step 1, then cancelled


def _provision_manual(tmp_path, monkeypatch, *extra: str) -> int:
    """`station provision … --wifi manual` with a home password on stdin."""
    cfg = tmp_path / "settings.json"
    cfg.write_text(json.dumps({"broker": {"bind_host": "127.0.0.1", "port": 0}}))
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse 42\n"))
    db = str(tmp_path / "r.db")
    home = ["--home", "H", "--ssid", "HomeNet", "--password-stdin"]
    return main(["--config", str(cfg), "--db", db, "provision", *home, "--wifi", "manual", *extra])


def test_manual_backend_without_device_says_how_to_name_it(tmp_path, monkeypatch, capsys):
    assert _provision_manual(tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "name the device's network with --device esp32-dht11-Setup-XXXXXX" in err


def test_manual_backend_refuses_a_name_that_is_no_setup_network(tmp_path, monkeypatch, capsys):
    assert _provision_manual(tmp_path, monkeypatch, "--device", "my-phone") == 2
    assert "my-phone: not a device setup network" in capsys.readouterr().err


# -- progress: the seed's 20 % -----------------------------------------------------------------


def test_bulk_progress_starts_at_the_seeds_20_percent(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STATION_CONFIG", str(tmp_path / "settings.json"))
    assert main(["provision", "--demo", "1"]) == 0
    out = capsys.readouterr().out
    figures = [int(m) for m in re.findall(r"^\[\s*(\d+)%\]", out, re.M)]
    assert figures[0] == 20
    assert figures == sorted(figures)  # 20 → 40 → 60 → 80 → 100, never back
    assert {20, 40, 60, 80, 100} <= set(figures)
    assert "1 of 1 devices online" in out


def test_demo_prompt_moves_the_simulated_laptop_by_name(tmp_path):
    """On the demo the person may type a network name at the prompt, as they would pick
    it in the OS's WiFi settings; Enter alone then confirms."""
    from station.cli.seed_flow import TerminalConfirm
    from station.sim.air import Air
    from station.wifi.manual import connect_instruction

    air = Air(tmp_path / "air")
    air.add_home_network("Home", "home-pass-1")
    air.add_home_network("Other", "other-pass")
    air.place_laptop("Home")
    typed = iter(["Nowhere", "Other", ""])
    out = io.StringIO()
    confirm = TerminalConfirm(out, move=air.move_laptop, read=lambda _p: next(typed))
    assert confirm(connect_instruction("esp32-dht11-Setup-EF5678", "12345678")) is True
    text = out.getvalue()
    assert "Cannot join Nowhere" in text
    assert "(the simulated laptop is now on Other)" in text
    assert "press Enter for “I'm Connected to Device WiFi”" in text
    assert air.laptop().ssid == "Other"


def test_device_scan_report_warns_when_the_home_network_is_not_heard():
    """Step 3's device scan in the terminal: the list, and a warning when the home
    network is not in it (the device tries it anyway: it may be hidden)."""
    from station.cli.seed_flow import print_device_networks
    from station.device_client import HeardNetwork

    out = io.StringIO()
    report = print_device_networks("MyHomeWiFi", out)
    report("esp32-dht11-Setup-EF5678", [HeardNetwork("MyHomeWiFi", -51, True)], None)
    assert "MyHomeWiFi" in out.getvalue() and "<- home" in out.getvalue()
    assert "warning" not in out.getvalue()
    report("esp32-dht11-Setup-EF5678", [HeardNetwork("Neighbour", -70, False)], None)
    assert "Neighbour" in out.getvalue() and "open" in out.getvalue()
    assert "esp32-dht11-Setup-EF5678 does not hear the home network 'MyHomeWiFi'" in (
        out.getvalue()
    )
    report("esp32-dht11-Setup-EF5678", None, "the device sent a malformed answer")
    assert "network scan failed: the device sent a malformed answer" in out.getvalue()
