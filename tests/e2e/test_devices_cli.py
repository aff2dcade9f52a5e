"""`station devices command|remove` from a second process, against a running station.

The station here is the test's own registry + embedded broker with a provisioned
simulated device (real firmware); it announces itself as StationRuntime and `station
broker` do (station/control.py). The CLI runs as the user runs it: the `station` command
in a subprocess, on the same registry file.
"""

from __future__ import annotations

import pytest
from support import station_cli as cli
from support import wait_for

from station import control


def test_announcement_is_private_to_its_user(running, tmp_path):
    path = control.announcement_path(running[2].location)
    assert path.stat().st_mode & 0o777 == 0o600
    assert control.find(running[2].location).port == running[3].port


def test_command_reaches_the_device_and_prints_its_answer(running):
    env, db, registry, _, _, device = running
    out = cli(env, "--db", db, "devices", "command", device.node_name, "set_interval", "7")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{device.node_name}: Set interval: done (value 7)"
    out = cli(env, "--db", db, "devices", "command", device.node_name, "identify")
    assert out.stdout.strip() == f"{device.node_name}: Identify: done"
    kinds = [e.kind for e in registry.events(registry.device(device.node_name))]
    assert kinds.count("command") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set_interval", "0"], "value must be 1 to 3600 s, got 0"),
        (["set_interval", "soon"], "value must be a whole number, got 'soon'"),
        (["set_interval"], "set_interval takes VALUE"),
        (["reboot", "3"], "reboot takes no value"),
        (["ota", "http://h/x"], "ota takes URL SHA256 VERSION"),
        (
            ["ota", "http://h/x/manifest.json", "abc", "1.0.1"],
            "sha256: the manifest's SHA-256, 64 lower-case hex digits, got 'abc'",
        ),
        (["ota", "ftp://h/m.json", "a" * 64, "1.0.1"], "url: the manifest's http:// URL"),
    ],
)
def test_bad_command_values_are_refused_before_sending(running, args, message):
    env, db, registry, _, _, device = running
    out = cli(env, "--db", db, "devices", "command", device.node_name, *args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert [e.kind for e in registry.events(device)].count("command") == 0


def test_ota_takes_text_values_and_reaches_the_device(running):
    """ota's arguments are text (station/commands.py TextArg), not whole numbers; the
    device accepts the command, then reports that it could not fetch the manifest."""
    env, db, registry, _, _, device = running
    url = "http://127.0.0.1:9/" + "b" * 64 + "/manifest.json"  # port 9: nothing listens
    out = cli(
        env, "--db", db, "devices", "command", device.node_name, "ota", url, "b" * 64, "9.9.9"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(f"{device.node_name}: Update firmware: done")
    sent = [e for e in registry.events(registry.device(device.node_name)) if e.kind == "command"]
    assert len(sent) == 1 and "ota" in sent[0].message


def test_unknown_command_and_device_are_clear_errors(running):
    env, db, *_ = running
    out = cli(env, "--db", db, "devices", "command", "esp32_dht11_001", "selfdestruct")
    assert out.returncode == 2 and "invalid choice: 'selfdestruct'" in out.stderr
    assert "station devices command" in out.stderr  # its own usage, not the top level
    out = cli(env, "--db", db, "devices", "command", "esp32_dht11_999", "identify")
    assert out.returncode == 2 and "no device 'esp32_dht11_999'" in out.stderr


def test_factory_reset_asks_first_and_needs_yes_without_a_terminal(running):
    env, db, _, _, world, device = running
    out = cli(env, "--db", db, "devices", "command", device.node_name, "factory_reset")
    assert out.returncode == 2 and "add --yes" in out.stderr
    assert world.fleet.devices[0].config() is not None  # nothing was sent


def test_remove_from_the_cli_revokes_the_login_on_the_running_broker(running):
    env, db, registry, broker, world, device = running
    node = device.node_name
    wait_for(
        lambda: (
            f"homeassistant/sensor/{node}_temperature/config"
            in broker.retained_topics("homeassistant/#")
        ),
        10,
    )
    out = cli(env, "--db", db, "devices", "remove", node)
    assert out.returncode == 2 and "add --yes" in out.stderr
    assert [d.node_name for d in registry.devices()] == [node]

    out = cli(env, "--db", db, "devices", "remove", node, "--yes")
    assert out.returncode == 0, out.stderr
    assert "Removed esp32_dht11_001; cleared 4 retained topics" in out.stdout
    assert registry.devices() == []
    wait_for(lambda: broker.access._device(node) is None and node not in broker.hub.live, 5)
    assert not [t for t in broker.retained_topics("#") if node in t]
    # The device, still holding its token, is refused when it tries again.
    sim = world.fleet.devices[0]
    sim.stop()
    sim.start()
    wait_for(lambda: "connection refused, code 5" in sim.log_text(), 20)
    assert node not in broker.hub.live


def test_without_a_running_station_commands_say_so(running):
    env, db, registry, _, _, device = running
    control.withdraw(control.announcement_path(registry.location))
    out = cli(env, "--db", db, "devices", "command", device.node_name, "identify")
    assert out.returncode == 2
    assert "No station is running for this registry" in out.stderr
