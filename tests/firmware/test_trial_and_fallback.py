"""The trial connection behind /api/status, and the fallback that never strands a device."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

from fw_helpers import HOME_PASSWORD, HOME_SSID, SEED_BROKER, api_for, provision, seed_mqtt_body
from support import wait_for


def _final(status: dict) -> bool:
    return status["wifi"] != "connecting"


def test_trial_reports_connected_ip_and_reachable_broker(home, device, api):
    assert api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD}).json() == {
        "ok": True
    }
    s = api.status_until(_final)
    assert s["wifi"] == "connected"
    assert s["ip"].startswith("192.168.29.")
    assert s["broker"] == "unknown"  # no MQTT config yet
    api.post("/api/mqtt", seed_mqtt_body())
    s = api.status_until(lambda s: s["broker"] != "unknown")
    assert s == {"wifi": "connected", "ip": s["ip"], "broker": "reachable"}
    assert device.wait_for_setup_ap()  # the AP stayed up through it all (AP+STA)


def test_trial_reports_wrong_password(home, device, api):
    api.post("/api/wifi", {"ssid": HOME_SSID, "password": "not-the-password"})
    assert api.status_until(_final) == {"wifi": "wrong_password", "ip": None, "broker": "unknown"}


def test_trial_reports_no_ap_found(home, device, api):
    api.post("/api/wifi", {"ssid": "NoSuchNetwork", "password": HOME_PASSWORD})
    assert api.status_until(_final)["wifi"] == "no_ap_found"


def test_trial_reports_an_unreachable_broker(home, device, api):
    api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD})
    api.status_until(_final)
    api.post(
        "/api/mqtt", {**seed_mqtt_body(), "broker": "10.9.9.9"}
    )  # not reachable from this network
    assert api.status_until(lambda s: s["broker"] != "unknown")["broker"] == "unreachable"


def test_trial_reports_a_closed_broker_port(air, device, api):
    from support import free_port

    closed = free_port()  # reachable host, nothing listening: refused at once
    air.add_home_network(HOME_SSID, HOME_PASSWORD, reach=[f"127.0.0.1:{closed}"])
    api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD})
    api.post("/api/mqtt", {**seed_mqtt_body(), "broker": "127.0.0.1", "port": closed})
    assert api.status_until(lambda s: s["broker"] != "unknown")["broker"] == "unreachable"


def test_a_second_wifi_post_replaces_the_trial(home, device, api):
    api.post("/api/wifi", {"ssid": HOME_SSID, "password": "wrong-password"})
    api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD})
    assert api.status_until(_final)["wifi"] == "connected"
    assert device.config()["wifi"]["password"] == HOME_PASSWORD


def test_wrong_home_password_falls_back_to_setup_with_the_reason(home, device, api, mqtt_broker):
    api.post("/api/wifi", {"ssid": HOME_SSID, "password": "wrong-password"})
    api.post("/api/mqtt", seed_mqtt_body())
    boots = device.boots
    api.post("/api/restart")
    device.wait_for_reboot(boots)
    # The AP goes down while it tries the home network, then comes back: never stranded.
    device.air.wait_for_no_setup_ap(device.chip_id, 5)
    started = time.monotonic()
    back = api_for(device, timeout=10)
    assert 1.5 < time.monotonic() - started < 8  # fallback_s = 2 in these tests
    assert back.get("/api/status").json()["wifi"] == "wrong_password"
    info = back.get("/api/info").json()
    assert info["state"] == "setup" and info["wifi_configured"] and info["mqtt_configured"]
    assert device.config()["wifi"]["password"] == "wrong-password"  # config kept
    # The station fixes the password through the AP: the device gets home.
    assert back.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD}).json() == {
        "ok": True
    }
    assert back.status_until(_final)["wifi"] == "connected"


def test_fallback_device_retries_and_returns_when_the_network_appears(
    air, devices, mqtt_broker, observer
):
    dev = devices(retry_s=1, busy_s=0)
    api = api_for(dev)
    provision(api, mqtt_broker)  # the home network does not exist (yet)
    dev.air.wait_for_no_setup_ap(dev.chip_id, 5)
    api_for(dev, timeout=10)  # fell back to setup mode
    assert dev.air.setup_ap(dev.chip_id) is not None
    target = f"127.0.0.1:{mqtt_broker.port}"
    air.add_home_network(HOME_SSID, HOME_PASSWORD, reach={f"{SEED_BROKER}:1883": target})
    # The periodic retry finds it and the device goes to work on its own.
    observer.wait("home/esp32_dht11_001/status", lambda p: p == b"online", timeout=15)
    assert dev.air.setup_ap(dev.chip_id) is None


def test_a_person_using_the_api_holds_off_the_automatic_retry(air, devices, mqtt_broker):
    dev = devices(retry_s=1, busy_s=30)
    api = api_for(dev)
    provision(api, mqtt_broker)
    dev.air.wait_for_no_setup_ap(dev.chip_id, 5)
    api = api_for(dev, timeout=10)  # fell back (no network on the air)
    air.add_home_network(HOME_SSID, HOME_PASSWORD, reach=[f"127.0.0.1:{mqtt_broker.port}"])
    boots = dev.boots
    api.get("/api/info")  # someone is at the device
    time.sleep(3)
    assert dev.boots == boots and dev.air.setup_ap(dev.chip_id) is not None


def test_broker_never_reached_falls_back_to_setup(air, device, api, mqtt_broker):
    # Right network, but a broker address this network does not reach.
    air.add_home_network(HOME_SSID, HOME_PASSWORD, reach=[])
    provision(api, mqtt_broker)
    device.air.wait_for_no_setup_ap(device.chip_id, 5)
    back = api_for(device, timeout=15)
    assert back.get("/api/status").json() == {
        "wifi": "connected",
        "ip": back.get("/api/status").json()["ip"],
        "broker": "unreachable",
    }


def test_running_device_that_loses_its_network_falls_back(home, device, api, mqtt_broker, observer):
    provision(api, mqtt_broker)
    observer.wait("home/esp32_dht11_001/status", lambda p: p == b"online")
    home.remove_home_network(HOME_SSID)  # the router dies
    back = api_for(device, timeout=15)
    assert back.get("/api/status").json()["wifi"] == "no_ap_found"
    # The will fires too: the broker sees the device go.
    wait_for(lambda: observer.payloads("home/esp32_dht11_001/status")[-1] == b"offline", 10)


def test_holding_boot_button_at_power_on_erases_the_config(home, devices, mqtt_broker, observer):
    dev = devices(button_window_ms=500)
    provision(api_for(dev), mqtt_broker)
    observer.wait("home/esp32_dht11_001/status", lambda p: p == b"online")
    dev.power_off()
    dev.air.set_button_held(dev.chip_id, True)
    dev.start()
    wait_for(lambda: "config erased" in dev.log_text(), 10)
    dev.air.set_button_held(dev.chip_id, False)
    api = api_for(dev, timeout=10)
    assert api.get("/api/info").json()["wifi_configured"] is False
    assert dev.config() is None


def test_a_short_button_press_erases_nothing(home, devices, mqtt_broker, observer):
    dev = devices(button_window_ms=500, button_hold_s=2)
    provision(api_for(dev), mqtt_broker)
    observer.wait("home/esp32_dht11_001/status", lambda p: p == b"online")
    dev.power_off()
    dev.air.set_button_held(dev.chip_id, True)
    dev.start()
    wait_for(lambda: "BOOT button held" in dev.log_text(), 5)
    dev.air.set_button_held(dev.chip_id, False)  # released after ~0.5 s of 2
    observer.wait("home/esp32_dht11_001/status", lambda p: p == b"online", after=1)
    assert dev.config()["wifi"]["ssid"] == HOME_SSID


def test_trial_that_never_associates_reports_failed(home, devices):
    dev = devices(assoc_ms=60_000, trial_s=1)  # the radio keeps "connecting"
    api = api_for(dev)
    api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD})
    s = api.status_until(_final, timeout=5)
    assert s == {"wifi": "failed", "ip": None, "broker": "unknown"}


@contextlib.contextmanager
def _black_hole() -> Iterator[int]:
    """A loopback port whose accept queue is full: a TCP connect to it hangs (the
    kernel drops the SYNs) until the caller's own timeout."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("127.0.0.1", port))
            fillers.append(c)
        yield port
    finally:
        for c in fillers:
            c.close()
        srv.close()


