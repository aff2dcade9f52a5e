"""PROTOCOL.md section 1 on the real firmware: every endpoint with the seed's bodies,
then every row of the validation table. A bad request must change nothing stored."""

from __future__ import annotations

import json
import time

import pytest
from fw_helpers import HOME_PASSWORD, HOME_SSID, api_for, seed_mqtt_body

from station.sim.air import Air

SEED_WIFI = {"ssid": "MyHomeWiFi", "password": "mypassword"}


def test_info_is_the_seed_step_3_answer(api, device):
    r = api.get("/api/info")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {
        "chip_id": "A4CF12EF5678",
        "model": "esp32-dht11",
        "firmware": "1.0.0",
        "mac": "A4:CF:12:EF:56:78",
        "state": "setup",
        "wifi_configured": False,
        "mqtt_configured": False,
        "mqtt_tls": False,  # issue 10: added to the seed's fields, never the CA itself
    }


def test_setup_ap_is_named_after_the_chip_and_serves_the_api(device, air):
    ap = device.wait_for_setup_ap()
    assert ap.ssid == "esp32-dht11-Setup-EF5678"
    assert ap.bssid == "A4:CF:12:EF:56:79"  # SoftAP MAC = base MAC + 1
    assert ap.passphrase == "12345678"
    assert ap.security == "WPA2-PSK"
    assert air.join_setup_ap("esp32-dht11-Setup-EF5678", "12345678").chip_id == "A4CF12EF5678"


def test_scan_lists_audible_networks_strongest_first(air, devices):
    air.add_home_network("Weak", "password1", rssi=-80)
    air.add_home_network(HOME_SSID, HOME_PASSWORD, rssi=-51)
    air.add_home_network("OpenCafe", "", rssi=-60)
    dev = devices()
    other = devices("A4CF12000042")
    other.wait_for_setup_ap()
    nets = api_for(dev).get("/api/scan").json()["networks"]
    by_ssid = {n["ssid"]: n for n in nets}
    assert by_ssid[HOME_SSID] == {"ssid": HOME_SSID, "rssi": -51, "secure": True}
    assert by_ssid["OpenCafe"]["secure"] is False
    assert "esp32-dht11-Setup-000042" in by_ssid  # another device's AP is on the air too
    assert "esp32-dht11-Setup-EF5678" not in by_ssid  # but not its own
    rssis = [n["rssi"] for n in nets]
    assert rssis == sorted(rssis, reverse=True)


def test_status_before_any_credentials_is_idle(api):
    assert api.get("/api/status").json() == {"wifi": "idle", "ip": None, "broker": "unknown"}


def test_the_seed_sequence_stores_the_config_and_restarts(home, device, api):
    assert api.post("/api/wifi", SEED_WIFI).json() == {"ok": True}
    assert api.post("/api/mqtt", seed_mqtt_body()).json() == {"ok": True}
    info = api.get("/api/info").json()
    assert info["wifi_configured"] is True and info["mqtt_configured"] is True
    assert device.config() == {"wifi": SEED_WIFI, "mqtt": seed_mqtt_body()}
    boots = device.boots
    r = api.post("/api/restart")
    # The whole response arrives before the reboot.
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert device.boots == boots
    device.wait_for_reboot(boots)
    assert device.config()["wifi"] == SEED_WIFI  # flash survives the reboot


def test_restart_without_config_comes_back_in_setup(device, api):
    boots = device.boots
    assert api.post("/api/restart").json() == {"ok": True}
    device.wait_for_reboot(boots)
    assert api_for(device).get("/api/info").json()["state"] == "setup"


def test_mqtt_username_and_password_are_optional_extras(device, api):
    body = {**seed_mqtt_body(), "username": "esp32_dht11_001", "password": "tok-123"}
    assert api.post("/api/mqtt", body).json() == {"ok": True}
    assert device.config()["mqtt"] == body


