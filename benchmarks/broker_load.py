"""Broker load: N simulated devices publishing `state` at R msg/s through the station's
embedded broker (its auth/ACL/tracking plugins and registry ingest switched on).

    python benchmarks/broker_load.py                       # N = 200 and 1000, 1 msg/s
    python benchmarks/broker_load.py --devices 500 --rate 2 --duration 20
    python benchmarks/broker_load.py --against station     # without the Mosquitto column

Each device logs in with its own issued token and client id, sets a retained will,
subscribes to its `cmd` topic, publishes a retained `online` (QoS 1), then `state`
(QoS 0) every 1/R s with a random phase. One station subscriber on `home/+/state`
measures end-to-end latency from the send time carried in the payload. The broker
runs in its own process so its CPU and RSS are measured alone (psutil); traffic
stays on 127.0.0.1.

With `--against station,mosquitto` (the default when Mosquitto is installed) the same
load generator then runs against Mosquitto configured the same way: a password file
with the same per-device tokens, an ACL per device (`user <node>` / `topic readwrite
<prefix>/#`) and the station subscriber's login (tests/mosquitto.py starts it), and a
side-by-side table gives the ratios station / Mosquitto from that one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mqtt_wire import PUBLISH, Connection, parse_publish, read_packet

HOST = "127.0.0.1"
BROKERS = ("station", "mosquitto")


# -- Mosquitto, configured as the station's broker --------------------------------------


def mosquitto_launcher() -> Any:
    """tests/mosquitto.py, the one Mosquitto launcher (loaded by path: putting tests/ on
    sys.path would make tests/broker shadow the broker package)."""
    if "mosquitto" not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "tests" / "mosquitto.py"
        spec = importlib.util.spec_from_file_location("mosquitto", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["mosquitto"] = module
        spec.loader.exec_module(module)
    return sys.modules["mosquitto"]


def mosquitto_available() -> bool:
    try:
        mosquitto_launcher().binary()
    except RuntimeError:
        return False
    return True


def mosquitto_acl(devices: list[dict], station_user: str) -> str:
    """The station's ACL in Mosquitto's words: the station reads and writes everything,
    each device its own prefix (its Home Assistant discovery topics are not used by
    the load, and Mosquitto's ACL file cannot express them with a wildcard)."""
    lines = [f"user {station_user}", "topic readwrite #", ""]
    for d in devices:
        lines += [f"user {d['node']}", f"topic readwrite {d['prefix']}/#", ""]
    return "\n".join(lines)


def mosquitto_setup(workdir: Path, devices: list[dict]):  # -> (Mosquitto, (user, token))
    """A Mosquitto (not started) with the devices' tokens and the station's login."""
    from station.registry.credentials import new_token

    Mosquitto = mosquitto_launcher().Mosquitto

    station = ("station", new_token())
    users = {d["node"]: d["token"] for d in devices} | {station[0]: station[1]}
    return Mosquitto(workdir, users=users, acl=mosquitto_acl(devices, station[0])), station


def register_devices(db: str, n: int) -> list[dict]:
    """N devices in a fresh registry at `db`, each with its issued token."""
    from station.registry import Registry

    reg = Registry(db)
    devices = []
    for _ in range(n):
        issued = reg.register_device()
        devices.append(
            {
                "node": issued.device.node_name,
                "token": issued.token,
                "prefix": issued.device.topic_prefix,
            }
        )
    reg.close()
    return devices


# -- broker process ----------------------------------------------------------------------


def serve(db: str, port: int, gc_tuning: bool, event_loop: str) -> None:
    """Child process: the embedded broker exactly as the station runs it."""
    import logging
    import signal
    import threading

    from broker import EmbeddedBroker
    from station.registry import Registry
    from station.settings import BrokerSettings

    logging.basicConfig(level=logging.WARNING)
    registry = Registry(db)
    broker = EmbeddedBroker(
        registry,
        BrokerSettings(bind_host=HOST, port=port, gc_tuning=gc_tuning, event_loop=event_loop),
    )
    broker.start()
    lags: list[tuple[float, float]] = []

    async def lag_probe() -> None:
        # How late a 10 ms timer fires on the broker's loop: stalls show up here.
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.time(), (time.perf_counter() - t - 0.01) * 1000))

    probe = asyncio.run_coroutine_threadsafe(lag_probe(), broker.loop)
    user, token = broker.station_credentials()
    print(json.dumps({"port": broker.port, "user": user, "token": token}), flush=True)
    stop = threading.Event()
    measure_from: list[float] = []
    # SIGUSR1 from the load generator marks the start of the measured window.
    signal.signal(signal.SIGUSR1, lambda *_: measure_from.append(time.time()))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    probe.cancel()
    window = [lag for t, lag in lags if t >= measure_from[0]] if measure_from else []
    print(
        json.dumps(
            {
                "loop_lag_ms_p50": round(percentile(window, 50), 2),
                "loop_lag_ms_p99": round(percentile(window, 99), 2),
                "loop_lag_ms_max": round(max(window, default=0), 2),
                "ingest_errors": broker.ingest.errors,
                "ingest_batches": broker.ingest.batches,
            }
        ),
        flush=True,
    )
    broker.stop()
    registry.close()


