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


def _run_and_kill(db: str, world: DemoWorld, port: int, journal_path: Path) -> None:
    """A station process provisioning the site, SIGKILLed once 2 devices restarted."""
    args = [db, str(world.air.root), str(port), str(journal_path), "2"]
    child = subprocess.run(
        [sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]


def test_crash_mid_batch_then_resume(tmp_path):
    port = free_port()
    db = str(tmp_path / "registry.sqlite3")
    journal_path = tmp_path / "journal.json"
    registry = Registry(db)
    with DemoWorld(5, port, root=tmp_path / "site", timing=FAST_TIMING) as world:
        registry.add_home("Smith", world.home_ssid)
        registry.close()
        _run_and_kill(db, world, port, journal_path)
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
            # The two configured ones are still trying the broker (they fall back to
            # setup mode only after 20 s): they are only waited for.
            queue.add(queue.scan(), registry.home("Smith"))
            assert ProvisioningJob.select().count() == 5
            assert (
                sorted(j.status for j in registry.jobs())
                == [Status.REGISTERED] * 3 + [Status.WAITING] * 2
            )
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


def test_crash_while_waiting_then_restart_with_its_ap_back(tmp_path):
    """Configured devices that waited in vain for the killed station's broker fall back
    to setup mode: after the restart their setup APs are in the scan, so they are
    configured again (same job, same node name, fresh token), not waited for."""
    port = free_port()
    db = str(tmp_path / "registry.sqlite3")
    journal_path = tmp_path / "journal.json"
    registry = Registry(db)
    timing = dict(FAST_TIMING, fallback_s=6, retry_s=600)  # back to setup soon, and stay
    with DemoWorld(3, port, root=tmp_path / "site", timing=timing) as world:
        registry.add_home("Smith", world.home_ssid)
        registry.close()
        _run_and_kill(db, world, port, journal_path)

        registry = Registry(db)
        waiting = {j.provisioning_id: j.device for j in registry.jobs((Status.WAITING,))}
        assert len(waiting) == 2
        tokens = {d.node_name: d.token_hash for d in waiting.values()}
        # The broker is gone with the station: they give up and show their APs again.
        for dev in waiting.values():
            world.air.wait_for_setup_ap(dev.chip_id, 30)

        wifi = world.wifi()
        recover(wifi, Journal(journal_path))
        broker = EmbeddedBroker(
            registry, BrokerSettings(bind_host="127.0.0.1", port=port), flush_interval_s=0.01
        )
        broker.start()
        try:
            station = Station(
                registry,
                broker,
                wifi,
                ProvisioningSettings(online_timeout_s=20, wifi_connect_timeout_s=10, max_away_s=4),
                BROKER_HOST,
                BROKER_PORT,
                Journal(journal_path),
            )
            queue = BulkQueue(station)
            queue.add(queue.scan(), registry.home("Smith"))
            # Same jobs, all to configure now; nothing registered twice.
            assert ProvisioningJob.select().count() == 3
            assert all(registry.job(p).status == Status.REGISTERED for p in waiting)
            summary = queue.run(registry.home("Smith"), world.home_password)
            assert summary.ok, [registry.job(p).error for p in summary.failed]
            assert all(registry.job(p).status == Status.DONE for p in waiting)
            devices = registry.devices()
            assert [d.node_name for d in devices] == [
                "esp32_dht11_001",
                "esp32_dht11_002",
                "esp32_dht11_003",
            ]
            assert all(d.is_provisioned and d.online for d in devices)
            for dev in waiting.values():
                again = registry.device(dev.node_name)
                assert again.token_hash != tokens[dev.node_name]
                configured = [e for e in registry.events(again) if e.kind == "configured"]
                assert len(configured) == 2  # before the crash, and again now
            assert world.air.laptop().ssid == world.home_ssid
        finally:
            broker.stop()
            registry.close()