def test_unknown_fields_are_ignored(device, api):
    assert api.post("/api/wifi", {**SEED_WIFI, "bssid": "aa:bb", "channel": 6}).json() == {
        "ok": True
    }
    assert device.config()["wifi"] == SEED_WIFI


def test_open_network_takes_an_empty_password(device, api):
    assert api.post("/api/wifi", {"ssid": "OpenCafe", "password": ""}).json() == {"ok": True}


def test_curl_style_form_content_type_is_still_json(device, api):
    # `curl -d '{...}'` sends application/x-www-form-urlencoded: the body is what counts.
    r = api.post(
        "/api/wifi",
        data=json.dumps(SEED_WIFI),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.json() == {"ok": True}


def test_boundary_values_are_accepted(device, api):
    ok = [
        ("/api/wifi", {"ssid": "x" * 32, "password": "p" * 63}),
        ("/api/wifi", {"ssid": "é" * 16, "password": "p" * 8}),  # 32 bytes of UTF-8
        ("/api/mqtt", {**seed_mqtt_body(), "port": 1}),
        ("/api/mqtt", {**seed_mqtt_body(), "port": 65535}),
        (
            "/api/mqtt",
            {
                **seed_mqtt_body(),
                "broker": "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61,
            },
        ),
        ("/api/mqtt", {**seed_mqtt_body(), "broker": "station.local."}),
        ("/api/mqtt", {**seed_mqtt_body(), "topic_prefix": "t" * 128, "node_name": "N" * 32}),
        ("/api/mqtt", {**seed_mqtt_body(), "topic_prefix": "home/ünï/x", "node_name": "a-b_C-9"}),
        ("/api/mqtt", {**seed_mqtt_body(), "topic_prefix": "home/😀"}),
        ("/api/wifi", {"ssid": "x", "password": "€" * 21}),  # 21 characters, 63 bytes
        ("/api/wifi", {"ssid": "😀" * 8, "password": "p" * 8}),  # 32 bytes (escaped pairs)
        ("/api/mqtt", {**seed_mqtt_body(), "username": "u" * 128, "password": "p" * 256}),
    ]
    for path, body in ok:
        r = api.post(path, body)
        assert r.status_code == 200, (body, r.text)


# --- the validation table -----------------------------------------------------------------

WIFI_BAD = [
    ("ssid", {"password": "mypassword"}),
    ("ssid", {"ssid": "", "password": "mypassword"}),
    ("ssid", {"ssid": "x" * 33, "password": "mypassword"}),
    ("ssid", {"ssid": "é" * 17, "password": "mypassword"}),  # 17 chars, 34 bytes
    ("ssid", {"ssid": 42, "password": "mypassword"}),
    ("ssid", {"ssid": None, "password": "mypassword"}),
    ("password", {"ssid": "MyHomeWiFi"}),
    ("password", {"ssid": "MyHomeWiFi", "password": "short"}),
    ("password", {"ssid": "MyHomeWiFi", "password": "1234567"}),
    ("password", {"ssid": "MyHomeWiFi", "password": "p" * 64}),
    ("password", {"ssid": "MyHomeWiFi", "password": 12345678}),
    ("password", {"ssid": "MyHomeWiFi", "password": "é" * 32}),  # 32 characters, 64 bytes
    ("password", {"ssid": "MyHomeWiFi", "password": "€" * 22}),  # 22 characters, 66 bytes
    ("password", {"ssid": "MyHomeWiFi", "password": "pass\udc00word"}),  # lone surrogate
    ("ssid", {"ssid": "😀" * 9, "password": "mypassword"}),  # 36 bytes
    ("ssid", {"ssid": "a\ud800b", "password": "mypassword"}),  # lone high surrogate
    ("ssid", {"ssid": "\ude00\ud83d", "password": "mypassword"}),  # a pair the wrong way round
    ("ssid", {"ssid": "x\ud83d", "password": "mypassword"}),  # high surrogate at the very end
]

MQTT_BAD = [
    ("broker", {"broker": ""}),
    ("broker", {"broker": "a" * 254}),
    ("broker", {"broker": "bad host"}),
    ("broker", {"broker": "under_score.local"}),
    ("broker", {"broker": "-lead.local"}),
    ("broker", {"broker": "999.168.1.1"}),
    ("broker", {"broker": "192.168.1"}),
    ("broker", {"broker": "l" * 64 + ".local"}),
    ("broker", {"broker": 192}),
    ("port", {"port": 0}),
    ("port", {"port": 65536}),
    ("port", {"port": -1}),
    ("port", {"port": "1883"}),
    ("port", {"port": 1883.0}),
    ("port", {"port": True}),
    ("port", {"port": None}),
    ("topic_prefix", {"topic_prefix": ""}),
    ("topic_prefix", {"topic_prefix": "t" * 129}),
    ("topic_prefix", {"topic_prefix": "home/+/x"}),
    ("topic_prefix", {"topic_prefix": "home/#"}),
    ("topic_prefix", {"topic_prefix": "home/\u0000x"}),
    ("topic_prefix", {"topic_prefix": "$SYS/x"}),
    ("topic_prefix", {"topic_prefix": "/home/x"}),
    ("topic_prefix", {"topic_prefix": "home/x/"}),  # would make "home/x//status"
    ("topic_prefix", {"topic_prefix": "home/\tx"}),
    ("topic_prefix", {"topic_prefix": "home/\x7fx"}),
    ("topic_prefix", {"topic_prefix": "home/\ud800x"}),
    ("node_name", {"node_name": ""}),
    ("node_name", {"node_name": "n" * 33}),
    ("node_name", {"node_name": "has space"}),
    ("node_name", {"node_name": "dot.name"}),
    ("node_name", {"node_name": "slash/name"}),
    ("node_name", {"node_name": "ünicode"}),
    ("username", {"username": 7}),
    ("username", {"username": "u" * 129}),
    ("username", {"username": "u\ud83d"}),
    ("password", {"username": "u", "password": "p" * 257}),
    ("password", {"username": "u", "password": "\ude00tok"}),
    ("password", {"password": "tok"}),  # a password needs a username in MQTT 3.1.1
    ("password", {"username": "u", "password": ["tok"]}),
]
MISSING = [(f, None) for f in ("broker", "port", "topic_prefix", "node_name")]


def _expect_400(r, code: str, field: str | None = None) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == code
    assert isinstance(body["detail"], str) and body["detail"]
    if field:
        assert body["field"] == field


def test_every_invalid_wifi_field_is_refused_and_changes_nothing(configured, device):
    api, before = configured
    for field, body in WIFI_BAD:
        _expect_400(api.post("/api/wifi", body), "invalid_field", field)
        assert device.config() == before, body
    assert api.get("/api/status").json()["wifi"] != "idle"


def test_every_invalid_mqtt_field_is_refused_and_changes_nothing(configured, device):
    api, before = configured
    for field, change in MQTT_BAD + MISSING:
        body = seed_mqtt_body()
        if change is None:
            del body[field]
        else:
            body.update(change)
        _expect_400(api.post("/api/mqtt", body), "invalid_field", field)
        assert device.config() == before, body


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"not json", b"[1, 2]", b'"text"', b"42", b"null", b'{"ssid": "\xff\xfe"}']
)
def test_bodies_that_are_not_a_json_object_are_bad_json(configured, device, raw):
    api, before = configured
    for path in ("/api/wifi", "/api/mqtt"):
        _expect_400(
            api.post(path, data=raw, headers={"Content-Type": "application/json"}), "bad_json"
        )
    assert device.config() == before


