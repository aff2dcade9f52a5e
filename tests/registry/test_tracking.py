"""Tracker.apply on batches, without a broker."""

from __future__ import annotations

import datetime as dt

import pytest

from station.registry.models import utcnow
from station.registry.tracking import Observation, Tracker, clean_state, parse_message


@pytest.fixture
def dev(registry):
    return registry.register_device().device


def obs(kind, prefix, payload=None, ts=None):
    return Observation(kind, prefix, ts or utcnow(), payload)


@pytest.mark.parametrize(
    ("topic", "payload", "kind"),
    [
        ("home/esp32_dht11_001/status", b"online", "online"),
        ("home/esp32_dht11_001/status", b"offline", "offline"),
        ("home/esp32_dht11_001/status", b"maybe", "bad_payload"),
        ("home/esp32_dht11_001/state", b'{"temperature": 1}', "state"),
        ("home/esp32_dht11_001/state", b"[1, 2]", "bad_payload"),
        ("home/esp32_dht11_001/info", b"{", "bad_payload"),
        ("home/esp32_dht11_001/event", b'{"cmd": "identify", "ok": true}', "event"),
    ],
)
def test_parse_message(topic, payload, kind):
    o = parse_message(topic, payload, utcnow())
    assert o.kind == kind and o.prefix == "home/esp32_dht11_001"


@pytest.mark.parametrize("topic", ["status", "home/x/cmd", "homeassistant/sensor/a/config"])
def test_parse_ignores_other_topics(topic):
    assert parse_message(topic, b"online", utcnow()) is None


def test_clean_state_rejects_wrong_types():
    assert clean_state(
        {"temperature": "hot", "humidity": True, "rssi": -60.7, "x": 1, "error": 5}
    ) == {"temperature": None, "humidity": None, "rssi": -60, "error": "5"}


def test_states_collapse_but_readings_keep_spacing(registry, dev):
    t0 = utcnow()
    tracker = Tracker(reading_min_interval_s=10)
    batch = [
        obs("state", dev.topic_prefix, {"temperature": 20 + i}, t0 + dt.timedelta(seconds=3 * i))
        for i in range(8)
    ]
    with registry.db.atomic():
        updates = tracker.apply(batch)
    assert [u.kind for u in updates] == ["state"]  # one device row write per batch
    assert updates[0].state["temperature"] == 27
    # at 3 s steps only 0 s and 12 s are 10 s apart from the previous stored reading
    temps = [r.temperature for r in registry.readings(dev)]
    assert temps == [20, 24]


def test_order_is_kept_around_status(registry, dev):
    tracker = Tracker(0)
    p = dev.topic_prefix
    with registry.db.atomic():
        updates = tracker.apply(
            [obs("online", p), obs("state", p, {"temperature": 1}), obs("offline", p)]
        )
    assert [u.kind for u in updates] == ["online", "state", "offline"]
    assert not registry.device(dev.node_name).online


def test_info_with_conflicting_chip_id_is_not_taken(registry, dev):
    other = registry.register_device().device
    registry.set_chip_id(other, "AAAAAAAAAAAA")
    with registry.db.atomic():
        Tracker().apply(
            [
                obs(
                    "info",
                    dev.topic_prefix,
                    {"chip_id": "AAAAAAAAAAAA", "firmware": "1.0.0", "ip": 5},
                )
            ]
        )
    d = registry.device(dev.node_name)
    assert d.chip_id is None and d.firmware == "1.0.0" and d.ip is None


def test_second_online_does_not_reprovision(registry, dev):
    tracker = Tracker()
    with registry.db.atomic():
        first = tracker.apply([obs("online", dev.topic_prefix)])
        tracker.apply([obs("offline", dev.topic_prefix)])
        second = tracker.apply([obs("online", dev.topic_prefix)])
    assert first[0].provisioned and not second[0].provisioned
    kinds = [e.kind for e in registry.events(registry.device(dev.node_name))]
    assert kinds[:3] == ["online", "offline", "provisioned"]
