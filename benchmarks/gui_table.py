"""GUI live table: N devices each updating once a second into the Devices table.

    python benchmarks/gui_table.py                     # 1000 devices, 30 s per scenario
    python benchmarks/gui_table.py --devices 2000 --duration 10 --json

The real DeviceTableModel + DeviceFilterProxy + QTableView (shown offscreen, 1280x800)
are fed DeviceUpdate objects through the real StationBridge from a non-GUI thread,
exactly as the registry-ingest thread does: every 50 ms (its flush interval) it
announces the devices whose second came round, so N devices × 1/s = N updates/s in
bursts. The GUI event loop's stall is measured as the lateness of a 10 ms timer
(single-shot, re-armed on each firing: lateness = fired - armed - 10 ms).

Scenarios: idle (no updates: the floor), table sorted by node (the tab's default:
updates never move rows), sorted by temperature (every update may move its row),
and the same with a text filter plus "online only" active. Memory is the process
RSS (psutil). GC is tuned as the running station tunes it (broker.server.tune_gc).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
from PySide6.QtWidgets import QApplication

from station.registry.models import utcnow
from station.registry.tracking import DeviceUpdate
from station.ui.bridge import StationBridge
from station.ui.devices_model import (
    NODE,
    TEMPERATURE,
    DeviceFilterProxy,
    DeviceTableModel,
)
from station.ui.devices_tab import DeviceTableView

FLUSH_S = 0.05  # broker.ingest's flush interval: updates arrive in bursts this often
PROBE_MS = 10


def fake_devices(n: int) -> list[SimpleNamespace]:
    now = utcnow()
    return [
        SimpleNamespace(
            node_name=f"esp32_dht11_{i:04d}",
            name=f"Sensor {i}",
            chip_id=f"A4CF12{i:06X}",
            topic_prefix=f"home/esp32_dht11_{i:04d}",
            online=True,
            last_seen=now,
            ip=f"10.0.{i // 250}.{i % 250 + 1}",
            firmware="1.0.0",
            is_provisioned=True,
            last_state={"temperature": 21.0, "humidity": 40.0, "rssi": -60},
        )
        for i in range(n)
    ]


class Feeder(threading.Thread):
    """The ingest thread's stand-in: N devices, once a second each, random phase."""

    def __init__(self, bridge: StationBridge, n: int, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.bridge, self.n, self.rate = bridge, n, rate
        self.stop_event = threading.Event()
        self.sent = 0

    def run(self) -> None:
        rng = random.Random(1)
        period = 1.0 / self.rate
        phase = sorted((rng.random() * period, i) for i in range(self.n))
        nodes = [f"esp32_dht11_{i:04d}" for i in range(self.n)]
        start = time.monotonic()
        k, cycle = 0, 0
        while not self.stop_event.is_set():
            now = time.monotonic() - start
            ts = utcnow()
            # Announce every device whose moment passed, as one ingest batch does.
            while k < len(phase) and cycle * period + phase[k][0] <= now:
                i = phase[k][1]
                self.bridge.push_update(
                    DeviceUpdate(
                        node_name=nodes[i],
                        topic_prefix=f"home/{nodes[i]}",
                        kind="state",
                        online=True,
                        last_seen=ts,
                        state={
                            "temperature": round(18 + rng.random() * 8, 1),
                            "humidity": round(35 + rng.random() * 20, 1),
                            "rssi": -40 - rng.randrange(50),
                        },
                    )
                )
                self.sent += 1
                k += 1
            if k == len(phase):
                k, cycle = 0, cycle + 1
                continue
            self.stop_event.wait(FLUSH_S)


class Probe:
    """A 10 ms single-shot timer re-armed on each firing; records lateness in ms."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.clock.start()
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._fired)
        self.samples: list[float] = []
        self.recording = False
        self._armed = 0

    def start(self) -> None:
        self._armed = self.clock.nsecsElapsed()
        self.timer.start(PROBE_MS)

    def _fired(self) -> None:
        now = self.clock.nsecsElapsed()
        if self.recording:
            self.samples.append(max(0.0, (now - self._armed) / 1e6 - PROBE_MS))
        self._armed = now
        self.timer.start(PROBE_MS)


def spin(seconds: float) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def run_scenario(
    name: str,
    setup,
    *,
    n: int,
    rate: float,
    duration: float,
    warmup: float,
    load: bool,
    parts: tuple,
) -> dict:
    model, proxy, view, bridge, probe, proc = parts
    setup(model, proxy, view)
    applied = [0]

    def count(_update: DeviceUpdate) -> None:
        applied[0] += 1

    bridge.deviceUpdated.connect(count)
    feeder = Feeder(bridge, n, rate) if load else None
    if feeder:
        feeder.start()
    spin(warmup)
    cpu0, t0, a0 = proc.cpu_times(), time.monotonic(), applied[0]
    probe.samples.clear()
    probe.recording = True
    spin(duration)
    probe.recording = False
    t1, cpu1, a1 = time.monotonic(), proc.cpu_times(), applied[0]
    if feeder:
        feeder.stop_event.set()
        feeder.join(5)
        spin(0.3)  # drain what is queued
    bridge.deviceUpdated.disconnect(count)
    backlog = (feeder.sent - applied[0]) if feeder else 0
    s = probe.samples
    wall = t1 - t0
    return {
        "scenario": name,
        "devices": n if load else 0,
        "updates_per_s": round((a1 - a0) / wall, 1),
        "probe_samples": len(s),
        "p50_ms": round(pct(s, 50), 2),
        "p99_ms": round(pct(s, 99), 2),
        "max_ms": round(max(s), 2) if s else float("nan"),
        "cpu_pct": round(100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall, 1),
        "rss_mb": round(proc.memory_info().rss / 2**20, 1),
        "backlog_after": backlog,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1.0, help="updates per device per s")
    ap.add_argument("--duration", type=float, default=30.0, help="measured seconds each")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--no-gc-tuning", action="store_true")
    ap.add_argument("--json", action="store_true", help="print JSON lines only")
    args = ap.parse_args()

    proc = psutil.Process()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    rss_qt = proc.memory_info().rss / 2**20

    model = DeviceTableModel(10)
    proxy = DeviceFilterProxy()
    proxy.setSourceModel(model)
    view = DeviceTableView()  # the Devices tab's view
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.setAlternatingRowColors(True)
    view.verticalHeader().setVisible(False)
    view.resize(1280, 800)
    view.show()
    bridge = StationBridge()
    bridge.deviceUpdated.connect(model.apply)
    t = time.perf_counter()
    model.load(fake_devices(args.devices))
    load_ms = (time.perf_counter() - t) * 1000
    if not args.no_gc_tuning:
        from broker.server import tune_gc

        tune_gc()
    app.processEvents()
    rss_loaded = proc.memory_info().rss / 2**20
    probe = Probe()
    probe.start()
    parts = (model, proxy, view, bridge, probe, proc)

    def by(col):
        def setup(model, proxy, view):
            proxy.set_text("")
            proxy.set_online_only(False)
            view.sortByColumn(col, Qt.SortOrder.AscendingOrder)

        return setup

    def filtered(model, proxy, view):
        view.sortByColumn(TEMPERATURE, Qt.SortOrder.AscendingOrder)
        proxy.set_text("sensor 1")  # about a tenth of the rows
        proxy.set_online_only(True)

    scenarios = [
        ("idle (no updates)", by(NODE), False),
        ("sorted by node", by(NODE), True),
        ("sorted by temperature", by(TEMPERATURE), True),
        ("temperature sort + filter", filtered, True),
    ]
    kw = dict(n=args.devices, rate=args.rate, duration=args.duration, warmup=args.warmup)
    results = []
    for name, setup, load in scenarios:
        r = run_scenario(name, setup, load=load, parts=parts, **kw)
        results.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(
                f"{r['scenario']:<27} {r['updates_per_s']:>7.0f} upd/s  "
                f"lateness p50 {r['p50_ms']:5.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                f"max {r['max_ms']:6.1f} ms  CPU {r['cpu_pct']:5.1f} %  "
                f"RSS {r['rss_mb']:.0f} MB  backlog {r['backlog_after']}",
                flush=True,
            )
    summary = {
        "date": dt.date.today().isoformat(),
        "python": sys.version.split()[0],
        "devices": args.devices,
        "load_ms": round(load_ms, 1),
        "rss_qt_mb": round(rss_qt, 1),
        "rss_loaded_mb": round(rss_loaded, 1),
        "target_p99_ms": 16,
        "met": all(r["p99_ms"] <= 16 for r in results),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        import PySide6

        print(
            f"\nPySide6 {PySide6.__version__}, Python {summary['python']}: load of "
            f"{args.devices} rows {summary['load_ms']} ms; RSS {summary['rss_qt_mb']} MB "
            f"with QApplication, {summary['rss_loaded_mb']} MB with the table loaded. "
            f"Target p99 <= 16 ms: {'met' if summary['met'] else 'NOT met'}."
        )
    view.close()


if __name__ == "__main__":
    main()
