"""Bulk provisioning throughput: N simulated devices (the real firmware on the
MicroPython unix port) provisioned by the station through the simulated WiFi
backend, with delays modelling real hardware:

- a WiFi switch of the laptop (join an AP, or return home): --switch, default 4 s;
- a device's association to a network (its trial while the laptop waits on its
  AP, and again after the reboot): --assoc, default 1.5 s;
- a device reboot: --restart, default 2.5 s (reboot-and-join about 5 s in all).

The lower bound those delays impose on one adapter, for the trips the queue made:
N switches to devices + N trial associations + one switch home per trip + what
is left of the last device's reboot-and-join after the final switch home. The
station's overhead is the measured time above that bound.

    python benchmarks/provision_bulk.py                 # 20 devices
    python benchmarks/provision_bulk.py --devices 5 --switch 1
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from broker import EmbeddedBroker
from station.provisioning import BulkQueue, Station, Status
from station.registry import Registry
from station.settings import BrokerSettings, ProvisioningSettings
from station.sim.demo import DemoWorld
from station.wifi.journal import Journal


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--switch", type=float, default=4.0, help="laptop WiFi switch, s")
    ap.add_argument("--assoc", type=float, default=1.5, help="device association, s")
    ap.add_argument("--restart", type=float, default=2.5, help="device reboot, s")
    ap.add_argument("--batch", type=int, default=8, help="devices per trip (max)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    timing = {"assoc_ms": int(args.assoc * 1000), "restart_delay_ms": int(args.restart * 1000)}
    with tempfile.TemporaryDirectory() as tmp:
        registry = Registry(str(Path(tmp) / "registry.sqlite3"))
        broker = EmbeddedBroker(registry, BrokerSettings(bind_host="127.0.0.1", port=0))
        broker.start()
        print(
            f"# bulk provisioning, {args.devices} devices, switch {args.switch} s, "
            f"assoc {args.assoc} s, restart {args.restart} s, batch {args.batch}, "
            f"{time.strftime('%Y-%m-%d')}",
            flush=True,
        )
        try:
            with DemoWorld(
                args.devices,
                broker.port,
                root=Path(tmp) / "site",
                switch_delay=args.switch,
                timing=timing,
            ) as world:
                host, port = world.broker_address
                settings = ProvisioningSettings(batch_size=args.batch)
                station = Station(
                    registry,
                    broker,
                    world.wifi(),
                    settings,
                    host,
                    port,
                    Journal(Path(tmp) / "journal.json"),
                )
                queue = BulkQueue(station)
                home = registry.add_home("Bench", world.home_ssid)
                switches0 = world.air.laptop().switches
                t0 = time.monotonic()
                queue.add(queue.scan(), home)
                summary = queue.run(home, world.home_password)
                elapsed = time.monotonic() - t0
                switches = world.air.laptop().switches - switches0
        finally:
            broker.stop()
        done = [j for j in (registry.job(p) for p in summary.done) if j]
        n = args.devices
        trips = switches - n  # every switch that was not to a device was one home
        reboot_join = args.restart + args.assoc
        lower = (
            n * args.switch
            + n * args.assoc
            + trips * args.switch
            + max(0.0, reboot_join - args.switch)
        )
        per_step = {}
        for job in done:
            for step, secs in (job.timings or {}).items():
                per_step.setdefault(step, []).append(secs)
        registry.close()
    ok = len(done) == n and summary.ok
    print(
        f"provisioned {len(done)}/{n} in {elapsed:.1f} s over {trips} trip(s): "
        f"{60 * len(done) / elapsed:.2f} devices/min "
        f"(seed: ~1/min automatic, ~0.33/min by hand)"
    )
    print(
        f"lower bound from the delays: {lower:.1f} s ({60 * n / lower:.2f} devices/min); "
        f"station overhead {elapsed - lower:.1f} s = {100 * (elapsed - lower) / lower:.1f} %"
    )
    for step in ("prepare", "connect", "configure", "reconnect"):
        vals = sorted(per_step.get(step, []))
        if vals:
            print(f"  {step:<9} median {vals[len(vals) // 2]:.2f} s  max {vals[-1]:.2f} s")
    failed = [p for p in summary.failed]
    if failed or any(j.status != Status.DONE for j in done):
        print(f"FAILED: {failed}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