# -- load generator -----------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def registry_counts(db: str) -> tuple[int, int]:
    """Devices online and readings stored, read from the live SQLite file (WAL)."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        online = con.execute("SELECT COUNT(*) FROM device WHERE online").fetchone()[0]
        readings = con.execute("SELECT COUNT(*) FROM reading").fetchone()[0]
    finally:
        con.close()
    return online, readings


async def run_load(
    port: int,
    station: tuple[str, str],
    devices: list[dict],
    rate: float,
    duration: float,
    settle: float,
    broker_pid: int,
    db: str | None,
    mark: bool = True,
) -> dict:
    latencies: list[float] = []
    settling: list[float] = []  # sent during the settle window right after the storm
    timeline: list[tuple[float, float]] = []
    start = float("inf")
    received = 0
    sub = await Connection.open(HOST, port, "bench-subscriber", *station)
    assert await sub.subscribe("home/+/state") == 0
    sub.start_pinging()

    async def subscriber() -> None:
        nonlocal received
        while True:
            ptype, flags, body = await read_packet(sub.reader)
            if ptype != PUBLISH:
                continue
            _, payload = parse_publish(flags, body)
            now = time.time()
            received += 1
            sent_t = json.loads(payload)["t"]
            if sent_t >= start:
                latencies.append(now - sent_t)
                timeline.append((sent_t, now - sent_t))
            else:
                settling.append(now - sent_t)

    sub_task = asyncio.create_task(subscriber())

    # Connect storm: every device at once, each with its will and a retained `online`.
    async def join(dev: dict) -> Connection:
        prefix = dev["prefix"]
        conn = await Connection.open(
            HOST,
            port,
            dev["node"],
            dev["node"],
            dev["token"],
            will=(f"{prefix}/status", b"offline"),
        )
        # As the firmware does: subscribe to its commands, then announce itself.
        assert await conn.subscribe(f"{prefix}/cmd", 1) == 1
        await conn.publish_ack(f"{prefix}/status", b"online", retain=True)
        conn.start_pinging()
        return conn

    # The load generator must not stall itself: its own GC passes over 1000 coroutines
    # would show up as broker latency. (The broker process keeps the station's GC policy.)
    gc.collect()
    gc.freeze()
    gc.disable()
    t0 = time.perf_counter()
    conns = await asyncio.gather(*(join(d) for d in devices))
    storm_s = time.perf_counter() - t0

    proc = psutil.Process(broker_pid)
    sent = 0
    period = 1.0 / rate
    publish_from = time.time() + 0.5
    start = publish_from + settle
    stop_at = start + duration

    async def device_loop(conn: Connection, prefix: str) -> None:
        nonlocal sent
        conn.stop_pinging()  # publishing every 1/R s keeps the connection alive
        uptime = 0
        next_t = publish_from + random.random() * period
        while next_t < stop_at:
            await asyncio.sleep(max(0.0, next_t - time.time()))
            uptime += 1
            payload = json.dumps(
                {
                    "temperature": round(random.uniform(18, 26), 1),
                    "humidity": round(random.uniform(30, 60), 1),
                    "rssi": -60,
                    "uptime": uptime,
                    "heap_free": 81234,
                    "t": time.time(),
                }
            )
            conn.publish(f"{prefix}/state", payload.encode())
            sent += 1
            next_t += period

    rss_samples: list[int] = []

    async def sampler() -> None:
        while True:
            rss_samples.append(proc.memory_info().rss)
            await asyncio.sleep(1.0)

    sampler_task = asyncio.create_task(sampler())
    gen_lags: list[float] = []

    async def own_lag() -> None:
        # The load generator's own stalls would show up as broker latency: measure them.
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            if time.time() >= start:
                gen_lags.append((time.perf_counter() - t - 0.01) * 1000)

    lag_task = asyncio.create_task(own_lag())
    publishers = asyncio.gather(
        *(device_loop(c, d["prefix"]) for c, d in zip(conns, devices, strict=True))
    )
    await asyncio.sleep(max(0.0, start - time.time()))
    me = psutil.Process()
    cpu0, wall0, self0 = proc.cpu_times(), time.perf_counter(), me.cpu_times()
    if mark:
        proc.send_signal(signal.SIGUSR1)
    await publishers
    # Drain: give the last messages time to arrive.
    deadline = time.time() + 5
    while received < sent and time.time() < deadline:
        await asyncio.sleep(0.05)
    cpu1, wall1, self1 = proc.cpu_times(), time.perf_counter(), me.cpu_times()
    await asyncio.sleep(0.5)  # let the ingest thread commit its last batch
    online, readings = registry_counts(db) if db else (None, None)
    sampler_task.cancel()
    lag_task.cancel()
    sub_task.cancel()
    for c in conns:
        c.close()
    sub.close()
    busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    ms = [x * 1000 for x in latencies]
    return {
        "devices": len(devices),
        "rate_per_device": rate,
        "duration_s": duration,
        "connect_storm_s": round(storm_s, 2),
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "delivered_per_s": round(len(latencies) / duration, 1),
        "settle_s": settle,
        "settle_latency_ms_p99": round(percentile([x * 1000 for x in settling], 99), 2),
        "latency_ms_p50": round(percentile(ms, 50), 2),
        "latency_ms_p99": round(percentile(ms, 99), 2),
        "latency_ms_max": round(max(ms), 2) if ms else None,
        "latency_ms_mean": round(statistics.fmean(ms), 2) if ms else None,
        "broker_cpu_pct": round(100 * busy / (wall1 - wall0), 1),
        "loadgen_lag_ms_p99": round(percentile(gen_lags, 99), 2),
        "loadgen_lag_ms_max": round(max(gen_lags, default=0), 2),
        "loadgen_cpu_pct": round(
            100 * ((self1.user - self0.user) + (self1.system - self0.system)) / (wall1 - wall0), 1
        ),
        "broker_rss_mb_max": round(max(rss_samples) / 2**20, 1) if rss_samples else None,
        "p99_ms_per_second": [
            round(percentile([lat * 1000 for t, lat in timeline if int(t - start) == sec], 99), 1)
            for sec in range(int(duration))
        ],
        "online_in_registry": online,
        "readings": readings,
    }


def one_run(
    n: int,
    rate: float,
    duration: float,
    settle: float,
    gc_tuning: bool,
    event_loop: str,
    kind: str = "station",
) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "registry.sqlite3")
        devices = register_devices(db, n)
        if kind == "mosquitto":
            version = mosquitto_launcher().version
            mosq, station = mosquitto_setup(Path(tmp) / "mosquitto", devices)
            with mosq:
                assert mosq.proc is not None
                result = asyncio.run(
                    run_load(
                        mosq.port,
                        station,
                        devices,
                        rate,
                        duration,
                        settle,
                        mosq.proc.pid,
                        None,
                        mark=False,
                    )
                )
            result.update(
                {
                    "broker": f"mosquitto {version()}",
                    "gc_tuning": None,
                    "event_loop": None,
                    "loop_lag_ms_p99": None,
                    "loop_lag_ms_max": None,
                }
            )
            return result
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", db, "--port", "0"]
            + ([] if gc_tuning else ["--no-gc-tuning"])
            + ["--event-loop", event_loop],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            hello = json.loads(child.stdout.readline())
            result = asyncio.run(
                run_load(
                    hello["port"],
                    (hello["user"], hello["token"]),
                    devices,
                    rate,
                    duration,
                    settle,
                    child.pid,
                    db,
                )
            )
        finally:
            child.terminate()
            tail = child.communicate(timeout=60)[0]
        final = json.loads(tail.strip().splitlines()[-1])
        result.update(final)
        result["broker"] = "station"
        result["gc_tuning"] = gc_tuning
        result["event_loop"] = event_loop
        return result


def report(r: dict, timeline: bool = False) -> str:
    if r["broker"] != "station":
        head = f"N={r['devices']} devices x {r['rate_per_device']} msg/s on {r['broker']}"
        tail = f"  broker CPU {r['broker_cpu_pct']} % of a core, RSS {r['broker_rss_mb_max']} MB"
    else:
        head = (
            f"N={r['devices']} devices x {r['rate_per_device']} msg/s on the station broker "
            f"(gc_tuning={r['gc_tuning']}, event loop {r['event_loop']})"
        )
        tail = (
            f"  broker CPU {r['broker_cpu_pct']} % of a core, RSS {r['broker_rss_mb_max']} MB, "
            f"loop lag p99 {r['loop_lag_ms_p99']} ms / max {r['loop_lag_ms_max']} ms"
        )
    lines = [
        f"{head}, {r['duration_s']:.0f} s measured after {r['settle_s']:.0f} s settling",
        f"  connect storm {r['connect_storm_s']} s; sent {r['sent']}, received "
        f"{r['received']}, lost {r['lost']}; delivered {r['delivered_per_s']} msg/s",
        f"  latency p50 {r['latency_ms_p50']} ms, p99 {r['latency_ms_p99']} ms, "
        f"max {r['latency_ms_max']} ms (settling window p99 {r['settle_latency_ms_p99']} ms)",
        tail,
        f"  load generator CPU {r['loadgen_cpu_pct']} %, its loop lag max "
        f"{r['loadgen_lag_ms_max']} ms; registry online {r['online_in_registry']}/"
        f"{r['devices']}, readings {r['readings']}",
    ]
    if timeline:
        lines.append(f"  p99 ms per second: {r['p99_ms_per_second']}")
    return "\n".join(lines)


SIDE_BY_SIDE = [
    ("connect storm", "connect_storm_s", "s"),
    ("lost", "lost", ""),
    ("p50", "latency_ms_p50", "ms"),
    ("p99", "latency_ms_p99", "ms"),
    ("max", "latency_ms_max", "ms"),
    ("settling p99", "settle_latency_ms_p99", "ms"),
    ("broker CPU", "broker_cpu_pct", "%"),
    ("broker RSS", "broker_rss_mb_max", "MB"),
]


def side_by_side(station: dict, mosquitto: dict) -> str:
    """Markdown table: station, Mosquitto and station / Mosquitto for one N."""
    lines = [
        f"| {station['devices']} x {station['rate_per_device']:g}/s | station | "
        f"{mosquitto['broker']} | station / Mosquitto |",
        "|---|---|---|---|",
    ]
    for label, key, unit in SIDE_BY_SIDE:
        a, b = station.get(key), mosquitto.get(key)
        ratio = f"{a / b:.1f}x" if isinstance(a, int | float) and b else "-"
        lines.append(f"| {label} | {a} {unit} | {b} {unit} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, nargs="*", default=[200, 1000])
    ap.add_argument("--rate", type=float, default=1.0, help="state messages per device per s")
    ap.add_argument("--duration", type=float, default=30.0, help="measured seconds per run")
    ap.add_argument(
        "--settle",
        type=float,
        default=5.0,
        help="seconds of publishing after the connect storm before measuring (reported separately)",
    )
    ap.add_argument(
        "--no-gc-tuning",
        action="store_true",
        help="run the broker without the station's GC tuning (for comparison)",
    )
    ap.add_argument(
        "--event-loop",
        default="auto",
        choices=["auto", "uvloop", "asyncio"],
        help="the broker's event loop (default: the station's choice)",
    )
    ap.add_argument(
        "--against",
        default=None,
        help="comma-separated brokers to run the same load against: station, mosquitto "
        "(default: both when Mosquitto is installed, else station)",
    )
    ap.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--json", action="store_true", help="print JSON lines only")
    ap.add_argument("--timeline", action="store_true", help="also print p99 per second")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port, not args.no_gc_tuning, args.event_loop)
        return
    print(
        f"# broker load, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{time.strftime('%Y-%m-%d')}",
        flush=True,
    )
    kinds = (
        args.against.split(",")
        if args.against
        else list(BROKERS)
        if mosquitto_available()
        else ["station"]
    )
    unknown = set(kinds) - set(BROKERS)
    if unknown:
        ap.error(f"unknown broker(s) {', '.join(sorted(unknown))}: choose from {BROKERS}")
    tables = []
    for n in args.devices:
        runs = {}
        for kind in kinds:
            r = one_run(
                n,
                args.rate,
                args.duration,
                args.settle,
                not args.no_gc_tuning,
                args.event_loop,
                kind,
            )
            runs[kind] = r
            if args.json:
                print(json.dumps(r), flush=True)
            else:
                print(report(r, args.timeline), flush=True)
        if "station" in runs and "mosquitto" in runs:
            tables.append(side_by_side(runs["station"], runs["mosquitto"]))
    for t in tables:
        print("\n" + t, flush=True)


if __name__ == "__main__":
    main()
