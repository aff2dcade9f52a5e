"""The registry on SQLite and on PostgreSQL, same run: what a shared registry costs.

    python benchmarks/registry_backends.py            # 200 devices, 20,000 messages

Per backend (a SQLite file; a throwaway PostgreSQL cluster on 127.0.0.1, as in the
tests: tests/postgres.py):
- **registration**: `register_device` one after another (seed step 1: a node number,
  a device row, a job row, an event), devices per second;
- **ingest**: the broker's observation path (broker/ingest.py's IngestWriter with the
  Tracker): `state` messages of all devices queued as the broker loop queues them,
  until every one is committed; messages per second and the writer's batches.
Loopback PostgreSQL has no network latency: a server on the LAN adds a round trip per
statement to registration (ingest commits in batches).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from postgres import PostgresServer  # noqa: E402  (the tests' throwaway cluster)

from broker.ingest import IngestWriter  # noqa: E402
from station.registry import Registry  # noqa: E402
from station.registry.tracking import Tracker  # noqa: E402


def measure(url: str, devices: int, messages: int) -> dict[str, float]:
    reg = Registry(url)
    try:
        started = time.perf_counter()
        issued = [reg.register_device() for _ in range(devices)]
        reg_s = time.perf_counter() - started
        prefixes = [i.device.topic_prefix for i in issued]
        writer = IngestWriter(reg.db, Tracker(0), flush_interval=0.05)
        writer.start()
        try:
            for p in prefixes:  # online first, as a device does
                writer.put_message(f"{p}/status", b"online", time.time())
            doc = json.dumps({"temperature": 21.5, "humidity": 40, "rssi": -55}).encode()
            started = time.perf_counter()
            for n in range(messages):
                writer.put_message(f"{prefixes[n % devices]}/state", doc, time.time())
            while writer._queue:  # drained: every message parsed and committed
                time.sleep(0.005)
            writer.run_in_writer(list)  # the last batch committed
            ingest_s = time.perf_counter() - started
            batches = writer.batches
        finally:
            writer.stop()
    finally:
        reg.close()
    return {
        "register_per_s": devices / reg_s,
        "ingest_per_s": messages / ingest_s,
        "batches": batches,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--messages", type=int, default=20_000)
    args = ap.parse_args()
    print(
        f"# registry backends, {args.devices} devices, {args.messages} state messages, "
        f"{time.strftime('%Y-%m-%d')}",
        flush=True,
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure(str(Path(tmp) / "r.sqlite3"), args.devices, args.messages)
    with PostgresServer() as pg:
        results["postgresql"] = measure(pg.create_database("bench"), args.devices, args.messages)
    print(f"{'':<12}{'register/s':>12}{'ingest msg/s':>14}{'batches':>9}")
    for name, r in results.items():
        print(
            f"{name:<12}{r['register_per_s']:>12.0f}{r['ingest_per_s']:>14.0f}{r['batches']:>9.0f}"
        )
    s, p = results["sqlite"], results["postgresql"]
    print(
        f"postgresql / sqlite: registration {p['register_per_s'] / s['register_per_s']:.2f}x, "
        f"ingest {p['ingest_per_s'] / s['ingest_per_s']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
