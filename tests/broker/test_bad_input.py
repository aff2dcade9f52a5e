"""Bad input at the broker closes that connection only (issue 9, part 4).

Wire-level, like test_conformance.py: each test sends the exact bad bytes over a raw
socket and asserts that the broker closes the connection within a bound, having
sent nothing more, with one log line and no traceback (broker/limits.py,
docs/DESIGN.md "Bad input at the broker"). The last tests show a well-behaved device
served throughout while bad clients act, and the registry losing nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time

import psutil
import pytest
from mqtt_packets import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBLISH,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBSCRIBE,
    packet,
    remaining_length,
    string,
)
from mqtt_packets import connect as connect_packet
from mqtt_packets import publish as publish_packet
from mqtt_packets import subscribe as subscribe_packet
from support import wait_for

from broker import EmbeddedBroker
from station.settings import BrokerSettings

CONNECT_TIMEOUT_S = 1.0
CLOSE_WITHIN_S = 2.0

# -- a raw client ----------------------------------------------------------------------


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float = 3.0) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buffer) >= 2:
                length, multiplier, i = 0, 1, 1
                while i < len(self.buffer):
                    byte = self.buffer[i]
                    length += (byte & 0x7F) * multiplier
                    multiplier *= 128
                    i += 1
                    if not byte & 0x80:
                        break
                if len(self.buffer) >= i + length and not self.buffer[i - 1] & 0x80:
                    first, body = self.buffer[0], self.buffer[i : i + length]
                    self.buffer = self.buffer[i + length :]
                    return first, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no packet from the broker in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the broker")
            self.buffer += chunk

    def expect(self, packet_type: int, timeout: float = 3.0) -> bytes:
        first, body = self.read(timeout)
        assert first >> 4 == packet_type, f"expected type {packet_type}, got {first:#04x}"
        return body

    def closed_within(self, timeout: float) -> bool:
        """True if the broker closes (EOF or reset) within timeout, sending nothing."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except TimeoutError:
                return False
            if not chunk:
                return True
            raise AssertionError(f"expected a close, got bytes {chunk!r}")

    def close(self) -> None:
        self.sock.close()


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(params=["uvloop", "asyncio"])
def broker(registry, request):
    b = EmbeddedBroker(
        registry,
        BrokerSettings(
            bind_host="127.0.0.1",
            port=0,
            event_loop=request.param,
            connect_timeout_s=CONNECT_TIMEOUT_S,
        ),
        reading_min_interval_s=0,
        flush_interval_s=0.01,
    )
    b.start()
    yield b
    b.stop()


@pytest.fixture
def raw(broker):
    opened: list[Raw] = []

    def _open() -> Raw:
        r = Raw(broker.port)
        opened.append(r)
        return r

    yield _open
    for r in opened:
        r.close()


@pytest.fixture
def station(broker, raw):
    """`station(client_id)`: a raw connection logged in as one of the station's clients."""
    user, token = broker.station_credentials()

    def _login(client_id: str, will: tuple[str, bytes] | None = None) -> Raw:
        r = raw()
        r.send(connect_packet(client_id, user, token, will=will))
        assert r.expect(CONNACK) == b"\x00\x00"
        return r

    return _login


@pytest.fixture
def devices(registry, broker):
    """`devices(n)`: n registered devices (Issued: .device, .token)."""
    home = registry.add_home("Smith", "MyHomeWiFi")

    def _make(n: int) -> list:
        made = []
        for i in range(n):
            issued = registry.register_device(
                home=home, name=f"Sensor {i}", requested_chip_id=f"chip_{i:010d}"
            )
            broker.device_registered(issued.device)
            made.append(issued)
        return made

    return _make


def device_login(raw, issued) -> Raw:
    node, prefix = issued.device.node_name, issued.device.topic_prefix
    r = raw()
    r.send(connect_packet(node, node, issued.token, will=(f"{prefix}/status", b"offline")))
    assert r.expect(CONNACK) == b"\x00\x00"
    return r


