"""Fleet firmware update (issue 11): a staged OTA of N simulated devices (the real
firmware on the MicroPython unix port, each device its own process at
`-X heapsize=96k`) on a demo station, with the demo's own timings (not FAST_TIMING):
association 1.5 s, reboot delay 1 s.

    python benchmarks/fleet_ota.py                      # 20 devices, canary 1, 4 at a time
    python benchmarks/fleet_ota.py --devices 5 --no-bad
    python benchmarks/fleet_ota.py --heap 64            # home mode and the update at 64 KB

1. A demo station (StationRuntime, embedded broker, simulated home LAN) with N
   devices, provisioned by BulkQueue, all online.
2. FirmwareUpdate to the next version (a bundle of today's firmware, the same build
   as `station fleet update`): prepare (build + serve) and run (canary, then the
   rest) timed apart; per device, from DeviceProgress.timings (seconds from the
   command to each phase first heard by the station): sent→downloading,
   downloading→verifying (the download), verifying→rebooting (verify from flash +
   the trial written), rebooting→confirmed (reboot, WiFi join, MQTT connect, the
   commit and `info` with the new version), sent→confirmed. Every device must be
   confirmed (exit 1 otherwise). The station hears phases through the broker's
   ingest thread, in 50 ms batches: steps shorter than that read 0.00 or 0.05 s.
3. Device heap during the update. The firmware reports `heap_free` (gc.mem_free()
   right after gc.collect()) in each `state` message; nothing else on the device
   measures heap. The devices here publish state every --interval s (1 s, the
   firmware's minimum; the demo's default is 10 s, which would miss most updates:
   this is the only timing changed) and every sample is tagged with the phase the
   station had for that device when it arrived. "Peak used" = heapsize - the lowest
   heap_free seen while updating. It is the live heap after a collection, sampled
   once a second, not a continuous peak: a transient block between two samples is
   not seen. The hard fact is the other one: each process runs with a 96 KB GC heap
   and cannot use more; the update passing at 96 KB with no MemoryError in any
   device's console means it fits. --heap KB runs home mode (and so the update)
   at another heap size (setup mode stays at 96 KB): the smallest size that passes
   is the update's real peak, the firmware_heap.py way.
4. A bad bundle (make_crashing_bundle: a firmware that crashes at boot) on the same
   station and devices: the time until the rollout stops, the canary's phase and
   reason, and that the others were never sent anything.

Traffic stays on 127.0.0.1. The unix port is 64-bit (objects larger than on a 32-bit
ESP32), so heap figures are an upper bound for the board.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from station.fleet.rollout import DeviceProgress, Phase, RolloutResult  # noqa: E402
from station.fleet.session import FirmwareUpdate  # noqa: E402
from station.provisioning import BulkQueue  # noqa: E402
from station.registry.tracking import DeviceUpdate  # noqa: E402
from station.runtime import StationRuntime  # noqa: E402
from station.settings import Settings  # noqa: E402
from station.sim.demo import DEMO_TIMING  # noqa: E402

STEPS = (
    ("sent→downloading", "sent", "downloading"),
    ("download", "downloading", "verifying"),
    ("verify+switch", "verifying", "rebooting"),
    ("reboot+reconnect", "rebooting", "confirmed"),
    ("sent→confirmed", "sent", "confirmed"),
)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def spread(values: list[float]) -> str:
    if not values:
        return "(none)"
    return (
        f"median {statistics.median(values):6.2f} s  p90 {pct(values, 90):6.2f} s  "
        f"max {max(values):6.2f} s  (n={len(values)})"
    )


class Recorder:
    """Every device's phase changes (on_progress) and heap_free samples (state)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.phases: dict[str, list[tuple[float, Phase]]] = {}
        self.samples: list[tuple[float, str, int]] = []  # (monotonic, node, heap_free)

    def on_progress(self, dev: DeviceProgress) -> None:
        with self.lock:
            self.phases.setdefault(dev.node, []).append((time.monotonic(), dev.phase))

    def on_update(self, update: DeviceUpdate) -> None:
        if update.kind != "state" or not update.state:
            return
        free = update.state.get("heap_free")
        if isinstance(free, int):
            with self.lock:
                self.samples.append((time.monotonic(), update.node_name, free))

    def phase_at(self, node: str, t: float) -> Phase | None:
        """The station's phase for `node` at `t`; None before the command."""
        current = None
        for when, phase in self.phases.get(node, []):
            if when > t:
                break
            current = phase
        return current


