"""Firmware heap: how much MicroPython heap the firmware needs, on the unix port.

    python benchmarks/firmware_heap.py            # search 16..96 KB, then a run at 96 KB
    python benchmarks/firmware_heap.py --heap 96  # one run at 96 KB only

One scenario covers everything the device does, boot after boot: setup mode
(every endpoint, bad requests, parallel clients, trial connection), a reboot
into home-network mode (MQTT connect, retained publishes, Home Assistant
discovery, states, commands), then the home network vanishing so the device
falls back to setup mode (by a reboot: see firmware/README.md). "Peak heap" is
the smallest `-X heapsize` at which the whole scenario passes without a
MemoryError, found by bisection in 2 KB steps; near the limit heap
fragmentation makes runs differ, so a size counts as passing only if --repeat
runs in a row pass.

The unix port is 64-bit: its objects are larger than on a 32-bit ESP32, so the
figure is an upper bound for the board. Traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "firmware")]

from fw_helpers import (  # noqa: E402  (tests/firmware holds the one MQTT test broker)
    FAST,
    HOME_PASSWORD,
    HOME_SSID,
    SEED_BROKER,
    Api,
    MqttBroker,
    Observer,
    provision,
)
from support import wait_for  # noqa: E402

from station.sim import firmware  # noqa: E402
from station.sim.air import Air  # noqa: E402
from station.sim.fleet import Fleet  # noqa: E402

P = "home/esp32_dht11_001"
DUMP = False  # --dump: print each run's device console


def scenario(heap_kb: int, build: Path, workdir: Path) -> tuple[bool, str, int | None]:
    """Run the whole scenario once. Returns (passed, reason, lowest heap_free reported)."""
    broker = MqttBroker()  # a fresh one: no retained message from an earlier run
    broker.start()
    try:
        return _scenario(heap_kb, build, broker, workdir)
    finally:
        broker.close()


def _scenario(
    heap_kb: int, build: Path, broker: MqttBroker, workdir: Path
) -> tuple[bool, str, int | None]:
    air = Air(workdir / f"air-{heap_kb}-{time.monotonic_ns()}")
    target = f"127.0.0.1:{broker.port}"
    air.add_home_network(HOME_SSID, HOME_PASSWORD, reach={f"{SEED_BROKER}:1883": target})
    fleet = Fleet(air, build, ["A4CF12EF5678"], heap=f"{heap_kb}k", timing={**FAST, "retry_s": 60})
    dev = fleet[0]
    observer = Observer(broker)
    fleet.start()  # supervised: reboots restart the process
    try:
        api = Api(dev.wait_for_setup_ap(5).api_url)
        api.get("/api/info").raise_for_status()
        api.get("/api/scan").raise_for_status()
        for body in ({"ssid": ""}, {"broker": "x y"}, {"pad": "x" * 1100}):
            api.post("/api/mqtt", body)
        api.post("/api/wifi", data=b"{not json")
        api.get("/api/nothing")
        api.get("/api/wifi")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: Api(api.base).get("/api/status").json(), range(8)))
        provision(api, broker, restart=False)
        api.status_until(lambda s: s["broker"] == "reachable")
        boots = dev.boots
        api.post("/api/restart")
        wait_for(lambda: dev.boots > boots, 5)
        observer.wait(f"{P}/status", lambda p: p == b"online", timeout=8)
        wait_for(lambda: observer.count(f"{P}/state") >= 3, 8)
        for cmd in ({"cmd": "identify"}, {"cmd": "set_interval", "value": 1}, {"cmd": "nope"}):
            observer.publish(f"{P}/cmd", json.dumps(cmd))
        wait_for(lambda: observer.count(f"{P}/event") >= 3, 5)
        n = observer.count(f"{P}/state")
        wait_for(lambda: observer.count(f"{P}/state") >= n + 2, 5)
        # The home network vanishes: fallback to setup mode inside the same process.
        air.remove_home_network(HOME_SSID)
        back = Api(air.wait_for_setup_ap(dev.chip_id, 15).api_url)
        back.get("/api/info").raise_for_status()
        back.get("/api/scan").raise_for_status()
        assert back.get("/api/status").json()["wifi"] == "no_ap_found"
        free = [s["heap_free"] for s in observer.json(f"{P}/state")]
        ok, reason = True, "ok"
    except Exception as exc:  # any failure means: not enough heap (or a bug)
        ok, reason, free = False, f"{type(exc).__name__}: {exc}"[:200], []
    finally:
        observer.close()
        fleet.stop()
    log = dev.log_text()
    if DUMP:
        print(log[-3000:])
    if "MemoryError" in log:
        i = log.index("MemoryError")
        where = [ln.strip() for ln in log[max(0, i - 600) : i].splitlines() if 'File "' in ln][-2:]
        ok, reason = False, "MemoryError" + (" at " + " < ".join(reversed(where)) if where else "")
    if [c for c in dev.exit_codes if c not in (3, -15)]:
        ok, reason = False, f"exit codes {dev.exit_codes}"
    return ok, reason, min(free) if free else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--heap", type=int, help="one run at this heap size (KB) instead of a search"
    )
    parser.add_argument("--low", type=int, default=16)
    parser.add_argument("--high", type=int, default=96)
    parser.add_argument("--repeat", type=int, default=3, help="runs that must all pass (default 3)")
    parser.add_argument("--dump", action="store_true", help="print each run's device console")
    args = parser.parse_args()
    global DUMP
    DUMP = args.dump
    with tempfile.TemporaryDirectory(prefix="fw-heap-") as tmp:
        build = Path(tmp) / "build"
        firmware.build(build, board="host")
        files = sorted(build.rglob("*.mpy"))
        print(f"firmware: {len(files)} .mpy files, {sum(f.stat().st_size for f in files)} bytes")
        if args.heap:
            ok, reason, free = scenario(args.heap, build, Path(tmp))
            verdict = "pass" if ok else "FAIL"
            print(f"{args.heap} KB: {verdict} ({reason}); lowest heap_free {free}")
            return 0 if ok else 1
        lo, hi = args.low, args.high  # invariant: hi passes, lo fails (checked below)
        ok, reason, free96 = scenario(hi, build, Path(tmp))
        print(f"{hi} KB: {'pass' if ok else 'FAIL'} ({reason}); lowest heap_free {free96}")
        if not ok:
            return 1
        while hi - lo > 2:
            mid = (lo + hi) // 2 // 2 * 2
            for run in range(args.repeat):
                ok, reason, _ = scenario(mid, build, Path(tmp))
                print(f"{mid} KB run {run + 1}: {'pass' if ok else 'fail'} ({reason})")
                if not ok:
                    break
            lo, hi = (lo, mid) if ok else (mid, hi)
        print(
            f"peak heap: the scenario needs {hi} KB (fails at {lo} KB); "
            f"at 96 KB the lowest heap_free after gc in running mode was {free96} bytes"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
