"""`station fleet update` as a user runs it: the `station` command in a subprocess.

`--demo N` tells the whole story in one command (issue 11): N simulated devices running
the real firmware are provisioned, the next firmware version is built and rolled out,
and each device is confirmed only by the version it reports over MQTT."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from support import station_cli as cli

pytestmark = pytest.mark.timeout(300)


def _env(tmp_path, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        STATION_DATA_DIR=str(tmp_path / "data"),
        STATION_CONFIG=str(tmp_path / "settings.json"),
        **extra,
    )


def _fleet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "station", "fleet", "update", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _rows(out: str) -> dict[str, list[str]]:
    """The final table: node -> [before, reports, result...]."""
    return {
        m.group(1): m.group(2).split(None, 2)
        for m in re.finditer(r"^(esp32_dht11_\d{3})  +(\S.*)$", out, re.MULTILINE)
    }


def test_demo_fleet_is_updated_and_every_device_confirmed(tmp_path):
    # Default timings: the demo as `station fleet update --demo 3` runs it for a user.
    proc = _fleet(_env(tmp_path), "--demo", "3")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "Provisioned 3 of 3 devices" in out
    assert "Firmware 1.0.1:" in out
    rows = _rows(out)
    assert sorted(rows) == ["esp32_dht11_001", "esp32_dht11_002", "esp32_dht11_003"]
    for node, (before, reports, result) in rows.items():
        assert (before, reports) == ("1.0.0", "1.0.1"), node
        assert result.startswith("confirmed"), node
    assert "3 of 3 device(s) confirmed on firmware 1.0.1." in out
    # The canary alone first: confirmed before any other device was sent the command.
    lines = out.splitlines()
    canary_done = lines.index("  canary esp32_dht11_001    confirmed")
    first_other = min(i for i, line in enumerate(lines) if re.match(r"  {8}esp32\S+ +sent$", line))
    assert canary_done < first_other
    assert "Traceback" not in proc.stderr


def test_a_bad_bundle_rolls_the_canary_back_and_stops(tmp_path):
    proc = _fleet(_env(tmp_path, STATION_DEMO_TIMING="fast"), "--demo", "3", "--bad-bundle")
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:] + proc.stderr[-3000:]
    assert "a firmware that crashes at boot" in out
    rows = _rows(out)
    assert rows["esp32_dht11_001"][:2] == ["1.0.0", "1.0.0"]
    assert rows["esp32_dht11_001"][2].startswith("rolled back: crashed at boot")
    for node in ("esp32_dht11_002", "esp32_dht11_003"):
        assert rows[node] == ["1.0.0", "1.0.0", "not started"]
        assert not re.search(rf"{node} +sent", out)  # never sent anything
    assert (
        "0 of 3 device(s) confirmed on firmware 1.0.1; stopped: the canary esp32_dht11_001 "
        "rolled back: crashed at boot" in out
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all", "--bad-bundle"], "--bad-bundle is for a demo site"),
        (["--demo", "2", "--version", "v2"], "firmware version 'v2': use dotted numbers"),
        (["--demo", "0"], "--demo takes a number of devices from 1 to"),
        (["--all"], "no device is registered yet"),
        (["--home", "Nowhere"], "no home 'Nowhere'"),
        (["--device", "esp32_dht11_404"], "no device 'esp32_dht11_404'"),
        ([], "one of the arguments --home --device --all --demo is required"),
        (["--all", "--bundle", "/nonexistent/1.0.1"], "no manifest.json: not a firmware bundle"),
        (["--demo", "1", "--bundle", "/x", "--bad-bundle"], "--bundle and --bad-bundle"),
    ],
)
def test_mistakes_are_one_clear_line(tmp_path, args, message):
    # Settings that keep the station's own broker off the default port 1883.
    (tmp_path / "settings.json").write_text('{"broker": {"bind_host": "127.0.0.1", "port": 0}}')
    proc = cli(_env(tmp_path), "fleet", "update", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_refused_while_the_station_runs_its_broker(running):
    env, db, *_ = running
    proc = cli(env, "--db", db, "fleet", "update", "--all")
    assert proc.returncode == 2
    assert "the station is running" in proc.stderr and "Update firmware action" in proc.stderr


def test_demo_home_moves_to_a_real_mosquitto_and_back(tmp_path):
    from mosquitto import Mosquitto

    with Mosquitto(tmp_path / "mosquitto", dynsec_admin=("admin", "admin-secret")) as mosq:
        url = f"mqtt://admin:admin-secret@127.0.0.1:{mosq.port}"
        args = ["rehome", "--demo", "2", "--broker", url, "--and-back"]
        proc = subprocess.run(
            [sys.executable, "-m", "station", "fleet", *args],
            env=_env(tmp_path, STATION_DEMO_TIMING="fast"),
            capture_output=True,
            text=True,
            timeout=240,
        )
        log = mosq.log_path.read_text()
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    there, back = out.split("And back:")
    assert f"2 of 2 device(s) moved to 127.0.0.1:{mosq.port}." in there
    assert f"Home 'Demo home' now reports to mqtt://127.0.0.1:{mosq.port}." in there
    assert "2 of 2 device(s) moved to 192.168.29.91:" in back
    assert "Home 'Demo home' now reports to the station's embedded broker." in back
    assert "admin-secret" not in out + proc.stderr  # the admin login is never printed
    for node in ("esp32_dht11_001", "esp32_dht11_002"):
        assert f"as {node} " in log  # each really logged in to the Mosquitto
    assert "Traceback" not in proc.stderr


def test_demo_interval_is_confirmed_by_each_device(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "station", "fleet", "set-interval", "7", "--demo", "2"],
        env=_env(tmp_path, STATION_DEMO_TIMING="fast"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    rows = _rows(out)
    assert sorted(rows) == ["esp32_dht11_001", "esp32_dht11_002"]
    assert all(r[0] == "confirmed" for r in rows.values()), rows
    assert "2 of 2 device(s) confirmed on 7 s." in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rehome", "--home", "Nowhere", "--broker", "embedded"], "no home 'Nowhere'"),
        (["rehome", "--home", "X", "--broker", "embedded", "--and-back"], "--and-back is for"),
        (["rehome", "--home", "X", "--broker", "ftp://h"], "broker"),
        (["set-interval", "0", "--all"], "value must be 1 to 3600 s, got 0"),
    ],
)
def test_config_mistakes_are_one_clear_line(tmp_path, args, message):
    (tmp_path / "settings.json").write_text('{"broker": {"bind_host": "127.0.0.1", "port": 0}}')
    proc = cli(_env(tmp_path), "fleet", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_closed_station_waits_for_its_devices_then_changes_them(running, tmp_path):
    """Not a demo: this computer's station, closed. The command starts its broker (on
    the port the devices know), waits for them to reconnect, then rolls out."""
    from station import control

    env, db, registry, broker, _world, device = running
    control.withdraw(control.announcement_path(registry.location))
    port = broker.port
    broker.stop()  # the window was closed: its broker with it
    (tmp_path / "settings.json").write_text(
        f'{{"broker": {{"bind_host": "127.0.0.1", "port": {port}}}}}'
    )
    proc = cli(env, "--db", db, "fleet", "set-interval", "9", "--all", "--wait", "30")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    # (Whether it printed "Waiting up to 30 s …" depends on how fast the device came
    # back: its broker was gone, so it was confirmed only after reconnecting to this one.)
    assert _rows(out)[device.node_name][0] == "confirmed"
    assert "1 of 1 device(s) confirmed on 9 s." in out
    events = [e.kind for e in registry.events(registry.device(device.node_name))]
    assert "interval_change" in events


def test_a_closed_station_rolls_out_a_release_bundle_on_its_lan_address(running, tmp_path):
    """Not a demo: `station firmware bundle` makes a release, `station fleet update
    --bundle` serves it on the laptop's address (advertise_host) and fixed port
    (broker.bundle_port, the one to open in a firewall) and rolls it out."""
    from support import free_port

    from station import control

    env, db, registry, broker, world, device = running
    control.withdraw(control.announcement_path(registry.location))
    port = broker.port
    broker.stop()  # the window was closed
    bundle_port = free_port()
    # The home LAN reaches the laptop's bundle port (here the laptop is 127.0.0.1).
    world.air.extend_reach(
        world.home_ssid, {f"127.0.0.1:{bundle_port}": f"127.0.0.1:{bundle_port}"}
    )
    laptop = {"bind_host": "127.0.0.1", "port": port, "advertise_host": "127.0.0.1"}
    settings = {"broker": {**laptop, "bundle_port": bundle_port}}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    made = cli(
        env,
        "firmware",
        "bundle",
        str(tmp_path / "release"),
        "--version",
        "1.2.0",
        "--board",
        "host",
    )
    assert made.returncode == 0, made.stderr
    assert "roll it out: station fleet update --bundle" in made.stdout
    proc = cli(
        env, "--db", db, "fleet", "update", "--all", "--wait", "30",
        "--bundle", str(tmp_path / "release" / "1.2.0"),
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert f"served at http://127.0.0.1:{bundle_port}/" in out
    assert _rows(out)[device.node_name][:2] == ["1.0.0", "1.2.0"]
    assert registry.device(device.node_name).firmware == "1.2.0"  # what the device reports
