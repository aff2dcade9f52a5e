"""MQTT 3.1.1 (OASIS standard) conformance of the embedded broker, at the wire level.

Each test is named after the clause it checks and talks to the broker over a raw
socket, so the exact bytes the broker sends (QoS and retain bits, CONNACK return
codes, the close of the connection) are what is asserted, not a client library's
reading of them. Packets are encoded from the standard's section 3 (tests/mqtt_packets.py).

Run once by hand against Mosquitto 2.0.11 (not part of `make test`, which does not
install it), every test agreed except where the station chooses differently: MQTT 5
and 3.1 (Mosquitto speaks both; the station answers 0x01, docs/DESIGN.md) and a
client's publish to a `$` topic (Mosquitto routes it).
"""

from __future__ import annotations

import logging
import socket
import struct
import time

import pytest
from mqtt_packets import (
    CONNACK,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    packet,
)
from mqtt_packets import connect as connect_packet
from mqtt_packets import publish as publish_packet
from mqtt_packets import subscribe as subscribe_packet

# -- a raw client ---------------------------------------------------------------------


class Closed(Exception):
    """The broker closed the connection."""


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> None:
        while len(self.buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no packet from the broker in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed()
            self.buffer += chunk

    def read(self, timeout: float = 3.0) -> tuple[int, bytes]:
        """One packet: (first byte, body)."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        length, multiplier, i = 0, 1, 1
        while True:
            self._fill(i + 1, deadline)
            byte = self.buffer[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
        self._fill(i + length, deadline)
        first, body = self.buffer[0], self.buffer[i : i + length]
        self.buffer = self.buffer[i + length :]
        return first, body

    def read_raw(self, n: int, timeout: float = 3.0) -> bytes:
        self._fill(n, time.monotonic() + timeout)
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def expect(self, packet_type: int, timeout: float = 3.0) -> tuple[int, bytes]:
        first, body = self.read(timeout)
        assert first >> 4 == packet_type, f"expected type {packet_type}, got {first:#04x} {body!r}"
        return first, body

    def closed_within(self, timeout: float) -> bool:
        """True if the broker closes the connection (EOF or reset) within timeout,
        having sent nothing more."""
        deadline = time.monotonic() + timeout
        try:
            self._fill(len(self.buffer) + 1, deadline)
        except Closed:
            return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        raise AssertionError(f"expected a close, got bytes {self.buffer!r}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(broker):
    """Open raw connections to the broker; `raw(client_id)` logs in as a station client."""
    opened: list[Raw] = []
    user, token = broker.station_credentials()

    def _open(client_id: str | None = None, *, clean: bool = True) -> Raw:
        r = Raw(broker.port)
        opened.append(r)
        if client_id is not None:
            r.send(connect_packet(client_id, user, token, clean=clean))
            _, body = r.expect(CONNACK)
            assert body[1] == 0, f"login refused: {body!r}"
        return r

    yield _open
    for r in opened:
        r.close()


def subscribe(r: Raw, topic_filter: str, qos: int, packet_id: int = 1) -> int:
    r.send(subscribe_packet((topic_filter, qos), packet_id=packet_id))
    _, body = r.expect(SUBACK)
    assert body[:2] == struct.pack("!H", packet_id)
    return body[2]


def next_publish(r: Raw, timeout: float = 3.0) -> tuple[int, bool, str, bytes]:
    """(qos, retain, topic, payload) of the next PUBLISH; acknowledges QoS 1/2."""
    first, body = r.expect(PUBLISH, timeout)
    qos, retain = (first >> 1) & 0x03, bool(first & 0x01)
    (n,) = struct.unpack("!H", body[:2])
    topic, rest = body[2 : 2 + n].decode(), body[2 + n :]
    if qos:
        packet_id, rest = rest[:2], rest[2:]
        r.send(packet((PUBACK if qos == 1 else PUBREC) << 4, packet_id))
        if qos == 2:
            r.expect(PUBREL)
            r.send(packet(0x70, packet_id))  # PUBCOMP
    return qos, retain, topic, bytes(rest)


def publish(r: Raw, topic: str, payload: bytes, qos: int, *, retain: bool = False) -> None:
    """Publish and wait for the flow to complete, so the broker has the message."""
    r.send(publish_packet(topic, payload, qos, retain=retain, packet_id=7))
    if qos == 1:
        r.expect(PUBACK)
    elif qos == 2:
        r.expect(PUBREC)
        r.send(packet((PUBREL << 4) | 0x02, struct.pack("!H", 7)))
        r.expect(7)  # PUBCOMP


def ping(r: Raw) -> None:
    """A round trip: everything the broker sent before it has arrived."""
    r.send(packet(PINGREQ << 4, b""))
    first, body = r.read()
    assert first >> 4 == PINGRESP, f"unexpected packet {first:#04x} {body!r} before PINGRESP"


# -- 3.8.4-6: delivered QoS = min(published QoS, granted QoS) ----------------------------


@pytest.mark.parametrize(("granted", "published"), [(2, 0), (2, 1), (1, 0), (0, 2), (1, 2)])
def test_mqtt_3_8_4_6_live_delivery_qos_is_the_minimum(raw, granted, published):
    sub, pub = raw("sub"), raw("pub")
    assert subscribe(sub, "conf/qos", granted) == granted
    publish(pub, "conf/qos", b"m", published)
    qos, retain, topic, payload = next_publish(sub)
    assert (topic, payload, retain) == ("conf/qos", b"m", False)
    assert qos == min(granted, published)


@pytest.mark.parametrize(("granted", "published"), [(1, 0), (2, 0), (2, 1), (0, 1), (1, 2)])
def test_mqtt_3_8_4_6_retained_replay_qos_is_the_minimum(raw, granted, published):
    pub = raw("pub")
    publish(pub, "conf/retained", b"kept", published, retain=True)
    sub = raw("sub")
    assert subscribe(sub, "conf/retained", granted) == granted
    qos, retain, topic, payload = next_publish(sub)
    assert (topic, payload, retain) == ("conf/retained", b"kept", True)
    assert qos == min(granted, published)


# -- 3.8.4-3: a SUBSCRIBE to an existing filter replaces its subscription ---------------


@pytest.mark.parametrize(("first", "second"), [(0, 2), (2, 0), (1, 2)])
def test_mqtt_3_8_4_3_resubscribe_replaces_the_qos(raw, first, second):
    sub, pub = raw("sub"), raw("pub")
    assert subscribe(sub, "conf/re", first, packet_id=1) == first
    assert subscribe(sub, "conf/re", second, packet_id=2) == second
    for payload in (b"one", b"two"):
        publish(pub, "conf/re", payload, 2)
        assert next_publish(sub)[0::3] == (second, payload)
    # Replaced, not added: each message arrives once.
    ping(sub)


# -- 3.3.2-2: a wildcard in a PUBLISH topic closes the connection ------------------------


@pytest.mark.parametrize("topic", ["conf/+/x", "conf/#", "+", "conf/a+b"])
def test_mqtt_3_3_2_2_wildcard_in_publish_topic_closes_the_connection(raw, topic):
    watcher = raw("watcher")
    subscribe(watcher, "#", 0)
    bad = raw("bad")
    # A payload that reads as a PUBREL if the broker skips only the topic.
    bad.send(publish_packet(topic, bytes([PUBREL << 4 | 2, 2, 0, 1]), qos=1))
    assert bad.closed_within(3.0)
    # Nothing was routed, and the broker still serves everyone else.
    ping(watcher)


# -- 3.1.2-2: an unsupported protocol level gets CONNACK 0x01, then the close ------------


@pytest.mark.parametrize(
    ("name", "level", "properties"),
    [
        ("MQTT", 5, b""),  # MQTT 5, no properties
        ("MQTT", 5, b"\x21\x00\x14\x22\x00\x0a"),  # receive maximum, topic alias maximum
        ("MQIsdp", 3, None),  # MQTT 3.1
        ("MQTT", 3, None),
    ],
)
def test_mqtt_3_1_2_2_unsupported_protocol_level_gets_connack_0x01_and_close(
    broker, raw, name, level, properties
):
    user, token = broker.station_credentials()
    r = raw()
    r.send(
        connect_packet(
            "old-or-new", user, token, proto_name=name, proto_level=level, properties=properties
        )
    )
    # CONNACK: session present 0 [MQTT-3.2.2-4], return code 0x01.
    assert r.read_raw(4) == bytes([CONNACK << 4, 2, 0, 1])
    assert r.closed_within(3.0)


def test_mqtt_3_1_2_1_unknown_protocol_name_is_closed(broker, raw):
    """The standard lets the server close without a CONNACK; it must not hang."""
    r = raw()
    r.send(connect_packet("who", proto_name="XMPP", proto_level=4))
    assert r.closed_within(3.0)


# -- 3.1.4-2: a new connection with a live client id is served at once -------------------


def test_mqtt_3_1_4_2_reconnect_after_a_dollar_topic_publish_is_prompt(raw, broker):
    watcher = raw("watcher")
    subscribe(watcher, "$private/x", 0)
    first = raw("dollar")
    first.send(publish_packet("$private/x", b"not for clients", 0))
    ping(first)  # still served: a `$` publish is dropped, the connection kept
    first.send(packet(DISCONNECT << 4, b""))
    assert first.closed_within(3.0)
    started = time.monotonic()
    raw("dollar")
    assert time.monotonic() - started < 1.0
    # The station's rule, not the standard's: `$` topics belong to the broker, so the
    # client's publish was not routed (Mosquitto routes `$` topics other than `$SYS`).
    ping(watcher)


# -- 3.2.2-2: session present = 0 when no session was kept -------------------------------


def test_mqtt_3_2_2_2_no_session_present_after_a_clean_session_ended(broker, raw):
    user, token = broker.station_credentials()
    first = raw("sess")  # clean session
    subscribe(first, "conf/sess", 1)
    first.send(packet(DISCONNECT << 4, b""))
    assert first.closed_within(3.0)
    second = raw()
    second.send(connect_packet("sess", user, token, clean=False))
    _, body = second.expect(CONNACK)
    assert body == b"\x00\x00", "a clean session must end with its connection"
    # and the old clean session's subscription went with it
    pub = raw("pub")
    publish(pub, "conf/sess", b"x", 1)
    ping(second)
    second.send(packet(DISCONNECT << 4, b""))
    assert second.closed_within(3.0)
    # MQTT-3.2.2-2's other half: the persistent session is there now.
    third = raw()
    third.send(connect_packet("sess", user, token, clean=False))
    assert third.expect(CONNACK)[1] == b"\x01\x00"


def test_mqtt_3_2_2_2_a_persistent_connect_racing_a_clean_sessions_end(broker, raw, caplog):
    """The same, with the persistent CONNECT sent while the clean connection is still
    closing (no wait for its close). amqtt then reused the ending clean session: session
    present 1, and the session stayed clean, so the end of its own connection deleted it
    (and messages for it were never queued, and a later take-over found no session)."""
    user, token = broker.station_credentials()
    pub = raw("pub")
    for n in range(20):
        client = f"race{n}"
        first = raw(client)  # clean session
        subscribe(first, "conf/race", 1)
        first.send(packet(DISCONNECT << 4, b""))
        second = raw()
        second.send(connect_packet(client, user, token, clean=False))
        _, body = second.expect(CONNACK)
        assert body == b"\x00\x00", f"round {n}: a clean session must end with its connection"
        assert subscribe(second, "conf/race", 1) == 1
        second.send(packet(DISCONNECT << 4, b""))
        assert second.closed_within(3.0)
        # Persistent now: a QoS 1 message is kept for it while it is away.
        publish(pub, "conf/race", f"m{n}".encode(), 1)
        third = raw()
        third.send(connect_packet(client, user, token, clean=False))
        assert third.expect(CONNACK)[1] == b"\x01\x00", f"round {n}"
        assert next_publish(third) == (1, False, "conf/race", f"m{n}".encode())
        third.send(packet(DISCONNECT << 4, b""))
        assert third.closed_within(3.0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_mqtt_3_1_4_2_a_persistent_connect_takes_over_an_open_clean_session(broker, raw):
    """A clean_session=0 CONNECT for a client id whose clean connection is still open:
    the old connection is closed [MQTT-3.1.4-2] and its clean session is not resumed
    (session present 0)."""
    user, token = broker.station_credentials()
    first = raw("taker")  # clean, stays open
    subscribe(first, "conf/taker", 1)
    second = raw()
    second.send(connect_packet("taker", user, token, clean=False))
    assert second.expect(CONNACK)[1] == b"\x00\x00"
    assert first.closed_within(3.0)
    # The clean session's subscription went with it; the new session has none.
    pub = raw("pub")
    publish(pub, "conf/taker", b"x", 1)
    ping(second)


# -- 3.3.1-9: retain = 0 on messages queued for an established subscription -------------


def test_mqtt_3_3_1_9_queued_messages_arrive_with_retain_0(broker, raw):
    user, token = broker.station_credentials()
    sub = raw()
    sub.send(connect_packet("queued", user, token, clean=False))
    sub.expect(CONNACK)
    assert subscribe(sub, "conf/queued", 1) == 1
    sub.send(packet(DISCONNECT << 4, b""))
    assert sub.closed_within(3.0)
    pub = raw("pub")
    publish(pub, "conf/queued", b"zero", 0)
    publish(pub, "conf/queued", b"one", 1)
    back = raw()
    back.send(connect_packet("queued", user, token, clean=False))
    assert back.expect(CONNACK)[1] == b"\x01\x00"
    # The QoS 1 message was kept and comes back as it was published: QoS 1, retain 0.
    assert next_publish(back) == (1, False, "conf/queued", b"one")
    # The QoS 0 one was not queued (MQTT 3.1.2.4 lets a server drop it; Mosquitto's
    # default too), and so never upgraded to the subscription's QoS 1.
    ping(back)


# -- 4.4.0-1: unacknowledged QoS 1 messages are resent when the session resumes ---------


def test_mqtt_4_4_0_1_unacknowledged_qos1_is_resent_on_resume(broker, raw):
    user, token = broker.station_credentials()
    sub = raw()
    sub.send(connect_packet("resume", user, token, clean=False))
    sub.expect(CONNACK)
    assert subscribe(sub, "conf/resume", 1) == 1
    pub = raw("pub")
    sent = []
    for payload in (b"first", b"second"):
        publish(pub, "conf/resume", payload, 1)
        first, body = sub.expect(PUBLISH)
        assert first == 0x32  # QoS 1, DUP 0, retain 0
        sent.append(body)
    sub.close()  # gone without acknowledging either
    back = raw()
    back.send(connect_packet("resume", user, token, clean=False))
    assert back.expect(CONNACK)[1] == b"\x01\x00"
    for body in sent:
        first, again = back.expect(PUBLISH)
        # The same packet, packet id included, with DUP 1 [MQTT-3.3.1-1].
        assert (first, again) == (0x3A, body)
        back.send(packet(PUBACK << 4, body[2 + len("conf/resume") : 4 + len("conf/resume")]))
    ping(back)


def test_mqtt_4_4_0_1_a_message_routed_while_a_session_resumes_is_sent_once(broker, raw):
    """A QoS 1 message routed in the moment a persistent session resumes (amqtt marks
    it connected before it resends the in-flight store) comes once, not once live and
    again as a resend with DUP 1. The race needs the publish and the CONNECT to
    cross, so it is run many times."""
    user, token = broker.station_credentials()
    sub = raw()
    sub.send(connect_packet("crossing", user, token, clean=False))
    sub.expect(CONNACK)
    assert subscribe(sub, "conf/crossing", 1) == 1
    sub.send(packet(DISCONNECT << 4, b""))
    assert sub.closed_within(3.0)
    pub = raw("pub")
    for n in range(40):
        payload = f"m{n}".encode()
        # Sent without waiting for the PUBACK: routing and the CONNECT cross.
        pub.send(publish_packet("conf/crossing", payload, 1, packet_id=n + 1))
        back = raw()
        back.send(connect_packet("crossing", user, token, clean=False))
        assert back.expect(CONNACK)[1] == b"\x01\x00"
        got: list[bytes] = []
        while not got:  # round trips until the message is in
            back.send(packet(PINGREQ << 4, b""))
            while (first_body := back.read())[0] >> 4 != PINGRESP:
                first, body = first_body
                assert first >> 4 == PUBLISH, f"round {n}: {first:#04x} {body!r}"
                topic_end = 2 + struct.unpack("!H", body[:2])[0]
                got.append(body[topic_end + 2 :])
                back.send(packet(PUBACK << 4, body[topic_end : topic_end + 2]))
        ping(back)  # a resend would come before this PINGRESP
        assert got == [payload], f"round {n}"
        pub.expect(PUBACK)
        back.send(packet(DISCONNECT << 4, b""))
        assert back.closed_within(3.0)


def test_mqtt_4_4_0_1_unacknowledged_qos2_is_resumed(broker, raw):
    """QoS 2: a PUBLISH without PUBREC is resent (DUP 1); one whose PUBREC came but
    whose PUBCOMP did not gets its PUBREL again."""
    user, token = broker.station_credentials()
    sub = raw()
    sub.send(connect_packet("resume2", user, token, clean=False))
    sub.expect(CONNACK)
    assert subscribe(sub, "conf/resume2", 2) == 2
    pub = raw("pub")
    publish(pub, "conf/resume2", b"unreceived", 2)
    first, unreceived = sub.expect(PUBLISH)
    assert first == 0x34
    publish(pub, "conf/resume2", b"received", 2)
    first, received = sub.expect(PUBLISH)
    received_id = received[-len(b"received") - 2 : -len(b"received")]
    sub.send(packet(PUBREC << 4, received_id))
    assert sub.expect(PUBREL) == (0x62, received_id)
    sub.close()  # gone: no PUBREC for the first, no PUBCOMP for the second
    back = raw()
    back.send(connect_packet("resume2", user, token, clean=False))
    assert back.expect(CONNACK)[1] == b"\x01\x00"
    got = {back.read(), back.read()}
    assert got == {(0x3C, unreceived), (0x62, received_id)}
