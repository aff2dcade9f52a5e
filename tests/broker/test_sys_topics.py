"""The broker's `$SYS` tree (broker/sys_topics.py): what an integration account reads,
who may not read it, and the same subscriber run against Mosquitto 2.0.11 (the
reference: same topic names, same payload formats)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Mosquitto
from support import wait_for

from broker import EmbeddedBroker
from broker.sys_topics import PREFIX
from station.settings import BrokerSettings

INTERVAL = 0.2
# Each topic the station publishes and the payload format Mosquitto gives it.
FORMATS = {
    PREFIX + "version": r"^\S+ version \S+( \(.+\))?$",
    PREFIX + "uptime": r"^\d+ seconds$",
    PREFIX + "clients/connected": r"^\d+$",
    PREFIX + "publish/messages/received": r"^\d+$",
    PREFIX + "publish/messages/sent": r"^\d+$",
    PREFIX + "subscriptions/count": r"^\d+$",
    PREFIX + "retained messages/count": r"^\d+$",
}


@pytest.fixture
def sys_broker(registry) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(
        registry,
        BrokerSettings(bind_host="127.0.0.1", port=0, allow_anonymous=True),
        flush_interval_s=0.01,
        sys_interval_s=INTERVAL,
    )
    b.start()
    yield b
    b.stop()


class Subscriber:
    """The one client script run against both brokers: subscribe to `$SYS/#` (and
    optionally more), keep the latest value of each topic."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *filters: str,
        client_id: str | None = None,
    ):
        self.latest: dict[str, str] = {}
        self.seen: list[str] = []
        self.granted: list[int] = []
        self.m = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"sys-{time.time_ns()}"
        )
        if username:
            self.m.username_pw_set(username, password)
        self.m.on_message = self._on_message
        self.m.on_subscribe = lambda _c, _u, _m, codes, _p: self.granted.extend(
            c.value for c in codes
        )
        self.rc = None
        self.m.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "rc", rc)
        self.m.connect("127.0.0.1", port, keepalive=30)
        self.m.loop_start()
        wait_for(lambda: self.rc is not None, 5)
        for f in filters or ("$SYS/#",):
            self.m.subscribe(f, 0)
        wait_for(lambda: len(self.granted) == len(filters or ("$SYS/#",)), 5)

    def _on_message(self, _c, _u, msg) -> None:
        self.seen.append(msg.topic)
        self.latest[msg.topic] = msg.payload.decode()

    def value(self, topic: str) -> str | None:
        return self.latest.get(topic)

    def close(self) -> None:
        self.m.disconnect()
        self.m.loop_stop()


def test_sys_values_for_an_observer_account(registry, sys_broker):
    password = registry.accounts.add("monitor", "observer").password
    sub = Subscriber(sys_broker.port, "monitor", password)
    try:
        assert sub.granted == [0]
        wait_for(lambda: set(FORMATS) <= set(sub.latest), 5)
        for topic, pattern in FORMATS.items():
            assert re.match(pattern, sub.latest[topic]), (topic, sub.latest[topic])
        assert re.match(r"^station version \S+ \(amqtt 0\.12\.1\)$", sub.latest[PREFIX + "version"])
        wait_for(lambda: sub.value(PREFIX + "clients/connected") == "1", 3)
        wait_for(lambda: sub.value(PREFIX + "subscriptions/count") == "1", 3)
        # A second client with two filters and one retained publish move the figures.
        other = Subscriber(sys_broker.port, "monitor", password, "home/#", "x/y")
        received = int(sub.value(PREFIX + "publish/messages/received") or 0)
        pub = Subscriber(sys_broker.port, "monitor", password, "unused/topic")
        pub.m.publish("homeassistant/status", "online", qos=1, retain=True).wait_for_publish(3)
        wait_for(lambda: sub.value(PREFIX + "clients/connected") == "3", 3)
        wait_for(lambda: sub.value(PREFIX + "subscriptions/count") == "4", 3)
        wait_for(
            lambda: int(sub.value(PREFIX + "publish/messages/received") or 0) == received + 1, 3
        )
        # Retained: the 7 $SYS topics (Mosquitto counts its own too) and the one publish.
        wait_for(lambda: sub.value(PREFIX + "retained messages/count") == "8", 3)
        other.close()
        pub.close()
        wait_for(lambda: sub.value(PREFIX + "clients/connected") == "1", 3)
        # Refreshed on the interval: uptime moves on.
        first = int(sub.latest[PREFIX + "uptime"].split()[0])
        wait_for(lambda: int(sub.latest[PREFIX + "uptime"].split()[0]) > first, 3)
    finally:
        sub.close()