def test_a_body_over_1024_bytes_is_413_too_large(configured, device):
    api, before = configured
    big = {**SEED_WIFI, "pad": "x" * 1100}
    for path in ("/api/wifi", "/api/nowhere"):
        r = api.post(path, big)
        assert r.status_code == 413 and r.json()["error"] == "too_large"
    # /api/mqtt takes up to 6144 bytes: room for a 4096-character PEM CA (issue 10)
    r = api.post("/api/mqtt", {**SEED_WIFI, "pad": "x" * 6200})
    assert r.status_code == 413 and r.json() == {
        "error": "too_large",
        "detail": "body exceeds 6144 bytes",
    }
    assert device.config() == before
    exactly = json.dumps({**SEED_WIFI, "pad": ""})
    exactly = exactly.replace('"pad": ""', '"pad": "' + "x" * (1024 - len(exactly)) + '"')
    assert len(exactly.encode()) == 1024
    assert api.post("/api/wifi", data=exactly).status_code == 200


def test_unknown_path_is_404_and_wrong_method_405(configured, device):
    api, before = configured
    r = api.get("/api/nothing")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert api.get("/").status_code == 404
    for method, path in [
        ("GET", "/api/wifi"),
        ("GET", "/api/mqtt"),
        ("GET", "/api/restart"),
        ("POST", "/api/info"),
        ("DELETE", "/api/wifi"),
        ("PUT", "/api/mqtt"),
    ]:
        r = api.session.request(method, api.base + path, timeout=5)
        assert r.status_code == 405, (method, path)
        assert r.json()["error"] == "method_not_allowed"
        assert r.headers["Allow"] == ("GET" if path == "/api/info" else "POST")
    assert device.config() == before
    time.sleep(0.3)
    assert device.running  # none of it was a restart