def test_a_new_mqtt_post_restarts_a_running_broker_check(air, devices, mqtt_broker):
    dev = devices(probe_ms=4000, busy_s=60)  # no automatic retry (and reboot) meanwhile
    with _black_hole() as hole:
        good = f"127.0.0.1:{mqtt_broker.port}"
        air.add_home_network(
            HOME_SSID,
            HOME_PASSWORD,
            reach={"10.0.0.9:1883": f"127.0.0.1:{hole}", f"{SEED_BROKER}:1883": good},
        )
        api = api_for(dev)
        api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD})
        assert api.status_until(_final)["wifi"] == "connected"
        api.post("/api/mqtt", {**seed_mqtt_body(), "broker": "10.0.0.9"})  # hangs 4 s
        time.sleep(0.3)
        assert api.get("/api/status").json()["broker"] == "unknown"
        started = time.monotonic()
        api.post("/api/mqtt", seed_mqtt_body())  # the right broker, while that runs
        s = api.status_until(lambda s: s["broker"] != "unknown", timeout=3)
        assert s["broker"] == "reachable" and time.monotonic() - started < 2
        time.sleep(4.5)  # the old check would have ended by now: it must not report
        assert api.get("/api/status").json()["broker"] == "reachable"


def test_fallback_clock_starts_with_the_first_attempt(home, devices, mqtt_broker):
    # Each attempt "connects" for trial_s and fails. With fallback_s = 1 the first
    # failed attempt (2 s) already exceeds it: back in setup mode after one attempt,
    # not after a second one (the clock used to start when the first one *ended*).
    dev = devices(assoc_ms=60_000, trial_s=2, fallback_s=1)
    provision(api_for(dev), mqtt_broker)
    dev.air.wait_for_no_setup_ap(dev.chip_id, 5)
    started = time.monotonic()
    api_for(dev, timeout=10)
    assert time.monotonic() - started < 3.8
    assert dev.log_text().count("home: joining") == 1


def test_a_short_wifi_drop_reconnects_without_falling_back(home, devices, mqtt_broker, observer):
    dev = devices(fallback_s=6)
    provision(api_for(dev), mqtt_broker)
    observer.wait("home/esp32_dht11_001/status", lambda p: p == b"online")
    boots = dev.boots
    target = f"127.0.0.1:{mqtt_broker.port}"
    home.remove_home_network(HOME_SSID)  # the router reboots...
    wait_for(lambda: "home: wifi lost" in dev.log_text(), 5)
    time.sleep(1)
    home.add_home_network(  # ...and is back well within fallback_s
        HOME_SSID, HOME_PASSWORD, reach={f"{SEED_BROKER}:1883": target, target: target}
    )
    observer.wait("home/esp32_dht11_001/status", lambda p: p == b"online", after=1, timeout=10)
    assert dev.boots == boots and dev.air.setup_ap(dev.chip_id) is None
    assert "back to setup mode" not in dev.log_text()
