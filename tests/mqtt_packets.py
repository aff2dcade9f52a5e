"""MQTT 3.1.1 packets as bytes, encoded from the standard (sections 1.5, 2 and 3), for
the raw-socket tests (importable as `mqtt_packets`): what goes on the wire is exactly
what a test says, malformed packets included."""

from __future__ import annotations

import struct

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8,
    9,
    10,
    11,
    12,
    13,
    14,
)


def remaining_length(n: int) -> bytes:
    """The variable-length integer of section 2.2.3."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: str | bytes) -> bytes:
    """A UTF-8 string (section 1.5.3): two length bytes, then the bytes as given."""
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + remaining_length(len(body)) + body


def connect(
    client_id: str | bytes,
    username: str | bytes | None = None,
    password: str | bytes | None = None,
    *,
    clean: bool = True,
    flags: int | None = None,
    will: tuple[str | bytes, bytes] | None = None,
    keepalive: int = 30,
    proto_name: str = "MQTT",
    proto_level: int = 4,
    properties: bytes | None = None,
) -> bytes:
    """A CONNECT. `flags`: the connect flags' low bits as given (reserved, clean, will
    QoS/retain), for malformed packets; else the clean-session bit from `clean`. The
    username/password bits follow the fields given; `will` (topic, message) is sent
    with QoS 1, retained. `properties`: MQTT 5 only, after the keep-alive."""
    bits = (0x02 if clean else 0) if flags is None else flags
    bits |= (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    payload = string(client_id)
    if will is not None:
        bits |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
        payload += string(will[0]) + string(will[1])
    if username is not None:
        payload += string(username)
    if password is not None:
        payload += string(password)
    header = string(proto_name) + bytes([proto_level, bits]) + struct.pack("!H", keepalive)
    if properties is not None:
        header += remaining_length(len(properties)) + properties
    return packet(CONNECT << 4, header + payload)


def publish(
    topic: str | bytes,
    payload: bytes,
    qos: int = 0,
    *,
    retain: bool = False,
    packet_id: int = 1,
) -> bytes:
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet((PUBLISH << 4) | (qos << 1) | int(retain), body)


def subscribe(*filters: tuple[str | bytes, int], packet_id: int = 1, flags: int = 0x02) -> bytes:
    """A SUBSCRIBE of (filter, QoS) pairs; `flags`: the fixed header's low bits (0x02
    is the only valid value [MQTT-3.8.1-1])."""
    body = struct.pack("!H", packet_id) + b"".join(string(f) + bytes([q]) for f, q in filters)
    return packet((SUBSCRIBE << 4) | flags, body)