def test_a_late_subscriber_gets_every_value_at_once(registry, sys_broker):
    # Retained, like Mosquitto's: a monitor that connects between refreshes is not blank.
    password = registry.accounts.add("monitor", "operator").password
    time.sleep(INTERVAL * 2)
    sub = Subscriber(sys_broker.port, "monitor", password)
    try:
        wait_for(lambda: set(FORMATS) <= set(sub.latest), INTERVAL / 2 + 0.5)
    finally:
        sub.close()


def test_mqtt_4_7_2_1_wildcards_never_match_sys_topics(registry, sys_broker):
    station = Subscriber(sys_broker.port, *sys_broker.station_credentials(), "#", "+/broker/#")
    password = registry.accounts.add("monitor", "observer").password
    observer = Subscriber(sys_broker.port, "monitor", password, "#")
    try:
        station.m.publish("home/x/state", "{}", qos=1).wait_for_publish(3)
        wait_for(lambda: "home/x/state" in observer.seen, 3)
        time.sleep(INTERVAL * 3)
        assert station.granted == [0, 0] and observer.granted == [0]
        assert [t for t in station.seen + observer.seen if t.startswith("$")] == []
    finally:
        station.close()
        observer.close()


def test_devices_and_anonymous_monitors_may_not_read_sys(registry, sys_broker):
    issued = registry.register_device()
    node = issued.device.node_name
    device = Subscriber(sys_broker.port, node, issued.token, "$SYS/#", client_id=node)
    anonymous = Subscriber(sys_broker.port, None, None, "$SYS/#", "$SYS/broker/uptime")
    try:
        assert device.rc == 0 and anonymous.rc == 0
        assert device.granted == [0x80]
        assert anonymous.granted == [0x80, 0x80]
        time.sleep(INTERVAL * 3)
        assert device.seen == [] and anonymous.seen == []
    finally:
        device.close()
        anonymous.close()


def test_sys_topic_names_and_formats_are_mosquittos(tmp_path, registry, sys_broker):
    """The same subscriber against Mosquitto 2.0.11 (sys_interval 1): every topic the
    station publishes exists there, with a payload of the same format."""
    password = registry.accounts.add("monitor", "observer").password
    with Mosquitto(
        tmp_path / "mosquitto",
        users={"monitor": password},
        acl="user monitor\ntopic read $SYS/#\n",
        extra=["sys_interval 1"],
    ) as ref:
        theirs = Subscriber(ref.port, "monitor", password)
        ours = Subscriber(sys_broker.port, "monitor", password)
        try:
            wait_for(lambda: set(FORMATS) <= set(ours.latest), 5)
            wait_for(lambda: set(FORMATS) <= set(theirs.latest), 5)
            for topic, pattern in FORMATS.items():
                assert re.match(pattern, theirs.latest[topic]), ("mosquitto", topic)
                assert re.match(pattern, ours.latest[topic]), ("station", topic)
            assert theirs.latest[PREFIX + "version"].startswith("mosquitto version ")
            # The same count for the same one subscriber, once each has refreshed.
            wait_for(lambda: theirs.value(PREFIX + "clients/connected") == "1", 3)
            wait_for(lambda: ours.value(PREFIX + "clients/connected") == "1", 3)
        finally:
            theirs.close()
            ours.close()