# --- text beyond the Basic Multilingual Plane ----------------------------------------


def test_an_escaped_emoji_ssid_is_stored_and_joined_as_utf8(air, device, api):
    # json.dumps escapes U+1F600 as the surrogate pair \ud83d\ude00 (what a station
    # with ensure_ascii=True sends). MicroPython's json would keep it as two 3-byte
    # halves: the wrong bytes on flash and on the radio.
    ssid = "Home 😀"
    air.add_home_network(ssid, HOME_PASSWORD)
    raw = json.dumps({"ssid": ssid, "password": HOME_PASSWORD})
    assert "\\ud83d\\ude00" in raw
    assert api.post("/api/wifi", data=raw).json() == {"ok": True}
    assert device.config()["wifi"]["ssid"] == ssid  # valid UTF-8 on flash
    assert "😀".encode() in (device.flash_dir / "config.json").read_bytes()
    # The simulated radio looks the network up by the SSID's UTF-8 bytes.
    status = api.status_until(lambda s: s["wifi"] != "connecting")
    assert status["wifi"] == "connected"


def test_a_lone_surrogate_is_refused_and_changes_nothing(configured, device):
    api, before = configured
    for path, body, field in [
        ("/api/wifi", {"ssid": "home\ud800x", "password": HOME_PASSWORD}, "ssid"),
        ("/api/mqtt", {**seed_mqtt_body(), "topic_prefix": "home/\ud800x"}, "topic_prefix"),
    ]:
        raw = json.dumps(body)  # "\ud800" on the wire
        _expect_400(api.post(path, data=raw), "invalid_field", field)
        assert device.config() == before


def test_the_simulated_air_counts_password_bytes_like_the_device(tmp_path):
    air = Air(tmp_path / "air")
    air.add_home_network("Net", "€" * 21)  # 63 bytes
    with pytest.raises(ValueError):
        air.add_home_network("Net", "é" * 32)  # 32 characters, 64 bytes


def test_what_micropython_json_would_read_leniently_is_bad_json(configured, device):
    # firmware/README.md "Strict JSON": MicroPython's json.loads does not insist on
    # commas and colons, drops a key without a value and reads 01883 as 1883. The
    # device used to accept these; now the body is checked against RFC 8259 first
    # (every case: test_strict_json.py).
    api, before = configured
    for path, raw in [
        ("/api/wifi", b'{"ssid" "OtherNet" "password" "password1",}'),
        ("/api/mqtt", json.dumps(seed_mqtt_body()).replace("1883", "01883").encode()),
        ("/api/wifi", b'{"ssid": "X", "password"}'),
    ]:
        _expect_400(api.post(path, data=raw), "bad_json")
        assert device.config() == before
