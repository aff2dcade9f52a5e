"""`station backend-api` as a user runs it: a real process, real sockets on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import paho.mqtt.client as mqtt
import requests
from support import wait_for

from station.cli import build_parser
from station.registry import Registry


def test_help_lists_backend_api():
    assert "backend-api" in build_parser().format_help()


def test_backend_api_command_registers_tracks_and_stops_on_sigint(tmp_path):
    db = str(tmp_path / "r.db")
    reg = Registry(db)
    reg.add_home("Home", "MyHomeWiFi")
    reg.close()
    env = {
        **os.environ,
        "STATION_DATA_DIR": str(tmp_path / "data"),
        "STATION_CONFIG": str(tmp_path / "settings.json"),
    }
    cmd = [sys.executable, "-m", "station", "--db", db, "backend-api", "--bind", "127.0.0.1"]
    cmd += ["--port", "0", "--broker-port", "0", "--advertise", "127.0.0.1"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    token = ""
    try:
        broker_line = proc.stdout.readline()
        api_line = proc.stdout.readline()
        broker_port = int(re.fullmatch(r"broker listening on 127\.0\.0\.1:(\d+)\n", broker_line)[1])
        api_port = int(re.fullmatch(r"backend API listening on 127\.0\.0\.1:(\d+)\n", api_line)[1])
        url = f"http://127.0.0.1:{api_port}"
        body = {"chip_id": "temp_1234567890", "home_id": 1, "device_name": "Living Room Sensor"}
        answer = requests.post(f"{url}/api/provision/register/", json=body, timeout=5).json()
        cfg = answer["mqtt_config"]
        token = cfg["password"]
        assert (cfg["broker_host"], cfg["broker_port"]) == ("127.0.0.1", broker_port)
        # A device with the issued credentials comes online on the same process's broker.
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg["node_name"])
        c.username_pw_set(cfg["username"], token)
        c.connect("127.0.0.1", broker_port, keepalive=30)
        c.loop_start()
        c.publish(f"{cfg['topic_prefix']}/status", "online", qos=1, retain=True).wait_for_publish(3)
        c.disconnect()
        c.loop_stop()
        status_url = f"{url}/api/provision/status/{answer['provisioning_id']}"
        wait_for(lambda: requests.get(status_url, timeout=5).json()["is_provisioned"], 10, 0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "advertising a loopback address" in err
    assert token and token not in err
