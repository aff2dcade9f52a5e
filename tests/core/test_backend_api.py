"""The seed's backend API (PROTOCOL.md section 3) served by the station, with the seed's
exact bodies, against a real registry (SQLite file) and the real embedded broker."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
import requests
from support import wait_for

from station.backend_api import BackendApi, BackendApiStartError, iso_utc
from station.registry.credentials import hash_token
from station.registry.models import Device, utcnow

SEED_REGISTER = {"chip_id": "temp_1234567890", "home_id": 1, "device_name": "Living Room Sensor"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture
def seed_home(registry):
    home = registry.add_home("Home", "MyHomeWiFi")
    assert home.id == 1  # the seed's home_id
    return home


@pytest.fixture
def api(registry, station_broker, seed_home) -> Iterator[BackendApi]:
    a = BackendApi(
        registry, broker_host="127.0.0.1", broker=station_broker, bind_host="127.0.0.1", port=0
    )
    a.start()
    yield a
    a.stop()


def post(api: BackendApi, body: object, path: str = "/api/provision/register/", **kw):
    if "data" not in kw:
        kw["json"] = body
    return requests.post(api.url + path, timeout=5, **kw)


def status(api: BackendApi, pid: str) -> requests.Response:
    return requests.get(f"{api.url}/api/provision/status/{pid}", timeout=5)


def test_register_with_the_seed_body(api, registry, station_broker, seed_home):
    r = post(api, SEED_REGISTER)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"provisioning_id", "mqtt_config"}
    cfg = body["mqtt_config"]
    token = cfg.pop("password")
    # The seed's fields with the seed's values, plus the credentials PROTOCOL.md adds.
    assert cfg == {
        "broker_host": "127.0.0.1",
        "broker_port": station_broker.port,
        "topic_prefix": "home/esp32_dht11_001",
        "node_name": "esp32_dht11_001",
        "username": "esp32_dht11_001",
    }
    job = registry.job(body["provisioning_id"])
    assert job.requested_chip_id == "temp_1234567890"
    assert job.home.id == seed_home.id
    assert job.device.name == "Living Room Sensor"
    assert job.device.token_hash == hash_token(token)
    # The next registration gets the next node name.
    assert post(api, SEED_REGISTER).json()["mqtt_config"]["node_name"] == "esp32_dht11_002"


def test_status_before_the_device_is_online(api):
    pid = post(api, SEED_REGISTER).json()["provisioning_id"]
    r = status(api, pid)
    assert r.status_code == 200
    assert r.json() == {
        "provisioning_id": pid,
        "is_provisioned": False,
        "device_id": None,
        "connected_at": None,
    }


def test_unknown_id_is_404_not_found(api):
    for pid in ("abc123", "x" * 300, "%00"):
        r = status(api, pid)
        assert r.status_code == 404
        assert r.json() == {"error": "not_found"}


def test_the_device_going_online_marks_it_provisioned(api, registry, station_broker):
    """Seed step 4 behind the scenes: first `online` on the device's prefix."""
    answer = post(api, SEED_REGISTER).json()
    cfg, pid = answer["mqtt_config"], answer["provisioning_id"]
    before = utcnow().replace(microsecond=0)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg["node_name"])
    c.username_pw_set(cfg["username"], cfg["password"])
    c.will_set(f"{cfg['topic_prefix']}/status", "offline", qos=1, retain=True)
    c.connect(cfg["broker_host"], cfg["broker_port"], keepalive=30)
    c.loop_start()
    try:
        c.publish(f"{cfg['topic_prefix']}/status", "online", qos=1, retain=True).wait_for_publish(3)
        done = wait_for(lambda: status(api, pid).json()["is_provisioned"], 5, 0.05)
        assert done is True
    finally:
        c.disconnect()
        c.loop_stop()
    body = status(api, pid).json()
    device = Device.get(Device.node_name == cfg["node_name"])
    assert body["device_id"] == device.id
    assert ISO_Z.match(body["connected_at"]), body
    connected = dt.datetime.fromisoformat(body["connected_at"].removesuffix("Z"))
    assert before <= connected <= utcnow() + dt.timedelta(seconds=1)


def seed_with(**change: object) -> bytes:
    return json.dumps({**SEED_REGISTER, **change}).encode()


BAD_BODIES = [
    (b"not json", "bad_json", None),
    (b"[1, 2]", "bad_json", None),
    (b"\xff\xfe", "bad_json", None),
    (json.dumps({"chip_id": "temp_1", "device_name": "x"}).encode(), "invalid_field", "home_id"),
    (seed_with(home_id="1"), "invalid_field", "home_id"),
    (seed_with(home_id=True), "invalid_field", "home_id"),
    (seed_with(home_id=99), "invalid_field", "home_id"),  # no such home
    (seed_with(chip_id=1234567890), "invalid_field", "chip_id"),
    (seed_with(chip_id="t" * 65), "invalid_field", "chip_id"),
    (seed_with(device_name=7), "invalid_field", "device_name"),
    (seed_with(device_name="n" * 101), "invalid_field", "device_name"),
]


