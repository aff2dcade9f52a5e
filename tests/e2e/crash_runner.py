"""Child process for the crash test: provisions from an air folder and SIGKILLs itself
right after the Nth device was configured (no cleanup of any kind runs)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from broker import EmbeddedBroker
from station.provisioning import BulkQueue, Station, Status
from station.registry import Registry
from station.settings import BrokerSettings, ProvisioningSettings
from station.sim.air import Air
from station.sim.demo import BROKER_HOST, BROKER_PORT, HOME_PASSWORD
from station.sim.wifi import SimulatedBackend
from station.wifi.journal import Journal


def main() -> None:
    db, air_root, port, journal, kill_after = sys.argv[1:6]
    registry = Registry(db)
    broker = EmbeddedBroker(registry, BrokerSettings(bind_host="127.0.0.1", port=int(port)))
    broker.start()
    settings = ProvisioningSettings(batch_size=10, online_timeout_s=20, wifi_connect_timeout_s=10)
    wifi = SimulatedBackend(Air(air_root))
    station = Station(
        registry, broker, wifi, settings, BROKER_HOST, BROKER_PORT, Journal(Path(journal))
    )
    configured = []

    def listener(p) -> None:
        if p.status == Status.WAITING and p.progress == 80:
            configured.append(p.provisioning_id)
            if len(configured) == int(kill_after):
                os.kill(os.getpid(), signal.SIGKILL)

    queue = BulkQueue(station, listener)
    home = registry.home("Smith")
    queue.add(queue.scan(), home)
    queue.run(home, HOME_PASSWORD)
    sys.exit("the crash did not happen")


if __name__ == "__main__":
    main()
