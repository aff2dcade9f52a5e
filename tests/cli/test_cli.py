"""The `station` command as a user runs it: real processes, real files, real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from support import free_port, wait_for

from station.cli import build_parser, main
from station.registry import Registry


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["STATION_DATA_DIR"] = str(tmp_path / "data")
    e["STATION_CONFIG"] = str(tmp_path / "settings.json")
    return e


def station(*args: str) -> list[str]:
    return [sys.executable, "-m", "station", *args]


def test_help_lists_subcommands():
    text = build_parser().format_help()
    for cmd in ("broker", "devices"):
        assert cmd in text


def test_devices_table_and_json(tmp_path, capsys):
    db = str(tmp_path / "r.db")
    reg = Registry(db)
    issued = reg.register_device(name="Living Room Sensor")
    reg.set_chip_id(issued.device, "A4CF12EF5678")
    reg.close()
    assert main(["--db", db, "devices"]) == 0
    out = capsys.readouterr().out
    assert "esp32_dht11_001" in out and "Living Room Sensor" in out and "A4CF12EF5678" in out
    assert "0 online / 1 devices" in out
    assert issued.token not in out
    assert main(["--db", db, "devices", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[0])
    assert doc["node_name"] == "esp32_dht11_001" and doc["online"] is False
    assert "token" not in json.dumps(doc)


def test_bad_settings_file_is_a_clear_error(tmp_path, capsys):
    cfg = tmp_path / "settings.json"
    cfg.write_text('{"broker": {"port": 0.5}}')
    assert main(["--config", str(cfg), "--db", str(tmp_path / "r.db"), "devices"]) == 2
    assert "broker.port must be int" in capsys.readouterr().err


def test_broker_command_serves_devices_and_stops_on_sigint(tmp_path, env):
    db = str(tmp_path / "r.db")
    reg = Registry(db)
    issued = reg.register_device()
    reg.close()
    port = free_port()
    proc = subprocess.Popen(
        station("--db", db, "broker", "--bind", "127.0.0.1", "--port", str(port)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"broker listening on 127.0.0.1:{port}"
        import paho.mqtt.client as mqtt

        node = issued.device.node_name
        rc = {}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=node)
        c.username_pw_set(node, issued.token)
        c.on_connect = lambda *a: rc.setdefault("rc", a[3])
        c.connect("127.0.0.1", port)
        c.loop_start()
        wait_for(lambda: "rc" in rc)
        assert rc["rc"] == 0
        c.publish(
            f"{issued.device.topic_prefix}/status", "online", qos=1, retain=True
        ).wait_for_publish(3)
        c.publish(
            f"{issued.device.topic_prefix}/state", '{"temperature": 21.5, "humidity": 40}', qos=1
        ).wait_for_publish(3)
        c.loop_stop()
        c.disconnect()
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "esp32_dht11_001 online — provisioned" in err
    assert "21.5 °C" in err
    assert issued.token not in err
    reg = Registry(db)
    assert reg.device(node).is_provisioned
    reg.close()


def test_broker_command_port_taken(tmp_path, env):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run(
            station(
                "--db", str(tmp_path / "r.db"), "broker", "--bind", "127.0.0.1", "--port", str(port)
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_subcommand_without_display_runs_headless(tmp_path, env):
    cfg = tmp_path / "settings.json"
    # A WiFi backend named explicitly: a real station, not the demo.
    cfg.write_text(
        '{"broker": {"bind_host": "127.0.0.1", "port": 0}, '
        '"provisioning": {"wifi_backend": "manual"}}'
    )
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("QT_QPA_PLATFORM", None)
    proc = subprocess.Popen(
        station("--config", str(cfg), "--db", str(tmp_path / "r.db")),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("broker listening on 127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "No display found" in err


def test_no_display_and_no_wifi_control_runs_the_demo_in_the_terminal(tmp_path, env):
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("QT_QPA_PLATFORM", None)
    proc = subprocess.Popen(
        station(), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "live readings follow" in line:
                break
        for line in proc.stdout:  # the first live reading
            lines.append(line)
            if "°C" in line:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    text = "".join(lines)
    assert "6 of 6 devices online" in text, text + err
    assert "°C" in text
    assert "running the demo in the terminal" in err
    assert proc.returncode == 0, err


def test_in_process_main_gives_the_callers_signal_handlers_back(tmp_path, monkeypatch):
    """A command's Ctrl-C handler lasts as long as the command: a later Ctrl-C in the
    calling program (a test run, a script) must not reach a queue that has finished."""
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STATION_CONFIG", str(tmp_path / "settings.json"))
    monkeypatch.setenv("STATION_DEMO_TIMING", "fast")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert main(["provision", "--demo", "1"]) == 0
    assert {s: signal.getsignal(s) for s in before} == before