@pytest.fixture
def log_lines(caplog):
    """The broker's lines about bad input, checked for exactly one and no traceback."""
    caplog.set_level(logging.INFO)

    def _check(*needles: str) -> logging.LogRecord:
        def ours() -> list[logging.LogRecord]:
            return [
                r
                for r in caplog.records
                if r.name.startswith("broker.") and all(n in r.getMessage() for n in needles)
            ]

        wait_for(ours, 2)
        time.sleep(0.1)  # a second line, if any, would be here by now
        found = ours()
        assert len(found) == 1, [r.getMessage() for r in found]
        for r in caplog.records:
            assert r.exc_info is None and "Traceback" not in r.getMessage(), r.getMessage()
            if r.levelno >= logging.WARNING:
                assert r is found[0], f"another warning: {r.name}: {r.getMessage()}"
        return found[0]

    return _check


# -- before the CONNECT ------------------------------------------------------------------


def test_mqtt_3_1_0_1_a_connection_that_never_sends_connect_is_closed(raw, log_lines):
    """amqtt waited for the CONNECT forever, holding a connection slot."""
    r = raw()
    started = time.monotonic()
    assert r.closed_within(CONNECT_TIMEOUT_S + CLOSE_WITHIN_S)
    assert time.monotonic() - started >= CONNECT_TIMEOUT_S * 0.9
    assert log_lines("no CONNECT within", "[MQTT-3.1.0-1]").levelno == logging.INFO


def test_mqtt_3_1_0_1_a_half_sent_connect_is_closed_at_the_timeout(raw, log_lines):
    r = raw()
    r.send(connect_packet("slow")[:7])  # a slow-loris: the CONNECT never completes
    assert r.closed_within(CONNECT_TIMEOUT_S + CLOSE_WITHIN_S)
    log_lines("no CONNECT within")


@pytest.mark.parametrize(
    "first",
    [publish_packet("a/b", b"x"), bytes([PINGREQ << 4, 0]), subscribe_packet(("a/#", 0))],
    ids=["publish", "pingreq", "subscribe"],
)
def test_mqtt_3_1_0_1_a_first_packet_other_than_connect_closes(raw, log_lines, first):
    r = raw()
    r.send(first)
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-3.1.0-1]", "not CONNECT")


def test_mqtt_2_2_3_an_announced_256_mb_connect_is_closed_before_its_body(raw, log_lines):
    """The largest remaining length there is (268,435,455): amqtt waited for it all."""
    r = raw()
    r.send(bytes([CONNECT << 4]) + remaining_length(268_435_455) + b"\x00\x04MQTT")
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("268435455 bytes announced", "limit")


def test_mqtt_2_2_3_a_remaining_length_in_five_bytes_closes(raw, log_lines):
    r = raw()
    r.send(bytes([CONNECT << 4, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-2.2.3]", "more than 4 bytes")


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        # remaining length shorter than the fields: amqtt read on into the next bytes
        (packet(CONNECT << 4, connect_packet("short")[2:-3]), "ends inside"),
        # remaining length longer than the fields (3 trailing bytes)
        (packet(CONNECT << 4, connect_packet("long")[2:] + b"xyz"), "more than its contents"),
        (connect_packet("reserved", flags=0x03), "[MQTT-3.1.2-3]"),
        (connect_packet("will-qos", flags=0x02 | 0x10), "[MQTT-3.1.2-13]"),
        (connect_packet("will-retain", flags=0x02 | 0x20), "[MQTT-3.1.2-15]"),
        (bytes([0x12]) + connect_packet("flags")[1:], "[MQTT-2.2.2-2]"),
    ],
    ids=["length-short", "length-long", "reserved-flag", "will-qos", "will-retain", "flags"],
)
def test_a_malformed_connect_closes(raw, log_lines, bad, needle):
    r = raw()
    r.send(bad)
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines(needle)


