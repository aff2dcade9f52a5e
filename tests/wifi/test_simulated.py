"""The simulated WiFi backend against a real air folder.

One test runs the real firmware fleet (MicroPython unix port) and joins its setup APs;
the others populate the air directly (an AP file as the host board writes it), which is
all the backend reads. The laptop's state is the air's laptop.json, so "home" and
"temporary profile" are asserted on the persisted state, not on the backend object.
Everything is on 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from station.sim.air import Air, write_json
from station.sim.fleet import Fleet, fleet_chip_ids
from station.sim.wifi import SimulatedBackend
from station.wifi import (
    DeviceAddress,
    Excursion,
    HomeNetwork,
    Journal,
    http_json_probe,
    recover,
    registry,
    select_backend,
)
from station.wifi.errors import (
    Cancelled,
    DeviceUnreachable,
    JoinTimeout,
    NetworkNotFound,
    ReturnHomeError,
    WifiUnavailable,
    WrongPassphrase,
)

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
HOME, HOME_PASS = "MyHomeWiFi", "mypassword"
CHIP, CHIP2 = "A4CF12EF5678", "A4CF1256CD78"
SETUP_PASS = "12345678"
from support import FAST  # noqa: E402 - the shared fast firmware timings


def ssid_of(chip: str) -> str:
    return "esp32-dht11-Setup-" + chip[-6:]


def announce(air: Air, chip: str, api: str = "127.0.0.1:1") -> None:
    """A setup AP on the air, as the host board announces it (port 1: nothing answers)."""
    bssid = ":".join(chip[i : i + 2] for i in range(0, 12, 2))
    write_json(
        air.root / "aps" / f"{chip}.json",
        {
            "ssid": ssid_of(chip),
            "bssid": bssid,
            "security": "WPA2-PSK",
            "passphrase": SETUP_PASS,
            "chip_id": chip,
            "api": api,
        },
    )


@pytest.fixture
def air(tmp_path) -> Air:
    air = Air(tmp_path / "air")
    air.add_home_network(HOME, HOME_PASS, rssi=-50)
    air.place_laptop(HOME)
    announce(air, CHIP, "127.0.0.1:40001")
    announce(air, CHIP2, "127.0.0.1:40002")
    return air


@pytest.fixture
def wifi(air) -> SimulatedBackend:
    return SimulatedBackend(air, poll_interval=0.01)


@pytest.fixture
def journal(tmp_path) -> Journal:
    return Journal(tmp_path / "state" / "wifi-journal.json")


def assert_home_and_clean(air: Air, journal: Journal | None = None) -> None:
    lap = air.laptop()
    assert (lap.ssid, lap.profile) == (HOME, None)
    assert lap.profiles == {}
    if journal is not None:
        assert journal.read() is None


# -- the real firmware ------------------------------------------------------------------


def test_joins_a_real_fleet_and_each_link_is_that_device(tmp_path, firmware_dir, journal):
    air = Air(tmp_path / "air")
    air.add_home_network(HOME, HOME_PASS)
    air.place_laptop(HOME)
    chips = fleet_chip_ids(3, seed="wifi-test")
    with Fleet(air, firmware_dir, chips, timing=FAST):
        aps = {c: air.wait_for_setup_ap(c, timeout=10) for c in chips}
        wifi = SimulatedBackend(air, poll_interval=0.02)

        found = {r.ssid: r for r in wifi.scan()}
        assert set(found) == {HOME} | {ap.ssid for ap in aps.values()}
        for ap in aps.values():
            r = found[ap.ssid]
            assert (r.bssid, r.security, r.secure) == (ap.bssid.lower(), "WPA2", True)
            assert -80 <= r.signal_dbm <= -45

        with (
            pytest.raises(WrongPassphrase, match="rejected the WiFi password"),
            Excursion(wifi, journal) as trip,
        ):
            trip.connect(aps[chips[0]].ssid, "not-the-password", timeout=5)
        assert_home_and_clean(air, journal)

        with Excursion(wifi, journal) as trip:
            for chip, ap in aps.items():
                link = trip.connect(ap.ssid, SETUP_PASS, timeout=10, probe=http_json_probe())
                assert link.device == DeviceAddress("127.0.0.1", int(ap.api.rpartition(":")[2]))
                info = requests.get(
                    f"http://{link.device.host}:{link.device.port}/api/info", timeout=5
                ).json()
                assert info["chip_id"] == chip
                lap = air.laptop()
                assert lap.ssid == ap.ssid and list(lap.profiles) == [link.profile]
        assert_home_and_clean(air, journal)


# -- scan, current, joins ---------------------------------------------------------------


def test_scan_lists_setup_aps_and_home_networks_strongest_first(wifi, air):
    results = wifi.scan()
    assert results[0].ssid == HOME  # -50 dBm; the made-up AP signals are weaker
    by_ssid = {r.ssid: r for r in results}
    assert set(by_ssid) == {HOME, ssid_of(CHIP), ssid_of(CHIP2)}
    assert by_ssid[ssid_of(CHIP)].bssid == "a4:cf:12:ef:56:78"
    assert by_ssid[ssid_of(CHIP)].security == "WPA2"
    assert by_ssid[HOME].security == "WPA2" and by_ssid[HOME].frequency_mhz == 2437
    assert [r.signal_dbm for r in results] == sorted((r.signal_dbm for r in results), reverse=True)


def test_current_and_remember_home(wifi, air):
    cur = wifi.current()
    assert (cur.ssid, cur.temporary) == (HOME, False)
    assert cur.bssid == air.home_network(HOME).bssid.lower()
    assert wifi.remember_home() == HomeNetwork(ssid=HOME)


def test_connect_gives_the_device_api_address_from_the_air(wifi, air):
    link = wifi.connect(ssid_of(CHIP), SETUP_PASS, timeout=5)
    assert link.device == DeviceAddress("127.0.0.1", 40001)
    assert link.profile.startswith("esp32-station-tmp-")
    cur = wifi.current()
    assert (cur.ssid, cur.profile, cur.temporary) == (ssid_of(CHIP), link.profile, True)
    assert air.laptop().profiles == {link.profile: {"ssid": ssid_of(CHIP), "bssid": ""}}
    # On a device network no home is remembered (it is not one).
    assert wifi.remember_home() is None


def test_pinned_bssid_must_match(wifi):
    link = wifi.connect(ssid_of(CHIP), SETUP_PASS, bssid="A4:CF:12:EF:56:78", timeout=5)
    assert link.bssid == "a4:cf:12:ef:56:78"
    with pytest.raises(NetworkNotFound):
        wifi.connect(ssid_of(CHIP), SETUP_PASS, bssid="a4:cf:12:00:00:00", timeout=5)


def test_wrong_passphrase_leaves_the_laptop_on_no_network(wifi, air):
    with pytest.raises(WrongPassphrase) as err:
        wifi.connect(ssid_of(CHIP), "wrong-pass-1", timeout=5)
    assert err.value.ssid == ssid_of(CHIP)
    assert "wrong-pass-1" not in str(err.value)
    assert wifi.current() is None and air.laptop().ssid is None


def test_unknown_ssid_is_not_found(wifi):
    with pytest.raises(NetworkNotFound, match="was not found") as err:
        wifi.connect("esp32-dht11-Setup-000000", SETUP_PASS, timeout=5)
    assert err.value.ssid == "esp32-dht11-Setup-000000"


def test_a_home_network_is_joinable_but_serves_no_device(wifi, air):
    with pytest.raises(WrongPassphrase):
        wifi.connect(HOME, "not-home-pass", timeout=5)
    started = time.monotonic()
    with pytest.raises(DeviceUnreachable, match="home network"):
        wifi.connect(HOME, HOME_PASS, timeout=20)
    assert time.monotonic() - started < 2  # said at once, not after the timeout


def test_a_vanished_device_is_unreachable_with_the_seed_message(wifi, air):
    def probe(_addr):  # the device reboots away (its AP goes down) while we wait
        air.clear_setup_ap(CHIP)
        return False

    with pytest.raises(DeviceUnreachable, match=f"Make sure you're connected to {ssid_of(CHIP)}"):
        wifi.connect(ssid_of(CHIP), SETUP_PASS, timeout=0.5, probe=probe)
    assert wifi.current() is None  # its network is gone


def test_the_probe_decides_when_the_device_answers(wifi):
    calls: list[DeviceAddress] = []

    def probe(addr):
        calls.append(addr)
        return len(calls) >= 3

    link = wifi.connect(ssid_of(CHIP2), SETUP_PASS, timeout=5, probe=probe)
    assert calls == [DeviceAddress("127.0.0.1", 40002)] * 3 and link.device == calls[0]


# -- switch delay -----------------------------------------------------------------------


def test_switch_delay_is_honoured_both_ways(air):
    wifi = SimulatedBackend(air, switch_delay=0.3, poll_interval=0.01)
    t0 = time.monotonic()
    link = wifi.connect(ssid_of(CHIP), SETUP_PASS, timeout=5)
    joined = time.monotonic() - t0
    assert 0.3 <= link.seconds <= joined < 1.5
    t0 = time.monotonic()
    wifi.return_home(HomeNetwork(HOME), timeout=5)
    assert 0.3 <= time.monotonic() - t0 < 1.5
    assert air.laptop().switches == 2


def test_switch_delay_is_cancellable_and_the_guard_goes_home(air, journal):
    wifi = SimulatedBackend(air, switch_delay=1.0, poll_interval=0.01)
    cancel = threading.Event()
    timer = threading.Timer(0.1, cancel.set)
    seen = []
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Cancelled), Excursion(wifi, journal, cancel=cancel) as trip:
            try:
                trip.connect(ssid_of(CHIP), SETUP_PASS, timeout=30)
            finally:  # mid-switch: on no network, the new profile exists
                seen.append((time.monotonic() - t0, air.laptop()))
    finally:
        timer.cancel()
    cancelled_after, lap = seen[0]
    assert cancelled_after < 0.6  # not the full 1 s switch
    assert lap.ssid is None and len(lap.profiles) == 1
    assert time.monotonic() - t0 >= 1.0  # the way home took its switch delay
    assert_home_and_clean(air, journal)


def test_a_timeout_shorter_than_the_switch_is_a_join_timeout(air):
    wifi = SimulatedBackend(air, switch_delay=5.0)
    t0 = time.monotonic()
    with pytest.raises(JoinTimeout, match=r"within 0\.3 s"):
        wifi.connect(ssid_of(CHIP), SETUP_PASS, timeout=0.3)
    assert time.monotonic() - t0 < 1.5


# -- the guarantee: home again, no temporary profile left ---------------------------------


@pytest.mark.parametrize("how", ["success", "error", "wrong passphrase", "cancel"])
def test_excursion_always_brings_the_laptop_home(wifi, air, journal, how):
    cancel = threading.Event()

    def probe(_addr):  # the user clicks Cancel while we wait for the device
        cancel.set()
        return False

    expected = {"error": RuntimeError, "wrong passphrase": WrongPassphrase, "cancel": Cancelled}
    raises = pytest.raises(expected[how]) if how in expected else contextlib.nullcontext()
    with raises, Excursion(wifi, journal, cancel=cancel) as trip:
        assert trip.home == HomeNetwork(ssid=HOME)
        if how == "wrong passphrase":
            trip.connect(ssid_of(CHIP), "wrong-pass-1", timeout=5)
        link = trip.connect(
            ssid_of(CHIP), SETUP_PASS, timeout=5, probe=probe if how == "cancel" else None
        )
        assert journal.read().profiles == [link.profile]
        assert air.laptop().ssid == ssid_of(CHIP)
        if how == "error":
            raise RuntimeError("device said no")
    assert_home_and_clean(air, journal)


def test_hopping_keeps_one_profile_and_goes_home_once(wifi, air, journal):
    with Excursion(wifi, journal) as trip:
        first = trip.connect(ssid_of(CHIP), SETUP_PASS, timeout=5)
        second = trip.connect(ssid_of(CHIP2), SETUP_PASS, timeout=5)
        assert second.device.port == 40002 and first.profile != second.profile
        assert list(air.laptop().profiles) == [second.profile]
        assert air.laptop().ssid == ssid_of(CHIP2)  # deleting the old profile kept us here
    assert_home_and_clean(air, journal)
    assert air.laptop().switches == 3  # two joins, one return


def test_home_gone_fails_clearly_and_recover_brings_it_back_later(wifi, air, journal):
    trip = Excursion(wifi, journal)
    with (
        pytest.raises(ReturnHomeError, match=rf"back on '{HOME}'.*not on the simulated air"),
        trip,
    ):
        trip.connect(ssid_of(CHIP), SETUP_PASS, timeout=5)
        air.remove_home_network(HOME)
    assert air.laptop().profiles == {}  # the profile is gone even so
    assert journal.read() is not None  # so the next start tries again
    report = recover(wifi, journal)
    assert not report.went_home and "not on the simulated air" in report.problems[0]
    air.add_home_network(HOME, HOME_PASS)
    report = recover(wifi, journal)
    assert report.went_home and report.problems == []
    assert_home_and_clean(air, journal)


def test_return_home_without_a_home_goes_to_the_usual_network(wifi, air):
    wifi.connect(ssid_of(CHIP), SETUP_PASS, timeout=5)
    wifi.return_home(None)
    assert air.laptop().ssid == HOME


def test_return_home_with_no_home_ever_known_fails_clearly(tmp_path):
    air = Air(tmp_path / "air")
    with pytest.raises(ReturnHomeError, match="never on one"):
        SimulatedBackend(air).return_home(None)


CRASHER = """
import os, signal, sys
from station.sim.wifi import SimulatedBackend
from station.wifi import Excursion, Journal
trip = Excursion(SimulatedBackend(sys.argv[1]), Journal(sys.argv[2])).__enter__()
trip.connect(sys.argv[3], sys.argv[4], timeout=5)
os.kill(os.getpid(), signal.SIGKILL)  # a crash: no finally, no __exit__, no atexit
"""


def test_crash_then_recover_from_the_persisted_laptop_state(air, journal):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHER,
            str(air.root),
            str(journal.path),
            ssid_of(CHIP),
            SETUP_PASS,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # What the crash left: the laptop on the device network with a temporary profile.
    raw = json.loads((air.root / "laptop.json").read_text())
    [leftover] = raw["profiles"]
    assert raw["ssid"] == ssid_of(CHIP) and raw["profile"] == leftover
    assert raw["usual"] == HOME
    assert SETUP_PASS not in (air.root / "laptop.json").read_text()
    assert journal.read().profiles == [leftover]

    report = recover(SimulatedBackend(air.root), journal)  # the next start, a new process
    assert report.found_journal and report.went_home and report.removed_profiles == [leftover]
    assert_home_and_clean(air, journal)


def test_sweep_finds_profiles_no_journal_names(wifi, air, journal):
    wifi.connect(ssid_of(CHIP), SETUP_PASS, timeout=5)  # a bare connect: nothing journaled
    report = recover(wifi, journal)
    assert not report.found_journal and len(report.removed_profiles) == 1
    assert air.laptop().profiles == {}
    assert air.laptop().ssid is None  # its active profile was deleted: disconnected
    wifi.return_home(None)
    assert_home_and_clean(air)
    assert str(recover(wifi, journal)) == "Nothing to recover."


# -- selection ----------------------------------------------------------------------------


def test_selected_by_name_only_with_an_air_folder(air, tmp_path):
    assert "simulated" in registry.names()
    with pytest.raises(WifiUnavailable, match="no simulated air folder"):
        select_backend("simulated", system="linux")
    with pytest.raises(WifiUnavailable, match="not a simulated air folder"):
        select_backend("simulated", system="win32", options={"air": str(tmp_path / "nothing")})
    sel = select_backend("simulated", system="darwin", options={"air": str(air.root)})
    assert sel.name == "simulated" and str(air.root) in sel.reason
    backend = sel.create(air=str(air.root), switch_delay=0.0, interface="wlan0")
    assert isinstance(backend, SimulatedBackend) and backend.air.root == air.root


def test_never_picked_automatically_for_a_real_computer(fake_bin, air):
    # The per-OS preference lists do not include it: a real station never joins files.
    sel = select_backend(system="linux", options={"air": str(air.root)})
    assert sel.name != "simulated"
