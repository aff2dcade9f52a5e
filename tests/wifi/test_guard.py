"""The home network always comes back, and temporary profiles never outlive the run.

Driven through the NetworkManager backend against the stateful fake nmcli, so "home" and
"temporary profile" are NetworkManager's own state, not flags in a test double.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from station.wifi import Excursion, Journal, recover
from station.wifi.errors import Cancelled, ReturnHomeError, WrongPassphrase
from station.wifi.nm import NetworkManagerBackend

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[2]
DEVICE = "esp32-dht11-Setup-12AB34"
DEVICE_PASS = "12345678"


@pytest.fixture
def nm(fake_nm):
    fake_nm.add_ap(DEVICE, DEVICE_PASS, bssid="24:0a:c4:12:34:56", gateway="127.0.0.2")
    fake_nm.add_ap(
        "esp32-dht11-Setup-56CD78", DEVICE_PASS, bssid="24:0a:c4:56:cd:78", gateway="127.0.0.3"
    )
    return NetworkManagerBackend()


@pytest.fixture
def journal(tmp_path):
    return Journal(tmp_path / "state" / "wifi-journal.json")


def assert_home_and_clean(fake_nm, journal):
    assert fake_nm.active_name == "Home Net"
    assert fake_nm.temp_connections() == []
    assert journal.read() is None
    assert not journal.path.exists()
    assert fake_nm.rejected == []


def test_success_returns_home_and_deletes_the_profile(nm, fake_nm, journal):
    with Excursion(nm, journal) as trip:
        link = trip.connect(DEVICE, DEVICE_PASS, timeout=5)
        assert fake_nm.active_name == link.profile
        entry = journal.read()
        assert entry.target == DEVICE and entry.profiles == [link.profile]
        assert entry.home.ssid == "Home Net"
        assert DEVICE_PASS not in journal.path.read_text()
    assert_home_and_clean(fake_nm, journal)


def test_error_in_the_block_still_returns_home(nm, fake_nm, journal):
    with pytest.raises(RuntimeError, match="device said no"), Excursion(nm, journal) as trip:
        trip.connect(DEVICE, DEVICE_PASS, timeout=5)
        raise RuntimeError("device said no")
    assert_home_and_clean(fake_nm, journal)


def test_failed_join_returns_home_and_deletes_the_profile(nm, fake_nm, journal):
    with pytest.raises(WrongPassphrase), Excursion(nm, journal) as trip:
        trip.connect(DEVICE, "wrong-pass", timeout=5)
    assert_home_and_clean(fake_nm, journal)
    assert any(a[:2] == ["connection", "add"] for a in fake_nm.log)  # it did try


def test_cancel_while_waiting_for_the_device(nm, fake_nm, journal):
    cancel = threading.Event()

    def probe(_addr):  # the device never answers; the user clicks Cancel meanwhile
        cancel.set()
        return False

    with pytest.raises(Cancelled), Excursion(nm, journal, cancel=cancel) as trip:
        trip.connect(DEVICE, DEVICE_PASS, timeout=20, probe=probe)
    assert_home_and_clean(fake_nm, journal)


def test_cancel_before_joining_touches_nothing(nm, fake_nm, journal):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled), Excursion(nm, journal, cancel=cancel) as trip:
        trip.connect(DEVICE, DEVICE_PASS, timeout=5)
    assert not any(a[:2] == ["connection", "add"] for a in fake_nm.log)
    assert not any("up" in a for a in fake_nm.log)  # never left, so no needless return
    assert_home_and_clean(fake_nm, journal)


def test_ctrl_c_returns_home(nm, fake_nm, journal):
    def probe(_addr):  # a real SIGINT, as Ctrl-C delivers it, while waiting on the device
        signal.raise_signal(signal.SIGINT)
        return False

    with pytest.raises(KeyboardInterrupt), Excursion(nm, journal) as trip:
        trip.connect(DEVICE, DEVICE_PASS, timeout=20, probe=probe)
    assert_home_and_clean(fake_nm, journal)


def test_hopping_between_devices_keeps_one_profile_at_a_time(nm, fake_nm, journal):
    with Excursion(nm, journal) as trip:
        first = trip.connect(DEVICE, DEVICE_PASS, timeout=5)
        second = trip.connect("esp32-dht11-Setup-56CD78", DEVICE_PASS, timeout=5)
        assert second.device.host == "127.0.0.3"
        assert fake_nm.temp_connections() == [second.profile]
        assert journal.read().profiles == [second.profile]
        assert first.profile != second.profile
    # Home once, at the end, not between devices.
    ups = [a for a in fake_nm.log if "up" in a and "uuid" in a]
    assert len(ups) == 1
    assert_home_and_clean(fake_nm, journal)


def test_home_unreachable_raises_a_clear_error_and_keeps_the_journal(nm, fake_nm, journal):
    trip = Excursion(nm, journal)
    with pytest.raises(ReturnHomeError, match=r"back on 'Home Net'.*by hand"), trip:
        trip.connect(DEVICE, DEVICE_PASS, timeout=5)
        st = fake_nm.state
        fake_nm.update(aps=[ap for ap in st["aps"] if ap["ssid"] != "Home Net"])
    assert fake_nm.temp_connections() == []  # the profile is gone even so
    assert journal.read() is not None  # so the next start tries to go home again
    fake_nm.update(
        aps=fake_nm.state["aps"]
        + [
            {
                "ssid": "Home Net",
                "bssid": "AA:BB:CC:00:00:01",
                "psk": "home-pass-123",
                "gateway": "127.0.0.1",
                "signal": 70,
                "security": "WPA2",
                "freq": 5180,
            }
        ]
    )
    report = recover(nm, journal)
    assert report.went_home and report.problems == []
    assert_home_and_clean(fake_nm, journal)


CRASHER = """
import os, signal, sys
from station.wifi import Excursion, Journal
from station.wifi.nm import NetworkManagerBackend
trip = Excursion(NetworkManagerBackend(), Journal(sys.argv[1])).__enter__()
trip.connect(sys.argv[2], sys.argv[3], timeout=5)
os.kill(os.getpid(), signal.SIGKILL)  # a crash: no finally, no __exit__, no atexit
"""


def test_crash_then_recover_at_next_start(nm, fake_nm, journal):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(journal.path), DEVICE, DEVICE_PASS],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    # What a crash leaves: away from home, a temporary profile, and the journal naming it.
    [leftover] = fake_nm.temp_connections()
    assert fake_nm.active_name == leftover
    entry = json.loads(journal.path.read_text())
    assert entry["profiles"] == [leftover] and entry["home"]["ssid"] == "Home Net"
    assert DEVICE_PASS not in journal.path.read_text()

    report = recover(NetworkManagerBackend(), journal)  # the next start
    assert report.found_journal and report.went_home
    assert report.removed_profiles == [leftover]
    assert "went back to the home network" in str(report)
    assert_home_and_clean(fake_nm, journal)


def test_recover_without_journal_still_sweeps_leftovers(nm, fake_nm, journal):
    nm.connect(DEVICE, DEVICE_PASS, timeout=5)  # a bare connect: nothing journaled
    nm.return_home(None, timeout=5)  # NetworkManager picks its usual network
    assert fake_nm.active_name == "Home Net"
    assert len(fake_nm.temp_connections()) == 1
    report = recover(nm, journal)
    assert not report.found_journal and len(report.removed_profiles) == 1
    assert fake_nm.temp_connections() == []
    assert str(recover(nm, journal)) == "Nothing to recover."


def test_a_leftover_temporary_network_is_not_taken_for_home(nm, fake_nm, journal):
    nm.connect(DEVICE, DEVICE_PASS, timeout=5)  # e.g. a crash, and recover() was skipped
    with Excursion(nm, journal) as trip:
        assert trip.home is None
        trip.connect("esp32-dht11-Setup-56CD78", DEVICE_PASS, timeout=5)
    assert fake_nm.active_name == "Home Net"  # NetworkManager's usual network