@pytest.mark.parametrize(("raw", "code", "field"), BAD_BODIES)
def test_bad_bodies_are_400_with_the_field(api, registry, raw, code, field):
    r = post(api, None, data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == code and body["detail"]
    assert body.get("field") == field
    assert registry.devices() == []  # nothing was registered


def test_optional_fields_and_trailing_slashes(api, registry):
    r = post(api, {"home_id": 1}, path="/api/provision/register")
    assert r.status_code == 200
    job = registry.job(r.json()["provisioning_id"])
    assert job.requested_chip_id is None and job.device.name == ""
    assert requests.get(f"{api.url}/api/provision/status/{job.provisioning_id}/", timeout=5).ok


def test_http_errors_are_json(api):
    r = requests.get(api.url + "/api/provision/register/", timeout=5)
    assert r.status_code == 405 and r.json() == {"error": "method_not_allowed"}
    assert "POST" in r.headers["Allow"]
    r = requests.get(api.url + "/nothing", timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "not_found"}
    r = post(api, None, data=b"x" * 20000)
    assert r.status_code == 413 and r.json() == {"error": "too_large"}


def test_the_token_is_never_logged(api, caplog):
    caplog.set_level("DEBUG")
    token = post(api, SEED_REGISTER).json()["mqtt_config"]["password"]
    assert "esp32_dht11_001" in caplog.text  # the registration was logged...
    assert token not in caplog.text  # ...without its secret


def test_a_taken_port_is_a_clear_start_error(registry, seed_home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        api = BackendApi(
            registry, broker_host="127.0.0.1", broker_port=1883, bind_host="127.0.0.1", port=port
        )
        with pytest.raises(BackendApiStartError, match="already in use"):
            api.start()
    assert not api.running


def test_iso_utc():
    assert iso_utc(dt.datetime(2026, 1, 20, 21, 30, 0, 123456)) == "2026-01-20T21:30:00Z"
    aware = dt.datetime(2026, 1, 20, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert iso_utc(aware) == "2026-01-20T21:30:00Z"
    assert iso_utc(None) is None


def test_seed_flow_end_to_end_with_a_simulated_device(api, air, device, client, registry):
    """The seed's five steps with the station as backend and a real-firmware device:
    register (1), the device's API (3) with the mqtt_config from step 1, status (4)."""
    answer = post(api, SEED_REGISTER).json()
    cfg, pid = answer["mqtt_config"], answer["provisioning_id"]
    target = f"{cfg['broker_host']}:{cfg['broker_port']}"
    air.add_home_network("MyHomeWiFi", "mypassword", reach=[target])
    chip = client.info().chip_id
    client.send_wifi("MyHomeWiFi", "mypassword")
    client.send_mqtt(
        cfg["broker_host"],
        cfg["broker_port"],
        cfg["topic_prefix"],
        cfg["node_name"],
        username=cfg["username"],
        password=cfg["password"],
    )
    assert client.wait_for_trial(10, poll=0.1).broker == "reachable"
    client.restart()
    # Rebooted, joined the home network, connected to the broker, published `online`.
    wait_for(lambda: status(api, pid).json()["is_provisioned"], 15, 0.1)
    body = status(api, pid).json()
    assert body["device_id"] == registry.job(pid).device.id
    assert ISO_Z.match(body["connected_at"])
    # The device reported its real chip id on <prefix>/info.
    wait_for(lambda: Device.get_by_id(body["device_id"]).chip_id == chip, 5, 0.05)


def _seed_app_flow(api, air, client) -> str:
    """The seed's exact flow: register, then the device gets the seed's /api/mqtt body
    (no username, no password), as the seed's mobile app sends it."""
    answer = post(api, SEED_REGISTER).json()
    cfg, pid = answer["mqtt_config"], answer["provisioning_id"]
    target = f"{cfg['broker_host']}:{cfg['broker_port']}"
    air.add_home_network("MyHomeWiFi", "mypassword", reach=[target])
    client.info()
    client.send_wifi("MyHomeWiFi", "mypassword")
    client.send_mqtt(cfg["broker_host"], cfg["broker_port"], cfg["topic_prefix"], cfg["node_name"])
    client.restart()
    return pid


def test_seed_app_flow_without_credentials_is_refused_by_default(
    api, air, device, client, station_broker
):
    pid = _seed_app_flow(api, air, client)
    wait_for(lambda: "refused, code 5" in device.log_text(), 20, 0.1)
    assert status(api, pid).json()["is_provisioned"] is False
    assert station_broker.hub.denied >= 1


def test_seed_app_devices_switch_lets_the_seed_flow_reach_is_provisioned(
    registry, station_broker, seed_home, air, device, client, caplog
):
    station_broker.access.seed_app_devices = True  # what broker.seed_app_devices sets
    a = BackendApi(
        registry,
        broker_host="127.0.0.1",
        broker=station_broker,
        bind_host="127.0.0.1",
        port=0,
        seed_app_devices=True,
    )
    a.start()
    try:
        pid = _seed_app_flow(a, air, client)
        wait_for(lambda: status(a, pid).json()["is_provisioned"], 20, 0.1)
        assert registry.job(pid).device.seed_app_login is True
    finally:
        a.stop()