@pytest.mark.parametrize(
    ("client_id", "clause"),
    [
        (b"dev\xff\xfe", "[MQTT-1.5.3-1]"),
        (b"dev\xed\xa0\x80", "[MQTT-1.5.3-1]"),
        (b"d\x00v", "[MQTT-1.5.3-2]"),
    ],
    ids=["ill-formed", "surrogate", "u0000"],
)
def test_mqtt_1_5_3_a_bad_string_in_connect_closes(broker, raw, log_lines, client_id, clause):
    user, token = broker.station_credentials()
    r = raw()
    r.send(connect_packet(client_id, user, token))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines(clause, "client id")


def test_a_probe_that_connects_and_closes_logs_nothing(raw, caplog, broker):
    """The devices' broker reachability check (a bare TCP connect) stays quiet."""
    caplog.set_level(logging.INFO)
    raw().close()
    time.sleep(0.3)
    assert not [r for r in caplog.records if r.name == "broker.limits"]


# -- after the CONNECT -------------------------------------------------------------------


def test_a_device_publishing_64_mib_is_closed_on_the_announced_length(
    broker, raw, devices, registry, log_lines
):
    """64 MiB retained from a device: amqtt read it all, copied it and kept it."""
    (issued,) = devices(1)
    prefix = issued.device.topic_prefix
    watcher = raw()
    user, token = broker.station_credentials()
    watcher.send(connect_packet("watcher", user, token))
    watcher.expect(CONNACK)
    watcher.send(subscribe_packet((f"{prefix}/#", 0)))
    watcher.expect(SUBACK)
    dev = device_login(raw, issued)
    rss_before = psutil.Process().memory_info().rss
    size = 64 * 1024 * 1024
    topic = string(f"{prefix}/state")
    dev.send(bytes([(PUBLISH << 4) | 1]) + remaining_length(len(topic) + size) + topic)
    chunk = b"\x00" * (1024 * 1024)
    started = time.monotonic()
    with contextlib.suppress(ConnectionError, TimeoutError):
        for _ in range(64):
            dev.send(chunk)
    assert dev.closed_within(CLOSE_WITHIN_S)
    assert time.monotonic() - started < 5
    # Generous: amqtt grew by 128 MiB (the body and its copy) and kept 64 MiB.
    assert psutil.Process().memory_info().rss - rss_before < 32 * 1024 * 1024
    assert f"{prefix}/state" not in broker.retained_topics("#")
    # An abnormal close: the will is sent [MQTT-3.1.2-8], the registry follows.
    first, body = watcher.read()
    assert first >> 4 == PUBLISH and body.endswith(b"offline")
    wait_for(lambda: not registry.device(issued.device.node_name).online)
    line = log_lines("over the 65536-byte limit for role device")
    assert issued.device.node_name in line.getMessage()
    assert line.levelno == logging.WARNING


def test_a_station_client_may_send_up_to_its_larger_limit(station):
    """1 MiB for the station's own clients: a 100 KB packet (over the device limit)."""
    sub, pub = station("sub"), station("pub")
    sub.send(subscribe_packet(("big/#", 0)))
    sub.expect(SUBACK)
    pub.send(publish_packet("big/one", b"x" * 100_000, qos=1))
    pub.expect(PUBACK)
    body = sub.expect(PUBLISH)
    assert len(body) == 2 + len("big/one") + 100_000


def test_mqtt_2_2_3_an_announced_256_mb_publish_is_closed_before_its_body(station, log_lines):
    r = station("huge")
    r.send(bytes([PUBLISH << 4]) + remaining_length(268_435_455) + string("a/b"))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("268435455 bytes announced", "'huge'")


def test_mqtt_2_2_3_a_remaining_length_in_five_bytes_closes_after_connect(station, log_lines):
    r = station("five")
    r.send(bytes([PUBLISH << 4, 0x80, 0x80, 0x80, 0x80, 0x01]))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-2.2.3]", "'five'")


