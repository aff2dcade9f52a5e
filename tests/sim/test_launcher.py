"""The device launcher and the fleet: processes as devices, reboots, power cuts, clean stops."""

from __future__ import annotations

import os
import signal

import pytest
import requests
from support import wait_for

from station.sim.device import REBOOT_EXIT, SimDevice, SimError
from station.sim.fleet import Fleet, fleet_chip_ids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def device(air, firmware_dir, fast):
    d = SimDevice(air, "A4CF12EF5678", firmware_dir, timing=fast)
    d.start()
    yield d
    d.stop()


def test_device_announces_its_ap_and_serves_the_api(device):
    ap = device.wait_for_setup_ap()
    assert ap.ssid == "esp32-dht11-Setup-EF5678"
    assert ap.api.startswith("127.0.0.1:")
    assert requests.get(ap.api_url + "/api/info", timeout=5).json()["chip_id"] == "A4CF12EF5678"


def test_a_reboot_is_a_fresh_process_and_flash_survives(device):
    ap = device.wait_for_setup_ap()
    requests.post(
        ap.api_url + "/api/wifi", json={"ssid": "Net", "password": "password1"}, timeout=5
    )
    pid = device.pid
    requests.post(ap.api_url + "/api/restart", timeout=5)
    device.wait_for_reboot(1)
    assert device.pid != pid and device.exit_codes == [REBOOT_EXIT]
    api = device.wait_for_setup_ap().api_url
    info = requests.get(api + "/api/info", timeout=5).json()
    assert info["wifi_configured"] is True  # the config came through the reboot
    assert (device.flash_dir / "config.json").is_file()


def test_power_off_removes_the_ap_and_power_on_brings_it_back(device, air):
    device.wait_for_setup_ap()
    pid = device.pid
    device.power_off()
    assert not device.running and not _alive(pid)
    assert air.setup_ap(device.chip_id) is None
    assert device.exit_codes == [-signal.SIGKILL]
    assert device.poll() is False  # a power cut does not restart the device
    device.start()
    device.wait_for_setup_ap()


def test_stop_is_orderly(device, air):
    device.wait_for_setup_ap()
    pid = device.pid
    device.stop()
    assert not _alive(pid)
    assert air.setup_ap(device.chip_id) is None
    assert device.exit_codes == [-signal.SIGTERM]


def test_the_device_gets_no_station_environment(air, firmware_dir, monkeypatch):
    monkeypatch.setenv("STATION_BROKER_TOKEN", "do-not-leak")
    d = SimDevice(air, "A4CF12EF5678", firmware_dir)
    env = d._env()
    assert "STATION_BROKER_TOKEN" not in env
    assert set(env) <= {"PATH", "MICROPYPATH"} | {k for k in env if k.startswith("ESP32SIM_")}


@pytest.mark.parametrize(
    "chip", ["", "A4CF12EF567", "A4CF12EF56789", "G4CF12EF5678", "A4:CF:12:EF:56:78"]
)
def test_bad_chip_ids_are_refused(air, firmware_dir, chip):
    with pytest.raises(SimError):
        SimDevice(air, chip, firmware_dir)


@pytest.mark.parametrize(
    "timing", [{"nonsense_s": 1}, {"fallback_s": -1}, {"retry_s": "5"}, {"trial_s": True}]
)
def test_bad_timings_are_refused(air, firmware_dir, timing):
    with pytest.raises(SimError):
        SimDevice(air, "A4CF12EF5678", firmware_dir, timing=timing)


def test_a_folder_without_a_build_is_refused(air, tmp_path):
    with pytest.raises(SimError, match="no firmware build"):
        SimDevice(air, "A4CF12EF5678", tmp_path)


def test_a_non_ascii_ssid_means_the_same_network_on_both_sides(device, air):
    # The host board (MicroPython) and Air (CPython) must name the file alike.
    air.add_home_network("Café ☕", "password1")
    api = device.wait_for_setup_ap().api_url
    requests.post(api + "/api/wifi", json={"ssid": "Café ☕", "password": "password1"}, timeout=5)

    def final():
        s = requests.get(api + "/api/status", timeout=5).json()
        return s if s["wifi"] != "connecting" else None

    assert wait_for(final, 5)["wifi"] == "connected"


def test_fleet_chip_ids_are_stable_and_distinct():
    ids = fleet_chip_ids(50)
    assert ids == fleet_chip_ids(50)
    assert ids != fleet_chip_ids(50, seed="other")
    assert len({i[-6:] for i in ids}) == 50
    assert all(i.startswith("A4CF12") and len(i) == 12 for i in ids)


def test_fleet_runs_distinct_devices_and_stops_them_all(air, firmware_dir, fast):
    chips = fleet_chip_ids(3)
    with Fleet(air, firmware_dir, chips, timing=fast) as fleet:
        aps = [air.wait_for_setup_ap(c) for c in chips]
        assert len({a.ssid for a in aps}) == 3 and len({a.api for a in aps}) == 3
        pids = [d.pid for d in fleet.devices]
        # a reboot inside a fleet is handled by its supervisor
        requests.post(aps[0].api_url + "/api/restart", timeout=5)
        wait_for(lambda: fleet[0].boots == 2, 10)
    assert not [p for p in pids if _alive(p)]
    assert air.setup_aps() == []


def test_fleet_refuses_clashing_ap_names(air, firmware_dir):
    with pytest.raises(ValueError, match="last 6 digits"):
        Fleet(air, firmware_dir, ["A4CF12000001", "B4CF12000001"])
