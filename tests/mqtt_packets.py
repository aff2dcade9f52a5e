"""MQTT 3.1.1 packets as bytes, for raw-socket tests (importable as `mqtt_packets`)."""

from __future__ import annotations

import struct

CONNECT, PUBLISH, SUBSCRIBE = 1, 3, 8


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(raw)) + raw


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + remaining_length(len(body)) + body


def connect(client_id: str, username: str, password: str, *, clean: bool = True) -> bytes:
    flags = (0x02 if clean else 0) | 0x80 | 0x40
    body = string("MQTT") + bytes([4, flags]) + struct.pack("!H", 60) + string(client_id)
    return packet(CONNECT << 4, body + string(username) + string(password))


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1) -> bytes:
    body = string(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet((PUBLISH << 4) | (qos << 1), body)


def subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    body = struct.pack("!H", packet_id) + string(topic_filter) + bytes([qos])
    return packet((SUBSCRIBE << 4) | 0x02, body)
