"""A minimal asyncio MQTT 3.1.1 client for load generation.

A thousand paho clients would mean a thousand threads on a 2-core machine and
measure paho rather than the broker; this speaks just the packets the load needs
(CONNECT with will and credentials, PUBLISH QoS 0/1, SUBSCRIBE, PINGREQ).
"""

from __future__ import annotations

import asyncio
import struct

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 2, 3, 4, 9, 13


def _str(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _length(len(body)) + body


def connect_packet(
    client_id: str,
    username: str | None,
    password: str | None,
    will: tuple[str, bytes] | None = None,
    keepalive: int = 30,
) -> bytes:
    flags = 0x02  # clean session
    payload = _str(client_id)
    if will:
        flags |= 0x04 | (1 << 3) | 0x20  # will, QoS 1, retained
        payload += _str(will[0]) + _str(will[1])
    if username is not None:
        flags |= 0x80
        payload += _str(username)
    if password is not None:
        flags |= 0x40
        payload += _str(password)
    header = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return _packet(0x10, header + payload)


def publish_packet(
    topic: str, payload: bytes, qos: int = 0, retain: bool = False, packet_id: int = 1
) -> bytes:
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return _packet(0x30 | (qos << 1) | int(retain), body)


def subscribe_packet(topic_filter: str, qos: int = 0, packet_id: int = 1) -> bytes:
    return _packet(0x82, struct.pack("!H", packet_id) + _str(topic_filter) + bytes([qos]))


PINGREQ = bytes([0xC0, 0])


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """(packet type, flags, body)."""
    first = (await reader.readexactly(1))[0]
    length, multiplier = 0, 1
    while True:
        byte = (await reader.readexactly(1))[0]
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            break
        multiplier *= 128
    body = await reader.readexactly(length) if length else b""
    return first >> 4, first & 0x0F, body


def parse_publish(flags: int, body: bytes) -> tuple[str, bytes]:
    (tlen,) = struct.unpack_from("!H", body)
    topic = body[2 : 2 + tlen].decode()
    start = 2 + tlen + (2 if (flags >> 1) & 3 else 0)
    return topic, body[start:]


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        client_id: str,
        username: str | None,
        password: str | None,
        will: tuple[str, bytes] | None = None,
        keepalive: int = 30,
    ) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(connect_packet(client_id, username, password, will, keepalive))
        ptype, _, body = await read_packet(reader)
        if ptype != CONNACK or body[1] != 0:
            writer.close()
            raise ConnectionRefusedError(f"{client_id}: CONNACK {body!r}")
        return cls(reader, writer)

    async def publish_ack(
        self, topic: str, payload: bytes, retain: bool = False, packet_id: int = 1
    ) -> None:
        self.writer.write(publish_packet(topic, payload, 1, retain, packet_id))
        while True:
            ptype, _, _ = await read_packet(self.reader)
            if ptype == PUBACK:
                return

    def publish(self, topic: str, payload: bytes) -> None:
        self.writer.write(publish_packet(topic, payload))

    async def subscribe(self, topic_filter: str, qos: int = 0) -> int:
        self.writer.write(subscribe_packet(topic_filter, qos))
        while True:
            ptype, _, body = await read_packet(self.reader)
            if ptype == SUBACK:
                return body[2]

    def start_pinging(self, every: float = 10.0) -> None:
        """Keep the connection alive while the caller does not publish (the station's
        broker drops clients silent past 1.5x their keep-alive). Like a real client,
        stop pinging once regular publishes keep the connection busy."""

        async def ping() -> None:
            while True:
                await asyncio.sleep(every)
                self.writer.write(PINGREQ)

        self._ping = asyncio.create_task(ping())

    def stop_pinging(self) -> None:
        ping = getattr(self, "_ping", None)
        if ping is not None:
            ping.cancel()

    def close(self) -> None:
        self.stop_pinging()
        self.writer.close()
