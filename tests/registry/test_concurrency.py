"""Two writers on one database (a SQLite file, a PostgreSQL server), as in a running
station: the ingest thread applying broker batches while the provisioning worker
registers devices."""

from __future__ import annotations

import threading

from station.registry import Registry
from station.registry.db import write_transaction
from station.registry.models import utcnow
from station.registry.tracking import Observation, Tracker


def test_read_then_write_transactions_never_fail_with_locked(db_url):
    reg = Registry(db_url)
    seed = [reg.register_device() for _ in range(20)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def ingest() -> None:
        tracker = Tracker(reading_min_interval_s=0)
        try:
            while not stop.is_set():
                batch = [
                    Observation("state", i.device.topic_prefix, utcnow(), {"temperature": 20.0})
                    for i in seed
                ]
                with write_transaction(reg.db):  # reads device ids, then writes
                    tracker.apply(batch)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=ingest)
    t.start()
    try:
        for _ in range(150):  # register_device also reads (counter) before writing
            reg.register_device()
    except BaseException as exc:
        errors.append(exc)
    finally:
        stop.set()
        t.join(30)
    assert errors == []
    assert len(reg.devices()) == 170
    reg.close()