def provision(rt: StationRuntime, n: int) -> float:
    home = rt.registry.homes()[0]
    queue = BulkQueue(rt.provisioning_station())
    began = time.monotonic()
    queue.add(queue.scan(), home)
    password = rt.secrets.home_password(home.id)
    assert password is not None
    summary = queue.run(home, password)
    took = time.monotonic() - began
    if len(summary.done) != n:
        raise SystemExit(f"provisioned {len(summary.done)} of {n}: {summary.failed}")
    return took


def wait_online(rt: StationRuntime, nodes: list[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        online = sum(rt.registry.device(n).online for n in nodes)
        if online == len(nodes) or time.monotonic() > deadline:
            return online
        time.sleep(0.5)


def step_times(devices: list[DeviceProgress]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for dev in devices:
        t = dev.timings
        for label, a, b in STEPS:
            if a in t and b in t:
                out.setdefault(label, []).append(t[b] - t[a])
    return out


def print_table(devices: list[DeviceProgress]) -> None:
    print(f"  {'node':<18} {'':6} " + " ".join(f"{label:>16}" for label, _, _ in STEPS))
    for dev in devices:
        t = dev.timings
        cells = [f"{t[b] - t[a]:16.2f}" if a in t and b in t else f"{'-':>16}" for _, a, b in STEPS]
        print(f"  {dev.node:<18} {'canary' if dev.canary else '':6} " + " ".join(cells))


def console_problems(rt: StationRuntime) -> list[str]:
    """Devices whose console shows a MemoryError or whose process ended other than by
    a reboot (3) or the fleet's SIGTERM (-15)."""
    assert rt.demo is not None and rt.demo.fleet is not None
    bad = []
    for d in rt.demo.fleet.devices:
        text = d.log_text()
        odd = [c for c in d.exit_codes if c not in (3, -15)]
        if "MemoryError" in text:
            i = text.index("MemoryError")
            where = [ln.strip() for ln in text[max(0, i - 600) : i].splitlines() if 'File "' in ln]
            line = text[text.rfind("\n", 0, i) + 1 : text.find("\n", i)].strip()
            at = " at " + " < ".join(reversed(where[-2:])) if where else f" ({line[:120]})"
            bad.append(f"{d.chip_id}: MemoryError in its console{at}")
        if odd:
            bad.append(f"{d.chip_id}: exit codes {odd}")
    return bad


def heap_report(
    rec: Recorder, result: RolloutResult, heap_bytes: int, t_start: float
) -> tuple[int | None, list[str]]:
    """Lowest heap_free while updating, per device and over all; the lines to print."""
    lines = []
    by_node_before: dict[str, list[int]] = {}
    by_node_during: dict[str, list[tuple[Phase, int]]] = {}
    by_node_after: dict[str, list[int]] = {}
    with rec.lock:
        samples = list(rec.samples)
    for t, node, free in samples:
        if t < t_start:
            by_node_before.setdefault(node, []).append(free)
            continue
        phase = rec.phase_at(node, t)
        if phase is None or phase is Phase.WAITING:
            by_node_before.setdefault(node, []).append(free)
        elif phase is Phase.CONFIRMED:
            by_node_after.setdefault(node, []).append(free)
        elif phase not in (Phase.CANCELLED, Phase.SKIPPED):
            by_node_during.setdefault(node, []).append((phase, free))
    per_phase: dict[str, list[int]] = {}
    for node_samples in by_node_during.values():
        for phase, free in node_samples:
            per_phase.setdefault(str(phase), []).append(free)
    during_min = {n: min(f for _, f in s) for n, s in by_node_during.items()}
    before = [f for s in by_node_before.values() for f in s]
    after = [f for s in by_node_after.values() for f in s]
    during = [f for s in by_node_during.values() for _, f in s]
    n_dev = len(result.devices)
    lines.append(
        f"heap_free samples (gc.mem_free() after gc.collect(), one per state message): "
        f"{len(before)} before the command, {len(during)} while updating "
        f"(from {len(during_min)} of {n_dev} devices), {len(after)} after confirmed"
    )
    if before:
        lines.append(
            f"  running before the update: lowest {min(before)} B, median "
            f"{statistics.median(before):.0f} B"
        )
    for phase in ("sent", "downloading", "verifying", "rebooting"):
        vals = per_phase.get(phase, [])
        if vals:
            lines.append(
                f"  while {phase:<11}: lowest {min(vals)} B, median "
                f"{statistics.median(vals):.0f} B (n={len(vals)})"
            )
    if after:
        lines.append(
            f"  after confirmed (new set): lowest {min(after)} B, median "
            f"{statistics.median(after):.0f} B"
        )
    low = min(during) if during else None
    if low is not None:
        mins = sorted(during_min.values())
        lines.append(
            f"  per device, lowest while updating: median {statistics.median(mins):.0f} B, "
            f"lowest {mins[0]} B"
        )
        lines.append(
            f"peak live heap seen while updating: {heap_bytes - low} B of {heap_bytes} B "
            f"({(heap_bytes - low) / 1024:.1f} KB of {heap_bytes // 1024} KB; "
            f"sampled at state publishes, after a collection: not a continuous peak)"
        )
    else:
        lines.append("no heap_free sample landed inside any device's update")
    return low, lines


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--canary", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=300.0, help="per device, s (300)")
    ap.add_argument(
        "--interval",
        type=int,
        default=1,
        help="devices' state (heap_free) period, s: 1, the firmware's minimum (demo: 10)",
    )
    ap.add_argument(
        "--heap",
        type=int,
        default=96,
        metavar="KB",
        help="GC heap of the home-mode processes, KB (96, the budget; setup mode stays 96)",
    )
    ap.add_argument("--no-bad", action="store_true", help="skip the bad-bundle run")
    ap.add_argument("--table", action="store_true", help="print every device's steps")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # SIGTERM (a `timeout`) as Ctrl-C: the finally below stops the devices.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    n = args.devices
    timing = {**DEMO_TIMING, "interval_s": args.interval}
    print(
        f"# fleet OTA, {n} devices, canary {args.canary}, concurrency {args.concurrency}, "
        f"timing {timing}, home-mode heap {args.heap} KB, "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores",
        flush=True,
    )
    print(f"# before: {uptime()}", flush=True)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fleet-ota-") as tmp:
        os.environ["STATION_DATA_DIR"] = str(Path(tmp) / "data")
        t0 = time.monotonic()
        rt = StationRuntime.start(Settings(), demo_devices=n, demo_timing=timing)
        try:
            assert rt.demo is not None and rt.demo.fleet is not None
            if args.heap != 96:
                # Read at each process start: the reboot after provisioning uses it.
                for d in rt.demo.fleet.devices:
                    d.heap = f"{args.heap}k"
            heaps = {d.heap for d in rt.demo.fleet.devices}
            print(f"station + {n} devices started in {time.monotonic() - t0:.1f} s", flush=True)
            prov = provision(rt, n)
            nodes = [d.node_name for d in rt.registry.devices()]
            online = wait_online(rt, nodes, 60)
            print(
                f"provisioned {n} in {prov:.1f} s; {online}/{n} online; devices' -X heapsize "
                f"{sorted(heaps)}",
                flush=True,
            )
            rec = Recorder()
            rt.broker.add_listener(rec.on_update)
            time.sleep(3 * args.interval)  # a few samples of the running devices first

            # -- the good bundle -------------------------------------------------------------
            update = FirmwareUpdate(
                rt,
                nodes,
                canary=args.canary,
                concurrency=args.concurrency,
                device_timeout_s=args.timeout,
                on_progress=rec.on_progress,
            )
            try:
                t = time.monotonic()
                bundle = update.prepare()
                prepare_s = time.monotonic() - t
                files = bundle.manifest["files"]
                print(
                    f"\nbundle {update.version}: {len(files)} files, {bundle.size} bytes "
                    f"({bundle.size / 1024:.1f} KB); prepare (build + serve) {prepare_s:.2f} s",
                    flush=True,
                )
                t_run = time.monotonic()
                result = update.run()
                run_s = time.monotonic() - t_run
            finally:
                update.close()
            time.sleep(2 * args.interval)  # samples of the new firmware running
            confirmed = result.count(Phase.CONFIRMED)
            print(
                f"rollout: {run_s:.1f} s wall (run), {prepare_s + run_s:.1f} s with prepare; "
                f"{confirmed}/{n} confirmed"
                + (f"; stopped: {result.stopped}" if result.stopped else ""),
                flush=True,
            )
            if confirmed != n:
                failures.append(f"{confirmed}/{n} confirmed")
                for d in result.devices:
                    if d.phase is not Phase.CONFIRMED:
                        print(f"  {d.node}: {d.phase} {d.reason}")
            canary = [d for d in result.devices if d.canary]
            rest = [d for d in result.devices if not d.canary]
            for c in canary:
                total = c.timings.get("confirmed")
                print(f"canary {c.node}: sent→confirmed {total} s (alone)")
            per_step = step_times(result.devices)
            print(f"per device, all {len(result.devices)} (from the station's phase timings):")
            for label, _, _ in STEPS:
                print(f"  {label:<17} {spread(per_step.get(label, []))}")
            if rest:
                rest_steps = step_times(rest)
                print(
                    f"  {'sent→confirmed':<17} {spread(rest_steps.get('sent→confirmed', []))}"
                    f"  [the {len(rest)} after the canary, {args.concurrency} at a time]"
                )
            took = per_step.get("sent→confirmed", [])
            if took and rest:
                rounds = math.ceil(len(rest) / args.concurrency)
                model = sum(c.timings.get("confirmed", 0.0) for c in canary) + rounds * (
                    statistics.median(took)
                )
                print(
                    f"  wall time model: canary + {rounds} rounds of {args.concurrency} × median "
                    f"sent→confirmed = {model:.1f} s (measured {run_s:.1f} s)"
                )
            if args.table:
                print_table(result.devices)
            heap_bytes = args.heap * 1024
            low, lines = heap_report(rec, result, heap_bytes, t_run)
            print("\n".join(lines))
            problems = console_problems(rt)
            print(
                "device consoles: "
                + ("no MemoryError, no crash" if not problems else "; ".join(problems)),
                flush=True,
            )
            failures += problems
            if low is not None and low <= 0:
                failures.append("heap exhausted")

            # -- the bad bundle ----------------------------------------------------------------
            if not args.no_bad:
                bad = FirmwareUpdate(
                    rt,
                    nodes,
                    canary=args.canary,
                    concurrency=args.concurrency,
                    device_timeout_s=args.timeout,
                    bad_bundle=True,
                )
                try:
                    t = time.monotonic()
                    bad_bundle = bad.prepare()
                    bad_prepare = time.monotonic() - t
                    t = time.monotonic()
                    bad_result = bad.run()
                    bad_run = time.monotonic() - t
                finally:
                    bad.close()
                c = next(d for d in bad_result.devices if d.canary)
                never = [d for d in bad_result.devices if not d.canary and d.started is None]
                cancelled = bad_result.count(Phase.CANCELLED)
                steps = ", ".join(f"{k} {v:.2f} s" for k, v in c.timings.items())
                print(
                    f"\nbad bundle {bad.version} (crashes at boot; {bad_bundle.size} bytes): "
                    f"prepare {bad_prepare:.2f} s; run until stopped {bad_run:.1f} s\n"
                    f"  canary {c.node}: {c.phase} ({c.reason}); {steps}\n"
                    f"  stopped: {bad_result.stopped}\n"
                    f"  never sent anything: {len(never)}/{n - 1} (cancelled: {cancelled})",
                    flush=True,
                )
                back = rt.registry.device(c.node).firmware
                print(f"  the canary reports firmware {back} afterwards", flush=True)
                if c.phase is not Phase.ROLLED_BACK:
                    failures.append(f"bad bundle: canary {c.phase}")
                if len(never) != n - 1:
                    failures.append(f"bad bundle: {n - 1 - len(never)} others were sent it")
                problems = [p for p in console_problems(rt) if "MemoryError" in p]
                failures += problems
            rt.broker.remove_listener(rec.on_update)
        finally:
            rt.stop()
    print(f"# after: {uptime()}", flush=True)
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
