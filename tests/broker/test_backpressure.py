"""The broker under load keeps its memory bounded and its other clients served
(broker/station_broker.py): a subscriber that stops reading loses QoS 0 messages,
not the broker's memory; an offline session's queue is capped; a flood does not keep
the broker from stopping cleanly."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time

import mqtt_packets as mp
import psutil
import pytest
from support import wait_for

from broker import EmbeddedBroker
from broker import station_broker as sb
from broker.server import STOP_TIMEOUT_S
from station.settings import BrokerSettings

pytestmark = pytest.mark.timeout(120)


def raw_client(port: int, client_id: str, creds: tuple[str, str], *, rcvbuf: int = 0):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(mp.connect(client_id, *creds))
    s.settimeout(5)
    assert s.recv(4)[:2] == b"\x20\x02"  # CONNACK
    return s


def flood(port: int, creds: tuple[str, str], topic: str, count: int, size: int = 1024) -> None:
    s = raw_client(port, f"flooder-{time.time_ns()}", creds)
    one = mp.publish(topic, b"x" * size)
    batch = one * 256
    try:
        for _ in range(count // 256):
            s.sendall(batch)
    finally:
        s.close()


def test_a_subscriber_that_stops_reading_costs_qos0_messages_not_memory(broker, connect, caplog):
    creds = broker.station_credentials()
    slow = raw_client(broker.port, "never-reads", creds, rcvbuf=4096)
    slow.sendall(mp.subscribe(("flood/#", 0)))
    time.sleep(0.3)
    watcher = connect("watcher", *creds)
    assert watcher.subscribe("other/topic") == [1]
    rss_before = psutil.Process().memory_info().rss
    caplog.set_level(logging.INFO, logger="broker.station_broker")
    flood(broker.port, creds, "flood/data", 40_000)  # ~40 MB toward the slow reader
    growth = psutil.Process().memory_info().rss - rss_before
    # Served meanwhile: another client's message arrives at once.
    watcher.publish("other/topic", b"still here")
    wait_for(lambda: watcher.received("other/topic") == [b"still here"], 5)
    not_reading = [r for r in caplog.records if "is not reading" in r.getMessage()]
    assert len(not_reading) == 1 and "never-reads" in not_reading[0].getMessage()
    assert broker._amqtt.dropped > 0
    assert growth < 30 * 1024 * 1024, f"broker grew {growth // 2**20} MiB"
    slow.close()


def test_an_offline_sessions_queue_is_capped(broker, connect, caplog):
    creds = broker.station_credentials()
    persistent = socket.socket()
    persistent.connect(("127.0.0.1", broker.port))
    persistent.sendall(mp.connect("away", *creds, clean=False))
    persistent.settimeout(5)
    assert persistent.recv(4)[:2] == b"\x20\x02"
    persistent.sendall(mp.subscribe(("q/#", 1)))
    wait_for(lambda: persistent.recv(5)[:1] == b"\x90", 5)  # SUBACK
    persistent.close()
    wait_for(lambda: "away" not in broker.hub.live, 5)
    session = broker._amqtt.sessions["away"][0]
    # Offline as amqtt sees it, so what follows is queued, not sent to the old socket.
    wait_for(lambda: session.transitions.state != "connected", 5)
    caplog.set_level(logging.WARNING, logger="broker.station_broker")
    publisher = connect("publisher", *creds)
    for i in range(sb.MAX_QUEUED + 200):
        publisher.mqtt.publish("q/n", str(i).encode(), qos=1)
    publisher.publish("q/last", b"end")  # waits for its PUBACK: all routed before
    wait_for(lambda: session.retained_messages.qsize() == sb.MAX_QUEUED, 30)
    wait_for(lambda: broker._amqtt.queue_dropped >= 200, 30)
    full = [r for r in caplog.records if "offline session away" in r.getMessage()]
    assert len(full) == 1
    assert session.retained_messages.qsize() == sb.MAX_QUEUED


def test_stopping_during_a_flood_is_clean(registry, caplog):
    b = EmbeddedBroker(
        registry, BrokerSettings(bind_host="127.0.0.1", port=0), flush_interval_s=0.01
    )
    b.start()
    creds = b.station_credentials()
    reader = raw_client(b.port, "reader", creds)
    reader.sendall(mp.subscribe(("flood/#", 1)))
    stop = threading.Event()

    def drain() -> None:
        reader.settimeout(0.5)
        while not stop.is_set():
            try:
                if not reader.recv(65536):
                    return
            except OSError:
                if stop.is_set():
                    return

    def publisher(n: int) -> None:
        with contextlib.suppress(OSError):  # the broker going away under it is expected
            flood(b.port, creds, f"flood/{n}", 200_000, size=256)

    threads = [threading.Thread(target=drain)] + [
        threading.Thread(target=publisher, args=(n,)) for n in range(3)
    ]
    for t in threads:
        t.start()
    time.sleep(1.5)
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    b.stop()
    took = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(30)
    reader.close()
    assert took < STOP_TIMEOUT_S
    assert not [r for r in caplog.records if "did not finish cleanly" in r.getMessage()]
    assert not [r for r in caplog.records if r.exc_info]
