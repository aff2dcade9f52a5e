"""Firmware with TLS (issue 10): plain MQTT against MQTT over TLS, in one run.

    python benchmarks/firmware_tls.py              # 3 runs each, heap search 40..96 KB
    python benchmarks/firmware_tls.py --runs 5 --no-search

The real firmware (.mpy) on the MicroPython unix port provisions itself against a
real Mosquitto (plain, then TLS with a throwaway CA, EC P-256 certificates), reboots
into home-network mode and publishes readings. Per mode it prints:

- heap needed: the smallest `-X heapsize` (2 KB steps, bisection) at which the whole
  life (setup API, trial with its broker check, reboot, MQTT connect, 4 readings)
  passes without a MemoryError, twice in a row: the GC heap's low-water mark, as
  benchmarks/firmware_heap.py measures it;
- heap_free: the lowest `heap_free` the running device reported (after gc.collect);
- native memory (/proc/<pid>/status): the setup-mode process's VmRSS/VmHWM growth
  across the trial's broker check (the TLS handshake), and VmHWM/VmRSS of the
  home-mode process after 4 readings: Mbed TLS allocates from the C heap, not the
  GC heap, on the unix port (and from the ESP-IDF heap on an ESP32);
- broker check: POST /api/mqtt until /api/status says reachable (TCP, + TLS handshake);
- connect: POST /api/restart until `<prefix>/status` = online at the broker
  (includes the reboot and the WiFi join of the simulation).

The unix port is 64-bit: objects are larger than on a 32-bit ESP32. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "firmware")]

import paho.mqtt.client as paho  # noqa: E402
from fw_helpers import FAST, HOME_PASSWORD, HOME_SSID, SEED_BROKER, Api  # noqa: E402
from mosquitto import Mosquitto  # noqa: E402
from support import wait_for  # noqa: E402
from tls_ca import TestCA  # noqa: E402

from station.sim import firmware  # noqa: E402
from station.sim.air import Air  # noqa: E402
from station.sim.fleet import Fleet  # noqa: E402

NODE = "esp32_dht11_001"
P = f"home/{NODE}"
TOKEN = "token-bench-0001"
PORT = 8883


class Watch:
    def __init__(self, port: int, ca: TestCA | None) -> None:
        self.got: list[tuple[str, bytes, float]] = []
        self.lock = threading.Lock()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{time.monotonic_ns()}")
        c.username_pw_set("observer", "observer-pw")
        if ca is not None:
            c.tls_set(ca_certs=str(ca.path), cert_reqs=ssl.CERT_REQUIRED)
        ready = threading.Event()
        c.on_connect = lambda *_a: c.subscribe("#", qos=1)
        c.on_subscribe = lambda *_a: ready.set()
        c.on_message = lambda _c, _u, m: self._add(m.topic, m.payload)
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert ready.wait(5)
        self.c = c

    def _add(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.got.append((topic, payload, time.monotonic()))

    def first(self, topic: str, payload: bytes | None = None) -> float | None:
        with self.lock:
            return next(
                (t for tp, p, t in self.got if tp == topic and (payload is None or p == payload)),
                None,
            )

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for tp, p, _t in self.got if tp == topic]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])  # kB
    return out


def life(tls: bool, heap_kb: int, build: Path, work: Path) -> dict[str, Any]:
    """One device life; raises AssertionError (with the reason) if it does not pass."""
    stamp = time.monotonic_ns()
    ca = TestCA(work / f"ca-{stamp}") if tls else None
    cert = ca.issue("broker", hosts=(SEED_BROKER, "127.0.0.1")) if ca else None
    broker = Mosquitto(
        work / f"mosq-{stamp}", users={NODE: TOKEN, "observer": "observer-pw"}, tls=cert
    ).start()
    air = Air(work / f"air-{stamp}")
    air.add_home_network(
        HOME_SSID, HOME_PASSWORD, reach={f"{SEED_BROKER}:{PORT}": f"127.0.0.1:{broker.port}"}
    )
    fleet = Fleet(air, build, ["A4CF12EF5678"], heap=f"{heap_kb}k", timing=dict(FAST))
    dev = fleet[0]
    watch = Watch(broker.port, ca)
    try:
        fleet.start()  # supervised: the reboot into home mode starts a new process
        api = Api(dev.wait_for_setup_ap(5).api_url)
        api.post("/api/wifi", {"ssid": HOME_SSID, "password": HOME_PASSWORD}).raise_for_status()
        api.status_until(lambda s: s["wifi"] != "connecting")
        body: dict[str, Any] = {
            "broker": SEED_BROKER,
            "port": PORT,
            "topic_prefix": P,
            "node_name": NODE,
            "username": NODE,
            "password": TOKEN,
        }
        if ca is not None:
            body |= {"tls": True, "ca": ca.pem}
        time.sleep(0.3)  # let the setup-mode process settle
        before = _proc_status(dev.proc.pid)  # type: ignore[union-attr]
        t0 = time.monotonic()
        r = api.post("/api/mqtt", body)
        assert r.status_code == 200, r.text
        s = api.status_until(lambda s: s["broker"] != "unknown", timeout=10)
        check_s = time.monotonic() - t0
        assert s["broker"] == "reachable", s
        time.sleep(0.3)
        after = _proc_status(dev.proc.pid)  # type: ignore[union-attr]
        check_rss = after["VmRSS"] - before["VmRSS"]
        check_hwm = after["VmHWM"] - before["VmHWM"]
        t1 = time.monotonic()
        api.post("/api/restart")
        wait_for(lambda: watch.first(f"{P}/status", b"online"), 20, 0.005)
        connect_s = watch.first(f"{P}/status", b"online") - t1  # type: ignore[operator]
        wait_for(lambda: len(watch.payloads(f"{P}/state")) >= 4, 20, 0.05)
        mem = _proc_status(dev.proc.pid)  # type: ignore[union-attr]
        free = min(json.loads(p)["heap_free"] for p in watch.payloads(f"{P}/state"))
        assert "MemoryError" not in dev.log_text(), dev.log_text()[-1500:]
        return {
            "check_s": check_s,
            "connect_s": connect_s,
            "heap_free": free,
            "check_rss": check_rss,
            "check_hwm": check_hwm,
            **mem,
        }
    finally:
        watch.close()
        fleet.stop()
        broker.stop()


def passes(tls: bool, heap_kb: int, build: Path, work: Path, repeat: int = 2) -> bool:
    for _ in range(repeat):
        try:
            life(tls, heap_kb, build, work)
        except Exception:
            return False
    return True


def heap_needed(tls: bool, build: Path, work: Path, lo: int, hi: int) -> int | None:
    if not passes(tls, hi, build, work):
        return None
    while hi - lo > 2:
        mid = (lo + hi) // 2 // 2 * 2
        if passes(tls, mid, build, work):
            hi = mid
        else:
            lo = mid
    return hi


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--heap", type=int, default=96, help="KB for the timed runs")
    ap.add_argument("--no-search", action="store_true", help="skip the heap bisection")
    ap.add_argument("--lo", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fw-tls-bench-") as tmp:
        work = Path(tmp)
        build = work / "build"
        firmware.build(build, board="host")
        rows = {}
        for tls in (False, True):
            runs = [life(tls, args.heap, build, work) for _ in range(args.runs)]
            rows[tls] = {k: [r[k] for r in runs] for k in runs[0]}
        need = {}
        if not args.no_search:
            for tls in (False, True):
                need[tls] = heap_needed(tls, build, work, args.lo, args.heap)
    print(f"Firmware plain vs TLS, unix port, -X heapsize={args.heap}k, {args.runs} runs each")
    print(f"{'':28} {'plain':>12} {'TLS':>12}")

    def line(label: str, key: str, fmt: str, agg=statistics.median) -> None:
        a, b = agg(rows[False][key]), agg(rows[True][key])
        print(f"{label:28} {fmt.format(a):>12} {fmt.format(b):>12}")

    if need:
        fmt = lambda v: "-" if v is None else f"{v} KB"  # noqa: E731
        print(f"{'heap needed (low-water)':28} {fmt(need[False]):>12} {fmt(need[True]):>12}")
    line("lowest heap_free (bytes)", "heap_free", "{:,}", min)
    line("setup: VmRSS growth (kB)", "check_rss", "{:+,.0f}")
    line("setup: VmHWM growth (kB)", "check_hwm", "{:+,.0f}")
    print("  (one process, before POST /api/mqtt -> after its broker check: the handshake's")
    print("   Mbed TLS buffers come from the C heap, not the GC heap)")
    line("home: VmHWM (kB, median)", "VmHWM", "{:,}")
    line("home: VmRSS (kB, median)", "VmRSS", "{:,}")
    hwm = statistics.median(rows[True]["VmHWM"]) - statistics.median(rows[False]["VmHWM"])
    rss = statistics.median(rows[True]["VmRSS"]) - statistics.median(rows[False]["VmRSS"])
    print(f"{'home: TLS - plain':28} {'':>12} {f'{hwm:+,.0f} / {rss:+,.0f} kB':>12}")
    print("  (VmHWM / VmRSS after 4 readings, two processes: CPython hosts the VM, so")
    print("   about 13 MB is the host itself and allocator reuse hides small deltas)")
    line("broker check (ms, median)", "check_s", "{:.0f}", lambda v: statistics.median(v) * 1000)
    line(
        "restart->online (ms, median)", "connect_s", "{:.0f}", lambda v: statistics.median(v) * 1000
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