@pytest.mark.parametrize(
    "bad",
    [
        # PUBLISH whose remaining length (3) ends inside its topic; the rest would be
        # read as the next packet
        bytes([PUBLISH << 4, 3]) + string("a/b") + bytes([PINGREQ << 4, 0]),
        # PINGREQ announcing 2 bytes: amqtt answered and read them as a packet
        bytes([PINGREQ << 4, 2, PINGREQ << 4, 0]),
        # PUBACK with 3 bytes instead of 2
        bytes([PUBACK << 4, 3, 0, 1, 0]),
        # SUBSCRIBE whose filter runs past the remaining length
        bytes([(SUBSCRIBE << 4) | 2, 6, 0, 1, 0, 9, ord("a"), ord("/")]),
    ],
    ids=["publish-short", "pingreq-long", "puback-long", "subscribe-short"],
)
def test_a_wrong_remaining_length_closes(station, log_lines, bad):
    r = station("framing")
    r.send(bad)
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("malformed", "'framing'")


def test_mqtt_3_1_0_2_a_second_connect_closes_and_sends_the_will(broker, station, log_lines):
    watcher = station("watcher")
    watcher.send(subscribe_packet(("will/#", 0)))
    watcher.expect(SUBACK)
    r = station("twice", will=("will/twice", b"gone"))
    user, token = broker.station_credentials()
    r.send(connect_packet("twice", user, token))
    assert r.closed_within(CLOSE_WITHIN_S)
    # An abnormal close: the will is sent [MQTT-3.1.2-8].
    first, body = watcher.read()
    assert first >> 4 == PUBLISH and body == string("will/twice") + b"gone"
    log_lines("[MQTT-3.1.0-2]", "'twice'")


def test_mqtt_3_3_1_4_publish_qos_3_closes(station, log_lines):
    watcher = station("watcher")
    watcher.send(subscribe_packet(("q3/#", 0)))
    watcher.expect(SUBACK)
    r = station("qos3")
    r.send(packet((PUBLISH << 4) | 0x06, string("q3/x") + b"\x00\x01" + b"payload"))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-3.3.1-4]", "'qos3'")
    # Nothing was routed.
    watcher.send(bytes([PINGREQ << 4, 0]))
    assert watcher.read()[0] >> 4 == PINGRESP


@pytest.mark.parametrize(
    ("bad", "clause"),
    [
        (subscribe_packet(("a/b", 0), flags=0x00), "[MQTT-3.8.1-1]"),
        (subscribe_packet(("a/b", 0), flags=0x03), "[MQTT-3.8.1-1]"),
        (packet((PUBREL << 4) | 0x00, b"\x00\x01"), "[MQTT-3.6.1-1]"),
        (packet((UNSUBSCRIBE << 4) | 0x00, b"\x00\x01" + string("a/b")), "[MQTT-3.10.1-1]"),
        (bytes([(PINGREQ << 4) | 0x01, 0]), "[MQTT-2.2.2-2]"),
        (bytes([(DISCONNECT << 4) | 0x08, 0]), "[MQTT-2.2.2-2]"),
    ],
    ids=["subscribe-0", "subscribe-3", "pubrel-0", "unsubscribe-0", "pingreq-1", "disconnect-8"],
)
def test_mqtt_2_2_2_2_reserved_flag_bits_wrong_closes(station, log_lines, bad, clause):
    r = station("flags")
    r.send(bad)
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines(clause, "'flags'")


