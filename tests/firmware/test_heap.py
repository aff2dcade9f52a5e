"""The heap budget: the firmware boots, serves the setup API and runs the MQTT loop
with `-X heapsize=96k` (an ESP32-WROOM without PSRAM has roughly 100-130 KB).

Every test in this folder runs devices at 96 KB already; this one walks a whole
life in one go and checks the margin. benchmarks/firmware_heap.py measures the peak.
"""

from __future__ import annotations

import json

from fw_helpers import HOME_SSID, api_for, provision
from support import wait_for

from station.sim.device import DEFAULT_HEAP, SimDevice

P = "home/esp32_dht11_001"


def test_default_heap_is_the_budget():
    assert DEFAULT_HEAP == "96k"


def test_a_whole_life_fits_in_96k(home, devices, mqtt_broker, observer):
    dev = devices()
    assert dev.heap == "96k"
    api = api_for(dev)
    for path in ("/api/info", "/api/scan", "/api/status"):
        assert api.get(path).status_code == 200
    assert api.post("/api/wifi", {"pad": "x" * 1100}).status_code == 413
    assert api.post("/api/mqtt", {"pad": "x" * 6200}).status_code == 413
    assert api.post("/api/wifi", data=b"[").status_code == 400
    provision(api, mqtt_broker)
    observer.wait(f"{P}/status", lambda p: p == b"online")
    for cmd in ({"cmd": "identify"}, {"cmd": "set_interval", "value": 1}, {"cmd": "nope"}):
        observer.publish(f"{P}/cmd", json.dumps(cmd))
    wait_for(lambda: observer.count(f"{P}/event") >= 3, 5)
    wait_for(lambda: observer.count(f"{P}/state") >= 4, 8)
    free = min(s["heap_free"] for s in observer.json(f"{P}/state"))
    assert free > 24_000, f"only {free} bytes free after gc while running"
    home.remove_home_network(HOME_SSID)  # fallback: setup mode again
    back = api_for(dev, timeout=15)
    assert back.get("/api/scan").status_code == 200
    assert "MemoryError" not in dev.log_text()


def test_the_heap_cap_is_real(air, firmware_dir):
    # The same firmware on a heap far too small must fail: the budget check can fail.
    dev = SimDevice(
        air,
        "A4CF12000024",
        firmware_dir,
        heap="24k",
        timing={"button_window_ms": 0, "restart_delay_ms": 100},
    )
    dev.start()
    try:
        wait_for(lambda: "MemoryError" in dev.log_text(), 10)
        assert air.setup_ap(dev.chip_id) is None
    finally:
        dev.stop()
