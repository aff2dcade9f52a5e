"""One owner for the radio over the NetworkManager backend and the fake nmcli: concurrent
callers never run two nmcli calls at once, and status reads never see another caller's trip."""

from __future__ import annotations

import threading

import pytest

from station.wifi import Excursion
from station.wifi.nm import NetworkManagerBackend
from station.wifi.radio import Radio, Radios

pytestmark = pytest.mark.timeout(90)

DEVICES = ["esp32-dht11-Setup-0000A1", "esp32-dht11-Setup-0000A2"]


@pytest.fixture
def site(fake_nm):
    for i, ssid in enumerate(DEVICES, 1):
        fake_nm.add_ap(ssid, "12345678", bssid=f"24:0a:c4:00:00:a{i}", gateway="127.0.0.2")
    return fake_nm


def test_concurrent_callers_get_their_own_answers_and_nmcli_runs_one_at_a_time(site):
    radio = Radio(NetworkManagerBackend("wlan0"))
    wifi = radio.wifi
    expected_scan = wifi.scan()
    assert sorted(r.ssid for r in expected_scan) == sorted(["Home Net", *DEVICES])
    wrong: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def reader(n: int) -> None:
        start.wait()
        try:
            for i in range(4):
                if (i + n) % 2:
                    net = wifi.current()
                    # A trip runs meanwhile: only the owner keeps it from showing here.
                    if net is None or net.ssid != "Home Net" or net.temporary:
                        wrong.append(f"current() answered {net!r}")
                elif wifi.scan() != expected_scan:
                    wrong.append("scan() answered another list")
        except BaseException as exc:
            errors.append(exc)

    def traveller() -> None:
        start.wait()
        try:
            for _ in range(2):
                with Excursion(wifi) as trip:
                    for ssid in DEVICES:
                        link = trip.connect(ssid, "12345678", timeout=10)
                        if link.device.host != "127.0.0.2":
                            wrong.append(f"join of {ssid} answered {link.device.host}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=traveller))
    for t in threads:
        t.start()
    for t in threads:
        t.join(80)
    assert errors == [] and wrong == []
    assert site.overlapping() == []
    assert site.rejected == []
    # No reader's call fell inside a trip: from each `connection add` to the return home
    # (`connection up uuid <home>`) only the trip's own commands ran.
    log = site.log
    adds = [i for i, a in enumerate(log) if a[:2] == ["connection", "add"]]
    assert len(adds) == 4
    for trip_start in (adds[0], adds[2]):
        home = next(
            i for i in range(trip_start, len(log)) if log[i][2:5] == ["connection", "up", "uuid"]
        )
        inside = log[trip_start:home]
        assert not any(a[-4:-2] == ["--rescan", "yes"] for a in inside)  # no reader's scan
        assert not any(a[-2:] == ["show", "--active"] for a in inside)  # no reader's current
    assert site.active_name == "Home Net" and site.temp_connections() == []
    assert radio.close(10)


def test_status_reads_during_a_trip_make_no_nmcli_call(site):
    radio = Radio(NetworkManagerBackend("wlan0"))
    assert radio.wifi.current().ssid == "Home Net"
    on_device, go_on = threading.Event(), threading.Event()

    def trip() -> None:
        with radio.hold("provisioning batch") as wifi, Excursion(wifi) as t:
            t.connect(DEVICES[0], "12345678", timeout=10)
            on_device.set()
            go_on.wait(20)

    worker = threading.Thread(target=trip)
    worker.start()
    assert on_device.wait(20)
    before = len(site.calls())
    summaries = {radio.state().summary() for _ in range(20)}
    assert radio.refresh(max_age=0) is None
    assert len(site.calls()) == before
    assert summaries == {f"{DEVICES[0]} (busy: provisioning batch)"}
    go_on.set()
    worker.join(20)
    assert radio.state().summary() == "Home Net"
    assert radio.close(10)


def test_radios_keeps_one_queue_per_adapter(site):
    radios = Radios()
    a = NetworkManagerBackend("wlan0")
    first = radios.own(a)
    assert radios.own(a) is first and radios.own(first.wifi) is first
    assert first.adapter == "wlan0" and radios.get("wlan0") is first
    second = radios.own(NetworkManagerBackend("wlan1"))
    assert second is not first and {r.adapter for r in radios.all()} == {"wlan0", "wlan1"}
    # Two adapters, two queues: one held does not stop the other.
    with first.hold("trip on wlan0"):
        assert second.submit(lambda: "done", "other adapter").result(5) == "done"
    assert radios.close(5)
