"""The air folder API (CPython side) and its file format, which the host board reads too."""

from __future__ import annotations

import json
import threading

import pytest

from station.sim.air import Air, read_json, ssid_key, write_json


def test_home_network_round_trip_and_file_format(air):
    net = air.add_home_network(
        "MyHomeWiFi", "mypassword", reach={"192.168.29.91:1883": "127.0.0.1:41883"}, rssi=-51
    )
    assert air.home_network("MyHomeWiFi") == net
    assert net.secure
    raw = json.loads((air.root / "networks" / f"{ssid_key('MyHomeWiFi')}.json").read_text())
    assert raw["ssid"] == "MyHomeWiFi" and raw["password"] == "mypassword"
    assert raw["reach"] == {"192.168.29.91:1883": "127.0.0.1:41883"}
    assert raw["rssi"] == -51 and raw["ip_prefix"] == "192.168.29."
    assert len(raw["bssid"].split(":")) == 6


def test_reach_list_means_same_address(air):
    net = air.add_home_network("Lab", "password1", reach=["127.0.0.1:1883"])
    assert net.reach == {"127.0.0.1:1883": "127.0.0.1:1883"}


@pytest.mark.parametrize("reach", [["nohostport"], ["host:0"], ["host:99999"], {"a:1": "b"}])
def test_bad_reach_is_refused(air, reach):
    with pytest.raises(ValueError):
        air.add_home_network("Lab", "password1", reach=reach)


@pytest.mark.parametrize(
    ("ssid", "password"), [("", "password1"), ("x" * 33, "password1"), ("ok", "short")]
)
def test_bad_home_network_is_refused(air, ssid, password):
    with pytest.raises(ValueError):
        air.add_home_network(ssid, password)


def test_ssids_with_any_characters_get_safe_file_names(air):
    for ssid in ("../../etc", "Café ☕", "a/b\\c", "   "):
        air.add_home_network(ssid, "")
        assert air.home_network(ssid).ssid == ssid
    assert {n.ssid for n in air.home_networks()} == {"../../etc", "Café ☕", "a/b\\c", "   "}
    assert all(p.parent == air.root / "networks" for p in (air.root / "networks").iterdir())


def test_remove_home_network(air):
    air.add_home_network("Gone", "password1")
    air.remove_home_network("Gone")
    air.remove_home_network("Gone")  # idempotent
    assert air.home_network("Gone") is None


def _announce(air, chip="A4CF12EF5678", api="127.0.0.1:40001", passphrase="12345678"):
    # What the host board writes when its AP comes up.
    write_json(
        air.root / "aps" / f"{chip}.json",
        {
            "ssid": f"esp32-dht11-Setup-{chip[-6:]}",
            "bssid": "A4:CF:12:EF:56:79",
            "security": "WPA2-PSK",
            "passphrase": passphrase,
            "chip_id": chip,
            "api": api,
        },
    )


def test_setup_aps_are_found_by_ssid_bssid_and_joined_with_the_passphrase(air):
    _announce(air)
    _announce(air, "A4CF12000001", "127.0.0.1:40002")
    assert [a.chip_id for a in air.setup_aps()] == ["A4CF12000001", "A4CF12EF5678"]
    ap = air.find_setup_ap(ssid="esp32-dht11-Setup-EF5678")
    assert ap.api_url == "http://127.0.0.1:40001"
    assert air.find_setup_ap(bssid="a4:cf:12:ef:56:79").chip_id in {"A4CF12EF5678", "A4CF12000001"}
    assert air.join_setup_ap("esp32-dht11-Setup-EF5678", "12345678").chip_id == "A4CF12EF5678"
    with pytest.raises(PermissionError):
        air.join_setup_ap("esp32-dht11-Setup-EF5678", "wrong-pass")
    with pytest.raises(LookupError):
        air.join_setup_ap("esp32-dht11-Setup-FFFFFF", "12345678")
    air.clear_setup_ap("A4CF12EF5678")
    assert air.setup_ap("A4CF12EF5678") is None


def test_broken_and_half_written_files_are_skipped(air):
    _announce(air)
    (air.root / "aps" / "BROKEN.json").write_text("{not json")
    (air.root / "aps" / "LIST.json").write_text("[1, 2]")
    (air.root / "aps" / "MISSING.json").write_text('{"ssid": "x"}')
    (air.root / "aps" / "A4CF12000009.json.tmp").write_text("{")  # a write in progress
    assert [a.chip_id for a in air.setup_aps()] == ["A4CF12EF5678"]


def test_wait_for_setup_ap_needs_a_listening_api(air):
    _announce(air, api="127.0.0.1:1")  # nothing listens there
    with pytest.raises(TimeoutError):
        air.wait_for_setup_ap("A4CF12EF5678", timeout=0.3)
    assert air.wait_for_setup_ap("A4CF12EF5678", timeout=0.3, live=False).api == "127.0.0.1:1"


def test_controls_merge_and_reject_unknown_names(air):
    air.set_dht_fail("a4cf12ef5678", True)
    air.set_button_held("A4CF12EF5678", True)
    assert air.control("A4CF12EF5678") == {"dht_fail": True, "button_held": True}
    air.set_dht_fail("A4CF12EF5678", False)
    assert air.control("A4CF12EF5678")["dht_fail"] is False
    with pytest.raises(ValueError):
        air.set_control("A4CF12EF5678", self_destruct=True)
    assert air.led("A4CF12EF5678") == {}


def test_concurrent_writers_never_expose_half_a_file(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"n": 0, "pad": "x" * 50_000})
    stop = threading.Event()
    bad: list[object] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            write_json(path, {"n": n, "pad": "x" * 50_000})

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            obj = read_json(path)
            if obj is None or len(obj["pad"]) != 50_000:
                bad.append(obj)
    finally:
        stop.set()
        t.join()
    assert not bad
    assert not list(tmp_path.glob("*.tmp"))


def test_air_layout_is_created(tmp_path):
    air = Air(tmp_path / "new" / "air")
    assert {p.name for p in air.root.iterdir()} == {"networks", "aps", "devices"}
    assert air.flash_dir("a4cf12ef5678") == air.root / "devices" / "A4CF12EF5678" / "flash"
