"""The radio's owner (station.wifi.radio) on its own, over a recording backend: one call at
a time, in order, holds that nest, state without backend calls, and shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from station.wifi import Excursion, Journal
from station.wifi.base import (
    Availability,
    DeviceAddress,
    HomeNetwork,
    Network,
    ScanResult,
    WifiBackend,
)
from station.wifi.errors import CommandError, WifiUnavailable
from station.wifi.journal import JournalEntry
from station.wifi.radio import OwnedBackend, Radio, Radios

pytestmark = pytest.mark.timeout(30)

HOME = Network(ssid="Home Net", profile="home")


class Recording(WifiBackend):
    """Each call is logged, takes a little while, and notes if another call overlapped it."""

    name = "recording"
    can_pin_bssid = True

    def __init__(self, delay: float = 0.002) -> None:
        self.delay = delay
        self.log: list[str] = []
        self.overlaps: list[str] = []
        self.network: Network | None = HOME
        self.confirm: Any = None
        self.fail_current = False
        self._inside = 0
        self._lock = threading.Lock()

    def _op(self, what: str) -> None:
        with self._lock:
            self._inside += 1
            if self._inside > 1:
                self.overlaps.append(what)
            self.log.append(what)
        time.sleep(self.delay)
        with self._lock:
            self._inside -= 1

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        return Availability(True, "a test backend")

    def current(self) -> Network | None:
        self._op("current")
        if self.fail_current:
            raise CommandError("nmcli crashed", tool="nmcli")
        return self.network

    def scan(self) -> list[ScanResult]:
        self._op("scan")
        return [ScanResult("esp32-dht11-Setup-000001", "24:0a:c4:00:00:01", -40, "WPA2")]

    def _join(self, req, deadline, on_profile) -> str:
        on_profile("tmp-" + req.ssid)
        self._op("join " + req.ssid)
        self.network = Network(ssid=req.ssid, profile="tmp-" + req.ssid, temporary=True)
        return "tmp-" + req.ssid

    def _device_address(self) -> DeviceAddress:
        return DeviceAddress("127.0.0.2")

    def _gateway(self) -> str | None:
        return "127.0.0.2"

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        self._op("home")
        self.network = HOME

    def remove_profile(self, profile: str) -> None:
        self._op("remove " + profile)

    def sweep_profiles(self) -> list[str]:
        self._op("sweep")
        return []


def test_the_owned_backend_looks_like_the_backend():
    backend = Recording()
    radio = Radio(backend)
    wifi = radio.wifi
    assert isinstance(wifi, OwnedBackend) and isinstance(wifi, WifiBackend)
    assert (wifi.name, wifi.can_scan, wifi.can_pin_bssid) == ("recording", True, True)
    assert radio.adapter == "recording"  # no interface known: one adapter per backend
    wifi.confirm = "ask"  # attributes it does not define are the backend's
    assert backend.confirm == "ask" and wifi.confirm == "ask"
    assert radio.close(5)


def test_calls_from_many_threads_never_overlap_and_each_gets_its_answer():
    backend = Recording(delay=0.001)
    radio = Radio(backend)
    answers: list[object] = []
    start = threading.Barrier(8)

    def caller(n: int) -> None:
        start.wait()
        for i in range(15):
            answers.append(radio.wifi.current() if (n + i) % 2 else radio.wifi.scan()[0].ssid)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert backend.overlaps == []
    assert len(backend.log) == 120
    assert set(map(repr, answers)) == {repr(HOME), repr("esp32-dht11-Setup-000001")}
    assert radio.close(5)


def test_jobs_run_in_order_and_state_says_what_holds_the_radio():
    radio = Radio(Recording())
    gate = threading.Event()
    order: list[str] = []
    first = radio.submit(lambda: (gate.wait(5), order.append("batch"))[1], "provisioning batch")
    second = radio.submit(lambda: order.append("scan"), "scanning for devices")
    time.sleep(0.1)
    st = radio.state()
    assert (st.busy, st.queued) == ("provisioning batch", ("scanning for devices",))
    assert not radio.is_idle()
    gate.set()
    second.result(5)
    assert first.done() and order == ["batch", "scan"]
    assert radio.state().busy is None and radio.is_idle()
    assert radio.close(5)


def test_a_hold_nests_and_work_submitted_inside_it_runs_at_once():
    backend = Recording()
    radio = Radio(backend)
    with radio.hold("batch") as wifi:
        assert radio.owns()
        with radio.hold("inner"):
            assert radio.submit(wifi.scan, "scan").result(1)[0].ssid.startswith("esp32")
        assert radio.owns()
        other = threading.Thread(target=radio.wifi.current)
        other.start()
        other.join(0.3)
        assert other.is_alive()  # another thread waits for the hold to end
        assert backend.log == ["scan"]
    other.join(5)
    assert backend.log == ["scan", "current"] and not radio.owns()
    assert radio.close(5)


def test_an_excursion_holds_the_radio_from_its_first_join_to_home():
    backend = Recording()
    radio = Radio(backend)
    joined, go_on = threading.Event(), threading.Event()

    def trip() -> None:
        with Excursion(radio.wifi) as t:
            t.connect("esp32-dht11-Setup-000001", "12345678")
            joined.set()
            go_on.wait(5)
            t.connect("esp32-dht11-Setup-000002", "12345678")

    traveller = threading.Thread(target=trip)
    traveller.start()
    assert joined.wait(5)
    scanner = threading.Thread(target=radio.wifi.scan)
    scanner.start()
    time.sleep(0.1)
    assert radio.state().queued == ("scanning",)
    go_on.set()
    traveller.join(5)
    scanner.join(5)
    log = backend.log
    assert log.index("scan") > log.index("home") > log.index("join esp32-dht11-Setup-000002")
    assert backend.overlaps == []
    assert radio.close(5)


def test_state_comes_from_the_owners_own_calls_and_failures_are_in_words():
    backend = Recording()
    radio = Radio(backend)
    assert radio.state().summary() == "…"
    radio.wifi.current()
    assert radio.state().summary() == "Home Net"
    calls = len(backend.log)
    assert [radio.state().summary() for _ in range(10)] == ["Home Net"] * 10
    assert radio.refresh(max_age=60) is None  # fresh enough: no call
    assert len(backend.log) == calls
    backend.fail_current = True
    future = radio.refresh(max_age=0)
    assert future is not None
    with pytest.raises(CommandError):
        future.result(5)
    assert radio.state().summary() == "unknown (nmcli crashed)"
    assert radio.close(5)


def test_recover_is_one_job(tmp_path):
    backend = Recording(delay=0.05)
    radio = Radio(backend)
    journal = Journal(tmp_path / "journal.json")
    journal.write(
        JournalEntry(backend="recording", home=HomeNetwork("Home Net", "home"), profiles=["t1"])
    )
    recovering = threading.Thread(target=radio.recover, args=(journal,))
    recovering.start()
    time.sleep(0.02)
    radio.wifi.scan()  # asked for in the middle of the repair
    recovering.join(5)
    assert backend.log == ["home", "remove t1", "sweep", "scan"]
    assert journal.read() is None
    assert radio.close(5)


def test_close_finishes_queued_work_then_refuses_more():
    radio = Radio(Recording(delay=0.05))
    queued = [radio.submit(radio.wifi.scan, "scan") for _ in range(3)]
    assert radio.close(5)
    assert all(f.done() and not f.exception() for f in queued)
    with pytest.raises(WifiUnavailable):
        radio.submit(radio.wifi.scan, "scan")
    assert radio.refresh(max_age=0) is None


def test_radios_replace_the_backend_of_an_adapter():
    radios = Radios()
    a, b = Recording(), Recording()
    first = radios.own(a, adapter="wlan0")
    second = radios.own(b, adapter="wlan0")
    assert second is not first and radios.get("wlan0") is second
    with pytest.raises(WifiUnavailable):  # the replaced one takes no new work
        first.submit(lambda: None, "late")
    assert radios.close(5)


def test_ctrl_c_while_waiting_for_the_radio_gives_up_the_turn():
    import ctypes

    radio = Radio(Recording())
    release = threading.Event()
    holder = threading.Thread(target=lambda: radio.call(lambda: release.wait(5), "batch"))
    holder.start()
    time.sleep(0.1)
    outcome: list[str] = []

    def waiter() -> None:
        try:
            with radio.hold("scan from the terminal"):
                outcome.append("granted")
        except KeyboardInterrupt:
            outcome.append("interrupted")

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert radio.state().queued == ("scan from the terminal",)
    # What Ctrl-C does to a waiting CLI: KeyboardInterrupt raised in that thread.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(t.ident), ctypes.py_object(KeyboardInterrupt)
    )
    t.join(5)
    assert outcome == ["interrupted"]
    release.set()
    holder.join(5)
    # The abandoned turn is skipped: the radio serves the next caller at once.
    assert radio.submit(lambda: "next", "next").result(2) == "next"
    assert radio.state().queued == () and radio.is_idle()
    assert radio.close(5)
