"""One owner for the radio, against the real pywifi 1.1.12 code and the fake wpa_supplicant.

pywifi keeps one control socket per interface, shared by every caller, and sends a command
and reads "the next" reply with nothing in between to pair them: two threads crossed 12 of
600 replies. These tests hammer the backend from many threads, raw and through the owner
(station.wifi.radio), and check that each caller gets the reply to its own request.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import pytest

from station.wifi import Excursion
from station.wifi.base import Network, ScanResult
from station.wifi.radio import Radio

pytestmark = pytest.mark.timeout(60)

wpa_fake = sys.modules["wifi_fakes_wpa_supplicant"]  # loaded by conftest.py
AP = wpa_fake.AP
DEVICES = [f"esp32-dht11-Setup-{i:06X}" for i in range(1, 4)]


@pytest.fixture
def at_home(wpa):
    aps = [AP("Home Net", "aa:bb:cc:00:00:01", "home-pass-123", signal=-60, freq=5180)]
    aps += [
        AP(ssid, f"24:0a:c4:00:00:{i:02x}", "12345678", signal=-40 - i, gateway="127.0.0.2")
        for i, ssid in enumerate(DEVICES, 1)
    ]
    d = wpa.start(aps)
    home = d.add_saved("Home Net", "home-pass-123")
    d.associate_now(home)
    wpa.write_routes("127.0.0.1")
    return d


HOME = Network(ssid="Home Net", bssid="aa:bb:cc:00:00:01", profile="0", temporary=False)


def _hammer(calls: list[Callable[[], object]], threads: int, rounds: int) -> list[str]:
    """Run every call `rounds` times in each of `threads` threads, all at once; return
    a description of every answer that was not the answer to its own request."""
    wrong: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def body(offset: int) -> None:
        start.wait()
        try:
            for n in range(rounds):
                check = calls[(n + offset) % len(calls)]
                problem = check()
                if problem:
                    wrong.append(str(problem))
        except BaseException as exc:  # a crossed reply may also fail to parse
            errors.append(exc)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(50)
    return wrong + [f"{type(e).__name__}: {e}" for e in errors]


def _checks(wifi, expected_scan: list[ScanResult]) -> list[Callable[[], object]]:
    def current() -> str | None:
        got = wifi.current()
        return None if got == HOME else f"current() answered {got!r}"

    def scan() -> str | None:
        got = wifi.scan()
        return None if got == expected_scan else f"scan() answered {len(got)} networks"

    return [current, scan]


def test_many_threads_on_one_backend_each_get_their_own_reply(wpa, at_home):
    """The regression reference: before the control socket got a lock, raw threads on
    one pywifi backend read each other's replies (STATUS parsed as SCAN_RESULTS...)."""
    backend = wpa.backend()
    expected = backend.scan()
    assert len(expected) == 4 and backend.current() == HOME
    wrong = _hammer(_checks(backend, expected), threads=6, rounds=150)
    assert wrong == []


def test_many_threads_through_the_owner_each_get_their_own_reply(wpa, at_home):
    radio = Radio(wpa.backend())
    wifi = radio.wifi
    expected = wifi.scan()
    assert len(expected) == 4
    before = len(at_home.commands)
    wrong = _hammer(_checks(wifi, expected), threads=6, rounds=150)
    assert wrong == []
    # The owner runs one call at a time: a scan's SCAN is followed by its own
    # SCAN_RESULTS, never by another caller's STATUS.
    cmds = at_home.commands[before:]
    assert cmds.count("SCAN") == 6 * 75
    pairs = [cmds[i + 1] for i, c in enumerate(cmds) if c == "SCAN"]
    assert set(pairs) == {"SCAN_RESULTS"}
    assert radio.close(5)


def _device_probe(addr) -> bool:
    return addr.host == "127.0.0.2"


def test_a_scan_during_a_batch_waits_until_the_laptop_is_home(wpa, at_home):
    """An Excursion over radio.wifi spanning two joins holds the radio for the whole trip:
    a scan asked for in the middle runs after the return home, never between joins."""
    radio = Radio(wpa.backend())
    on_device = threading.Event()
    go_on = threading.Event()
    errors: list[BaseException] = []

    def batch() -> None:
        try:
            with Excursion(radio.wifi) as trip:
                trip.connect(DEVICES[0], "12345678", timeout=5, probe=_device_probe)
                on_device.set()
                go_on.wait(10)  # ...talking to the device over HTTP...
                trip.connect(DEVICES[1], "12345678", timeout=5, probe=_device_probe)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=batch)
    worker.start()
    assert on_device.wait(10)
    scanned: list[list[ScanResult]] = []
    scanner = threading.Thread(target=lambda: scanned.append(radio.wifi.scan()))
    scanner.start()
    scanner.join(0.5)
    assert scanner.is_alive()  # waits for the radio
    assert scanned == []
    st = radio.state()
    assert st.away and st.busy == f"away from home (on {DEVICES[0]})"
    assert st.queued == ("scanning",)
    go_on.set()
    worker.join(10)
    scanner.join(10)
    assert errors == [] and len(scanned) == 1 and len(scanned[0]) == 4
    cmds = at_home.commands
    first_join = cmds.index("ADD_NETWORK")
    home_again = cmds.index("SELECT_NETWORK 0", first_join)  # the return home
    scan_at = cmds.index("SCAN", first_join)
    assert cmds.count("ADD_NETWORK") == 2
    assert scan_at > home_again
    assert "SCAN" not in cmds[first_join:home_again]
    assert radio.state().away is False and radio.state().network.ssid == "Home Net"
    assert radio.close(5)


def test_status_during_a_batch_comes_from_state_without_an_os_call(wpa, at_home):
    radio = Radio(wpa.backend())
    assert radio.wifi.current() == HOME  # known before the batch
    on_device = threading.Event()
    go_on = threading.Event()

    def batch() -> None:
        with radio.hold("provisioning batch") as wifi, Excursion(wifi) as trip:
            trip.connect(DEVICES[2], "12345678", timeout=5, probe=_device_probe)
            on_device.set()
            go_on.wait(10)

    worker = threading.Thread(target=batch)
    worker.start()
    assert on_device.wait(10)
    seen = len(at_home.commands)
    states = [radio.state() for _ in range(50)]
    refreshes = [radio.refresh(max_age=0) for _ in range(5)]  # the status bar's timer
    time.sleep(0.2)
    assert at_home.commands[seen:] == []  # no STATUS, nothing at all
    assert refreshes == [None] * 5
    assert {s.summary() for s in states} == {f"{DEVICES[2]} (busy: provisioning batch)"}
    assert all(s.network.temporary and s.away for s in states)
    go_on.set()
    worker.join(10)
    st = radio.state()
    assert (st.busy, st.away, st.network_text()) == (None, False, "Home Net")
    future = radio.refresh(max_age=0)  # idle again: the timer may read the network
    assert future is not None and future.result(5) == HOME
    assert radio.close(5)


def test_a_holder_thread_that_dies_does_not_keep_the_radio(wpa, at_home):
    radio = Radio(wpa.backend())

    def leaves_without_coming_home() -> None:
        radio.wifi.connect(DEVICES[0], "12345678", timeout=5, probe=_device_probe)

    t = threading.Thread(target=leaves_without_coming_home)
    t.start()
    t.join(10)
    assert radio.state().away
    # The thread is gone; within the liveness check the radio serves others again.
    assert len(radio.submit(radio.wifi.scan, "scan").result(5)) == 4
    assert radio.close(5)
