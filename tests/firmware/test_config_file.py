"""The stored config.json: written as .tmp + rename, so a power cut leaves the old or
the new file. Whatever a cut (or a corrupt flash) leaves behind, the device boots into
setup mode with what is still valid: never a crash, never a reboot loop."""

from __future__ import annotations

import json

import pytest
from fw_helpers import HOME_PASSWORD, HOME_SSID, api_for, seed_mqtt_body

CHIP = "A4CF12EF5678"
WIFI = {"ssid": HOME_SSID, "password": HOME_PASSWORD}
WIFI_ONLY = json.dumps({"wifi": WIFI})  # valid, but setup mode: no MQTT config yet


@pytest.mark.parametrize(
    ("files", "wifi_kept"),
    [
        ({"config.json": b'{"wifi": {"ssid": "MyHo'}, False),  # torn file
        ({"config.json": b'{"wifi": {"ss', "config.json.tmp": b'{"wifi'}, False),  # both torn
        ({"config.json.tmp": b'{"wifi": {"ssid"'}, False),  # cut during the first save
        ({"config.json": WIFI_ONLY.encode(), "config.json.tmp": b'{"mqtt": {'}, True),
        ({"config.json.tmp": WIFI_ONLY.encode()}, True),  # FAT: cut between remove and rename
        ({"config.json": b'{"wifi": {"ss', "config.json.tmp": WIFI_ONLY.encode()}, True),
        ({"config.json": b"[1, 2, 3]"}, False),
        ({"config.json": b"\xff\xfe\x00garbage"}, False),
        ({"config.json": b'{"wifi": {"ssid": "", "password": 5}, "mqtt": 7}'}, False),
    ],
)
def test_a_torn_or_corrupt_config_means_setup_mode(air, devices, files, wifi_kept):
    flash = air.flash_dir(CHIP)
    flash.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (flash / name).write_bytes(data)
    dev = devices(CHIP)
    api = api_for(dev)
    info = api.get("/api/info").json()
    assert info["state"] == "setup"
    assert info["wifi_configured"] is wifi_kept and info["mqtt_configured"] is False
    # And it takes a new config, written whole.
    assert api.post("/api/mqtt", seed_mqtt_body()).json() == {"ok": True}
    stored = dev.config()
    assert stored["mqtt"] == seed_mqtt_body()
    assert ("wifi" in stored) is wifi_kept
    assert not (flash / "config.json.tmp").exists()
    assert dev.boots == 1 and "Traceback" not in dev.log_text()
