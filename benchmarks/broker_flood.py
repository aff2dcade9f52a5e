"""Broker flood: publishers send as fast as the broker takes it; delivered msg/s.

    python benchmarks/broker_flood.py                     # station, Mosquitto, stock amqtt
    python benchmarks/broker_flood.py --against station --qos 0 --publishers 4 --duration 10

Each case starts a fresh broker in its own process: the station's embedded broker
exactly as the station runs it (auth, ACL, tracking, registry ingest), Mosquitto
2.0.11 configured the same way (password file with the same per-device tokens, an
ACL per device; tests/mosquitto.py), and stock amqtt 0.12.1 (`amqtt.broker.Broker`,
anonymous auth only, none of the station's changes). P publishers (devices, each
logged in with its own token) publish to `<prefix>/flood` for D seconds as fast as
the broker takes it: QoS 0 through TCP backpressure (write, drain), QoS 1 with up to
WINDOW unacknowledged PUBLISHes each. One station subscriber on `home/+/flood` (at
the same QoS, acknowledging at once) counts what is delivered.

Reported per case: accepted msg/s (QoS 0: taken by the broker's socket; QoS 1:
PUBACKed), delivered msg/s, the backlog at the end (accepted - delivered), the
broker's RSS growth during the flood, and the shutdown, started while the
publishers are still flooding: how long it took and whether it was clean (exit in
time, no "did not finish cleanly" or other warning/error in the broker's log).
Publishers run in a process of their own, the subscriber in this one; raw sockets
(benchmarks/mqtt_wire.py), since paho as a load generator measures paho.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from broker_load import HOST, mosquitto_available, mosquitto_setup, register_devices
from mqtt_wire import Connection, publish_packet

WINDOW = 100  # unacknowledged QoS 1 PUBLISHes per publisher (paho's default is 20)
PAYLOAD = b"x" * 64
BATCH = 100  # QoS 0 packets per write
STOP_WAIT_S = 30.0
BAD_LOG = ("did not finish cleanly", "Traceback", "not broadcasted", "Failed to cleanly")


# -- broker processes --------------------------------------------------------------------


def serve(kind: str, db: str) -> None:
    """Child process: one broker; prints its port, stops on SIGTERM, logs to stderr."""
    import logging
    import threading

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if kind == "station":
        from broker import EmbeddedBroker
        from station.registry import Registry
        from station.settings import BrokerSettings

        registry = Registry(db)
        broker = EmbeddedBroker(registry, BrokerSettings(bind_host=HOST, port=0))
        broker.start()
        user, token = broker.station_credentials()
        print(json.dumps({"port": broker.port, "user": user, "token": token}), flush=True)
        stop.wait()
        t = time.perf_counter()
        broker.stop()
        registry.close()
        print(json.dumps({"stop_s": round(time.perf_counter() - t, 2)}), flush=True)
        return
    # Stock amqtt: its Broker with anonymous auth only (amqtt's other default plugins,
    # the event/packet loggers and $SYS, cost 35-60 % of throughput; FIELD-NOTES.md).
    from amqtt.broker import Broker

    from station.loop_thread import LoopThread

    port = free_port()
    holder: dict[str, Broker] = {}

    async def start() -> None:
        holder["b"] = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {}},
            }
        )
        await holder["b"].start()

    import uvloop

    lt = LoopThread("amqtt", uvloop.new_event_loop)
    lt.start(start, 15)
    print(json.dumps({"port": port, "user": None, "token": None}), flush=True)
    stop.wait()
    t = time.perf_counter()
    lt.stop(holder["b"].shutdown, 10.0)
    print(json.dumps({"stop_s": round(time.perf_counter() - t, 2)}), flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- publishers (a process of their own) ---------------------------------------------------


async def flood(cfg: dict) -> dict:
    qos, duration = cfg["qos"], cfg["duration"]
    conns = [
        await Connection.open(HOST, cfg["port"], p["node"], p["user"], p["token"], keepalive=60)
        for p in cfg["publishers"]
    ]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    # Counted for `duration`; then flooding goes on (the broker is being stopped) until
    # the broker closes the connection, or STOP_WAIT_S.
    measured_until = time.monotonic() + duration
    end = measured_until + STOP_WAIT_S
    counts = [0] * len(conns)
    at_end: list[int] = []

    def tick() -> None:
        if not at_end and time.monotonic() >= measured_until:
            at_end.append(sum(counts))

    async def qos0(i: int, conn: Connection, topic: str) -> None:
        batch = b"".join(publish_packet(topic, PAYLOAD) for _ in range(BATCH))
        w = conn.writer
        while time.monotonic() < end:
            w.write(batch)
            try:
                await w.drain()
            except ConnectionError:
                return
            if w.transport.is_closing():
                return
            counts[i] += BATCH
            tick()

    async def qos1(i: int, conn: Connection, topic: str) -> None:
        head = bytes([0x32])
        topic_b = struct.pack("!H", len(topic)) + topic.encode()
        body_len = len(topic_b) + 2 + len(PAYLOAD)
        fixed = head + bytes([body_len]) if body_len < 128 else None
        assert fixed is not None
        inflight = 0
        more = asyncio.Event()
        next_id = 0

        gone = False

        async def acks() -> None:
            nonlocal inflight, gone
            r = conn.reader
            pending = b""
            while True:
                try:
                    chunk = await r.read(65536)
                except ConnectionError:
                    chunk = b""
                if not chunk:
                    gone = True
                    more.set()
                    return
                data = pending + chunk
                n = len(data) // 4  # PUBACK = 4 bytes; nothing else comes back
                pending = data[n * 4 :]
                counts[i] += n
                inflight -= n
                tick()
                more.set()

        reader = asyncio.create_task(acks())
        w = conn.writer
        while time.monotonic() < end and not gone:
            if inflight > WINDOW // 2:
                more.clear()
                try:
                    await asyncio.wait_for(more.wait(), max(0.001, end - time.monotonic()))
                except TimeoutError:
                    break
                continue
            parts = []
            for _ in range(WINDOW - inflight):
                next_id = next_id % 65535 + 1
                parts.append(fixed + topic_b + struct.pack("!H", next_id) + PAYLOAD)
            inflight += len(parts)
            w.write(b"".join(parts))
            try:
                await w.drain()
            except ConnectionError:
                break
        reader.cancel()

    run = qos0 if qos == 0 else qos1
    await asyncio.gather(
        *(
            run(i, c, p["topic"])
            for i, (c, p) in enumerate(zip(conns, cfg["publishers"], strict=True))
        ),
        return_exceptions=True,
    )
    tick()
    for c in conns:
        c.writer.transport.abort()
    return {"accepted": at_end[0] if at_end else sum(counts), "elapsed": duration}


def publisher_main(cfg_json: str) -> None:
    import uvloop

    result = uvloop.run(flood(json.loads(cfg_json)))
    print(json.dumps(result), flush=True)


# -- subscriber and one case ----------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.delivered = 0


async def count_deliveries(conn: Connection, counter: Counter) -> None:
    """Count PUBLISH packets; PUBACK the QoS 1 ones at once (one write per chunk)."""
    reader, writer = conn.reader, conn.writer
    buf = b""
    while True:
        chunk = await reader.read(262144)
        if not chunk:
            return
        buf = buf + chunk if buf else chunk
        i, n, acks = 0, len(buf), []
        while n - i >= 2:
            j, mult, length = i + 1, 1, 0
            while j < n:
                byte = buf[j]
                j += 1
                length += (byte & 0x7F) * mult
                if not byte & 0x80:
                    break
                mult *= 128
            else:
                break
            if j + length > n:
                break
            first = buf[i]
            if first >> 4 == 3:
                counter.delivered += 1
                if first & 0x06:
                    tlen = (buf[j] << 8) | buf[j + 1]
                    acks.append(b"\x40\x02" + buf[j + 2 + tlen : j + 4 + tlen])
            i = j + length
        buf = buf[i:]
        if acks:
            writer.write(b"".join(acks))


async def run_case(
    port: int,
    station: tuple[str | None, str | None],
    devices: list[dict],
    qos: int,
    duration: float,
    broker_proc: psutil.Process,
    stop_broker,
) -> dict:
    sub = await Connection.open(HOST, port, "bench-subscriber", *station, keepalive=60)
    granted = await sub.subscribe("home/+/flood", qos)
    assert granted == qos, granted
    counter = Counter()
    sub_task = asyncio.create_task(count_deliveries(sub, counter))
    cfg = {
        "port": port,
        "qos": qos,
        "duration": duration,
        "publishers": [
            {
                "node": d["node"],
                "user": d["node"] if station[0] else None,
                "token": d["token"] if station[0] else None,
                "topic": f"{d['prefix']}/flood",
            }
            for d in devices
        ],
    }
    pub = subprocess.Popen(
        [sys.executable, __file__, "--publish", json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, pub.stdout.readline)
    assert line.strip() == "ready", line
    await asyncio.sleep(0.5)
    rss0 = broker_proc.memory_info().rss
    rss_max = rss0
    cpu0 = broker_proc.cpu_times()
    pub.stdin.write("go\n")
    pub.stdin.flush()
    t0 = time.monotonic()
    d0 = counter.delivered
    while time.monotonic() - t0 < duration:
        await asyncio.sleep(0.25)
        try:
            rss_max = max(rss_max, broker_proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
    delivered = counter.delivered - d0
    elapsed = time.monotonic() - t0
    cpu1 = broker_proc.cpu_times()
    # Shutdown under load: the publishers are still writing their last batches.
    stop_t = time.monotonic()
    stop_broker()
    out, _ = await loop.run_in_executor(None, pub.communicate)
    pubres = json.loads(out.strip().splitlines()[-1])
    exited_s = await loop.run_in_executor(None, wait_exit, broker_proc, stop_t)
    sub_task.cancel()
    sub.writer.transport.abort()
    accepted = pubres["accepted"]
    busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return {
        "qos": qos,
        "publishers": len(devices),
        "duration_s": round(elapsed, 1),
        "accepted": accepted,
        "accepted_per_s": round(accepted / pubres["elapsed"]),
        "delivered": delivered,
        "delivered_per_s": round(delivered / elapsed),
        "backlog": max(0, accepted - delivered),
        "rss_start_mb": round(rss0 / 2**20, 1),
        "rss_growth_mb": round((rss_max - rss0) / 2**20, 1),
        "broker_cpu_pct": round(100 * busy / elapsed),
        "stop_s": exited_s,
    }


def wait_exit(proc: psutil.Process, since: float) -> float | None:
    try:
        proc.wait(STOP_WAIT_S)
    except psutil.TimeoutExpired:
        return None
    except psutil.NoSuchProcess:
        pass
    return round(time.monotonic() - since, 2)


def one_case(kind: str, qos: int, publishers: int, duration: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "registry.sqlite3")
        devices = register_devices(db, publishers)
        if kind == "mosquitto":
            mosq, station = mosquitto_setup(Path(tmp) / "mosquitto", devices)
            mosq.start()
            assert mosq.proc is not None
            proc = psutil.Process(mosq.proc.pid)
            try:
                r = asyncio.run(
                    run_case(mosq.port, station, devices, qos, duration, proc, mosq.proc.terminate)
                )
            finally:
                mosq.stop()
            log = mosq.log_path.read_text() if mosq.log_path.exists() else ""
            bad = [ln for ln in log.splitlines() if "rror" in ln or "arning" in ln]
        else:
            child = subprocess.Popen(
                [sys.executable, __file__, "--serve", kind, db],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                hello = json.loads(child.stdout.readline())
                r = asyncio.run(
                    run_case(
                        hello["port"],
                        (hello["user"], hello["token"]),
                        devices,
                        qos,
                        duration,
                        psutil.Process(child.pid),
                        child.terminate,
                    )
                )
            finally:
                if child.poll() is None:
                    child.kill()
                out, err = child.communicate(timeout=30)
            lines = out.strip().splitlines()
            r["stop_inside_s"] = json.loads(lines[-1]).get("stop_s") if len(lines) > 1 else None
            bad = [ln for ln in err.splitlines() if any(b in ln for b in BAD_LOG)]
            bad += [ln for ln in err.splitlines() if ln.startswith(("WARNING", "ERROR"))]
        r["broker"] = kind
        r["log_problems"] = len(bad)
        r["first_problem"] = bad[0][:160] if bad else None
        r["problems"] = [ln[:200] for ln in bad[:5]]
        r["clean_stop"] = r["stop_s"] is not None and not bad
        return r


def table(results: list[dict]) -> str:
    lines = [
        "| QoS | publishers | broker | accepted msg/s | delivered msg/s | vs Mosquitto | "
        "backlog (msgs) | RSS growth | broker CPU | shutdown |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ref = {
        (r["qos"], r["publishers"]): r["delivered_per_s"]
        for r in results
        if r["broker"] == "mosquitto"
    }
    for r in results:
        base = ref.get((r["qos"], r["publishers"]))
        ratio = f"{r['delivered_per_s'] / base:.3f}x" if base else "-"
        stop = (
            f"{r['stop_s']} s, clean"
            if r["clean_stop"]
            else f"{r['stop_s']} s, NOT clean: {r['first_problem']}"
        )
        lines.append(
            f"| {r['qos']} | {r['publishers']} | {r['broker']} | {r['accepted_per_s']:,} | "
            f"{r['delivered_per_s']:,} | {ratio} | {r['backlog']:,} | "
            f"{r['rss_growth_mb']} MB | {r['broker_cpu_pct']} % | {stop} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--against",
        default=None,
        help="comma-separated brokers: station, mosquitto, amqtt "
        "(default: all three, without mosquitto if it is not installed)",
    )
    ap.add_argument("--qos", type=int, nargs="*", default=[0, 1])
    ap.add_argument("--publishers", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of flood per case")
    ap.add_argument("--json", action="store_true", help="also print each case as JSON")
    ap.add_argument("--serve", nargs=2, metavar=("KIND", "DB"), help=argparse.SUPPRESS)
    ap.add_argument("--publish", metavar="CFG", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    if args.publish:
        publisher_main(args.publish)
        return
    kinds = (
        args.against.split(",")
        if args.against
        else ["station", "mosquitto", "amqtt"]
        if mosquitto_available()
        else ["station", "amqtt"]
    )
    print(
        f"# broker flood, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{time.strftime('%Y-%m-%d')}, {args.duration:.0f} s per case",
        flush=True,
    )
    results = []
    for qos in args.qos:
        for n in args.publishers:
            for kind in kinds:
                r = one_case(kind, qos, n, args.duration)
                results.append(r)
                if args.json:
                    print(json.dumps(r), flush=True)
                else:
                    print(
                        f"  {kind:9s} QoS {qos} x{n}: accepted {r['accepted_per_s']:,}/s, "
                        f"delivered {r['delivered_per_s']:,}/s, backlog {r['backlog']:,}, "
                        f"RSS +{r['rss_growth_mb']} MB, stop {r['stop_s']} s "
                        f"({'clean' if r['clean_stop'] else 'NOT clean'})",
                        flush=True,
                    )
                    for line in r["problems"]:
                        print(f"      log: {line}", flush=True)
    print(table(results), flush=True)


if __name__ == "__main__":
    main()