@pytest.mark.parametrize(
    ("first_byte", "needle"),
    [
        (0x00, "reserved packet type 0"),
        (0xF0, "reserved packet type 15"),
        (CONNACK << 4, "CONNACK is a packet only a server sends"),
        (SUBACK << 4, "SUBACK is a packet only a server sends"),
        (PINGRESP << 4, "PINGRESP is a packet only a server sends"),
    ],
    ids=["type-0", "type-15", "connack", "suback", "pingresp"],
)
def test_an_unknown_or_server_only_packet_type_closes(station, log_lines, first_byte, needle):
    r = station("types")
    r.send(bytes([first_byte, 2, 0, 1]))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines(needle, "'types'")


def test_mqtt_3_8_3_3_subscribe_with_no_filters_closes(station, log_lines):
    r = station("nofilter")
    r.send(packet((SUBSCRIBE << 4) | 2, b"\x00\x01"))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-3.8.3-3]", "'nofilter'")


def test_mqtt_3_10_3_2_unsubscribe_with_no_filters_closes(station, log_lines):
    r = station("nofilter")
    r.send(packet((UNSUBSCRIBE << 4) | 2, b"\x00\x01"))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-3.10.3-2]", "'nofilter'")


def test_mqtt_3_8_3_4_subscribe_requesting_qos_3_closes(station, log_lines):
    """amqtt granted QoS 3 in its SUBACK."""
    r = station("qos3sub")
    r.send(subscribe_packet(("a/b", 3)))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-3.8.3-4]", "'qos3sub'")


@pytest.mark.parametrize("topic", [b"bad/\xff", b"bad/\xc3", b"bad/\xed\xb0\x80"])
def test_mqtt_1_5_3_1_ill_formed_utf8_topic_closes_connection(station, log_lines, topic):
    """amqtt routed the message under the text of the bytes' repr ("b'bad/\\xff'")."""
    watcher = station("watcher")
    watcher.send(subscribe_packet(("#", 0)))
    watcher.expect(SUBACK)
    r = station("utf8")
    r.send(publish_packet(topic, b"x"))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-1.5.3-1]", "'utf8'")
    watcher.send(bytes([PINGREQ << 4, 0]))
    assert watcher.read()[0] >> 4 == PINGRESP  # nothing was routed before it


def test_mqtt_1_5_3_2_u0000_in_topic_closes_connection(station, log_lines):
    r = station("nul")
    r.send(publish_packet(b"bad/\x00/x", b"x"))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-1.5.3-2]", "'nul'")


@pytest.mark.parametrize("topic_filter", [b"bad/\xff/#", b"bad/\x00"])
def test_mqtt_1_5_3_a_bad_string_in_a_subscribe_filter_closes(station, log_lines, topic_filter):
    r = station("filter")
    r.send(subscribe_packet((topic_filter, 0)))
    assert r.closed_within(CLOSE_WITHIN_S)
    log_lines("[MQTT-1.5.3-", "'filter'")


# -- everyone else is served, and the registry loses nothing ----------------------------

