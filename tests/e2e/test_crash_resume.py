"""A station killed in the middle of a batch: after a restart nothing is lost, nothing
is provisioned twice, and the laptop is back home."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from support import free_port

from broker import EmbeddedBroker
from station.provisioning import BulkQueue, Station, Status
from station.registry import ProvisioningJob, Registry
from station.settings import BrokerSettings, ProvisioningSettings
from station.sim.demo import BROKER_HOST, BROKER_PORT, FAST_TIMING, DemoWorld
from station.wifi.guard import recover
from station.wifi.journal import Journal

RUNNER = Path(__file__).with_name("crash_runner.py")


def test_crash_mid_batch_then_resume(tmp_path):
    port = free_port()
    db = str(tmp_path / "registry.sqlite3")
    journal_path = tmp_path / "journal.json"
    registry = Registry(db)
    with DemoWorld(5, port, root=tmp_path / "site", timing=FAST_TIMING) as world:
        registry.add_home("Smith", world.home_ssid)
        registry.close()
        child = subprocess.run(
            [
                sys.executable,
                str(RUNNER),
                db,
                str(world.air.root),
                str(port),
                str(journal_path),
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
        # Left behind: the laptop on a device network with a temporary profile.
        assert world.air.laptop().ssid != world.home_ssid

        # The station starts again.
        registry = Registry(db)
        wifi = world.wifi()
        report = recover(wifi, Journal(journal_path))
        assert world.air.laptop().ssid == world.home_ssid, str(report)
        assert not world.air.laptop().profiles
        broker = EmbeddedBroker(
            registry, BrokerSettings(bind_host="127.0.0.1", port=port), flush_interval_s=0.01
        )
        broker.start()
        try:
            station = Station(
                registry,
                broker,
                wifi,
                ProvisioningSettings(online_timeout_s=20, wifi_connect_timeout_s=10),
                BROKER_HOST,
                BROKER_PORT,
                Journal(journal_path),
            )
            queue = BulkQueue(station)
            before = {j.provisioning_id: j.status for j in ProvisioningJob.select()}
            assert len(before) == 5
            # Two were configured before the kill: they wait for the broker, which they
            # cannot reach while the laptop is away; three are still to do.
            assert sorted(before.values()) == [Status.REGISTERED] * 3 + [Status.WAITING] * 2
            # A new scan finds the 3 devices still in setup mode: none is queued twice.
            queue.add(queue.scan(), registry.home("Smith"))
            assert ProvisioningJob.select().count() == 5
            summary = queue.run(registry.home("Smith"), world.home_password)
            assert summary.ok, [registry.job(p).error for p in summary.failed]
            assert all(registry.job(p).status == Status.DONE for p in before)
            devices = registry.devices()
            assert len(devices) == 5
            assert sorted(d.chip_id for d in devices) == sorted(world.chip_ids)
            assert all(d.is_provisioned and d.online for d in devices)
            assert world.air.laptop().ssid == world.home_ssid
            assert not world.air.laptop().profiles
        finally:
            broker.stop()
            registry.close()