BAD_BEFORE_CONNECT = [
    bytes([CONNECT << 4]) + remaining_length(268_435_455),
    bytes([CONNECT << 4, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    publish_packet("a/b", b"x"),
    connect_packet(b"x\xff"),
    connect_packet("reserved", flags=0x03),
    b"GET / HTTP/1.1\r\nHost: station\r\n\r\n",
]
BAD_AFTER_CONNECT = [
    bytes([PUBLISH << 4]) + remaining_length(10_000_000) + string("a/b"),
    bytes([PUBLISH << 4, 3]) + string("a/b"),
    packet((PUBLISH << 4) | 6, string("a/b") + b"\x00\x01"),
    publish_packet(b"t/\xff", b"x"),
    publish_packet(b"t/\x00", b"x"),
    packet((SUBSCRIBE << 4) | 2, b"\x00\x01"),
    subscribe_packet(("a/b", 0), flags=0),
    packet(PUBREL << 4, b"\x00\x01"),
    bytes([0xF0, 0]),
    bytes([CONNACK << 4, 2, 0, 0]),
]


class Device:
    """A well-behaved device (raw socket): publishes its state at QoS 1 and answers
    commands, from its own thread, recording every round trip."""

    def __init__(self, raw, issued) -> None:
        self.prefix = issued.device.topic_prefix
        self.conn = device_login(raw, issued)
        self.conn.send(subscribe_packet((f"{self.prefix}/cmd", 1)))
        assert self.conn.expect(SUBACK)[2] == 1
        self.conn.send(publish_packet(f"{self.prefix}/status", b"online", qos=1, retain=True))
        self.conn.expect(PUBACK)
        self.states = 0
        self.commands: list[bytes] = []
        self.worst_ack_s = 0.0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                state = json.dumps({"temperature": 20 + self.states % 5, "humidity": 40.0})
                started = time.monotonic()
                self.conn.send(publish_packet(f"{self.prefix}/state", state.encode(), qos=1))
                while True:
                    first, body = self.conn.read(timeout=5)
                    if first >> 4 == PUBACK:
                        break
                    if first >> 4 == PUBLISH:  # a command, QoS 1: acknowledge it
                        (n,) = struct.unpack("!H", body[:2])
                        self.conn.send(packet(PUBACK << 4, body[2 + n : 4 + n]))
                        self.commands.append(body[4 + n :])
                self.worst_ack_s = max(self.worst_ack_s, time.monotonic() - started)
                self.states += 1
                time.sleep(0.02)
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self.errors, self.errors


def test_bad_clients_leave_a_device_served_and_the_registry_whole(
    broker, raw, station, devices, registry, caplog
):
    caplog.set_level(logging.INFO)
    good, bad_device = devices(2)
    node = good.device.node_name
    watcher = station("watcher")
    watcher.send(subscribe_packet((f"{good.device.topic_prefix}/#", 0)))
    watcher.expect(SUBACK)
    device = Device(raw, good)
    wait_for(lambda: registry.device(node).online)
    device.start()
    sent_commands = 0
    closed = 0
    for i, bad in enumerate(BAD_BEFORE_CONNECT + BAD_AFTER_CONNECT * 2):
        if i < len(BAD_BEFORE_CONNECT):
            r = raw()
        elif i % 2:
            r = station(f"bad-{i}")
        else:  # a registered device misbehaving: its own connection only
            r = device_login(raw, bad_device)
        with contextlib.suppress(ConnectionError):
            r.send(bad)
        closed += r.closed_within(CLOSE_WITHIN_S)
        broker.send_command(good.device, {"cmd": "identify"})
        sent_commands += 1
    assert closed == len(BAD_BEFORE_CONNECT) + 2 * len(BAD_AFTER_CONNECT)
    wait_for(lambda: len(device.commands) == sent_commands, 5)
    time.sleep(0.2)
    device.stop()
    assert device.states > 10
    assert device.worst_ack_s < 1.0, f"the device waited {device.worst_ack_s:.2f}s for a PUBACK"
    assert all(json.loads(c) == {"cmd": "identify"} for c in device.commands)
    # The registry: the good device online with every reading, the bad one still there.
    wait_for(lambda: len(registry.readings(registry.device(node))) == device.states, 5)
    dev = registry.device(node)
    assert dev.online and dev.is_provisioned and dev.last_state is not None
    assert registry.device(bad_device.device.node_name) is not None
    assert len(registry.devices()) == 2
    assert f"{good.device.topic_prefix}/status" in broker.retained_topics("#")
    # The watcher saw every state and no `offline` from the good device.
    states = []
    with contextlib.suppress(TimeoutError):
        while True:
            _, body = watcher.read(timeout=0.5)
            (n,) = struct.unpack("!H", body[:2])
            topic = body[2 : 2 + n].decode()
            states.append((topic, body[2 + n :]))
    assert sum(t.endswith("/state") for t, _ in states) == device.states
    assert (f"{good.device.topic_prefix}/status", b"offline") not in states
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]


def test_a_connect_flood_leaves_a_device_served(broker, raw, station, devices, registry):
    """300 sockets opened at once (half idle, half sending a partial CONNECT), and one
    client reconnecting in a tight loop: the device's round trips stay short, and the
    idle ones are closed at the CONNECT timeout."""
    (good,) = devices(1)
    device = Device(raw, good)
    device.start()
    baseline = broker.clients_connected
    flood = []
    for i in range(300):
        r = Raw(broker.port)
        if i % 2:
            r.send(connect_packet(f"flood-{i}")[:9])
        flood.append(r)
    user, token = broker.station_credentials()
    for i in range(100):
        r = Raw(broker.port)
        r.send(connect_packet("reconnector", user, token))
        assert r.expect(CONNACK) == b"\x00\x00"
        if i % 2:
            r.send(bytes([DISCONNECT << 4, 0]))
        r.close()
    started = time.monotonic()
    assert all(r.closed_within(CONNECT_TIMEOUT_S + CLOSE_WITHIN_S) for r in flood)
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + CLOSE_WITHIN_S + 1
    for r in flood:
        r.close()
    time.sleep(0.3)
    device.stop()
    assert device.worst_ack_s < 1.0, f"the device waited {device.worst_ack_s:.2f}s for a PUBACK"
    assert device.states > 10
    wait_for(lambda: broker.clients_connected == baseline, 5)
    assert registry.device(good.device.node_name).online


def test_a_connection_past_max_connections_is_closed_at_once_like_mosquitto(
    registry, tmp_path, caplog
):
    """Mosquitto closes a connection past `max_connections` at once (its client sees
    the close and retries); amqtt left it waiting unread for a free slot, its CONNECT
    never answered. The same client script against both: open logins until one is
    closed without an answer."""
    from mosquitto import Mosquitto

    def fill(port: int, login: tuple[str | None, str | None]) -> tuple[int, list[Raw]]:
        held: list[Raw] = []
        for n in range(10):
            r = Raw(port)
            r.send(connect_packet(f"held{n}", *login))
            try:
                r.expect(CONNACK, timeout=CLOSE_WITHIN_S)
            except (ConnectionError, OSError):
                return n, held  # closed at once, nothing sent
            held.append(r)
        raise AssertionError(f"10 connections to {port} and none refused")

    station = EmbeddedBroker(
        registry,
        BrokerSettings(bind_host="127.0.0.1", port=0, max_connections=3),
        flush_interval_s=0.01,
    )
    station.start()
    user, token = station.station_credentials()
    try:
        accepted, held = fill(station.port, (user, token))
        assert accepted == 3
        held.pop().sock.close()
        wait_for(lambda: _connects(station.port, (user, token)), 3)
        with Mosquitto(tmp_path / "mosquitto", extra=["max_connections 3"]) as mosq:
            # Mosquitto 2.0.11 lets one more in than it is told, then refuses the same way.
            accepted, _ = fill(mosq.port, (None, None))
            assert accepted in (3, 4)
    finally:
        station.stop()
    assert any("max_connections reached" in r.getMessage() for r in caplog.records)


def _connects(port: int, login: tuple[str, str]) -> bool:
    r = Raw(port)
    r.send(connect_packet("again", *login))
    try:
        return r.expect(CONNACK)[1] == 0
    except (ConnectionError, OSError):
        return False


def test_stopping_with_a_half_sent_connect_and_an_idle_socket_logs_no_traceback(
    broker, raw, caplog
):
    """Stopping the broker cancels the connections still in their CONNECT. Python
    3.11's asyncio logged "Exception in callback …" with a CancelledError traceback for
    each (it asks a cancelled task for its exception)."""
    user, token = broker.station_credentials()
    half = raw()
    half.send(connect_packet("half", user, token)[:10])
    raw()  # connected, nothing sent
    time.sleep(0.3)  # both are in the broker's CONNECT read
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 5
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert half.closed_within(CLOSE_WITHIN_S)
