"""Bad input at the broker: one client's bytes never cost the others (issue 9, part 4).

amqtt 0.12.1 decodes each packet field by field straight from the socket, trusting
the fixed header. Measured against it (tests/broker/test_bad_input.py):

- **Size**: a PUBLISH's body is read into memory whatever its announced remaining
  length (up to 256 MB), then copied; a 64 MiB retained publish from a device was
  accepted and kept. Here every packet's remaining length is checked against a
  limit for the connection's role *before* its body is read: `max_packet_connect`
  until the CONNECT is accepted, then `max_packet_device` for devices and
  `max_packet_client` for the station's own clients and integration accounts.
- **Framing**: a remaining length that disagrees with the contents made amqtt read
  into the next packet, or leave bytes that it then read as one; a length in more
  than 4 bytes [MQTT-2.2.3] was "discarded" and reading went on mid-packet. Here a
  packet's decoders read through a view of exactly its remaining length: reading
  past it, or leaving bytes unread, is a malformed packet and closes the connection.
- **Header**: reserved packet types 0 and 15, and packets only a server sends
  (CONNACK, SUBACK, UNSUBACK, PINGRESP), were handled or logged and skipped;
  fixed-header flags other than the standard's [MQTT-2.2.2-1/2] (SUBSCRIBE,
  UNSUBSCRIBE, PUBREL 0b0010 [MQTT-3.8.1-1] [MQTT-3.10.1-1] [MQTT-3.6.1-1], 0 for
  the rest) and PUBLISH QoS 3 [MQTT-3.3.1-4] were accepted. A second CONNECT
  [MQTT-3.1.0-2] closed the connection, but after reading its body and with an
  ERROR line. Here each closes the connection at the header.
- **SUBSCRIBE/UNSUBSCRIBE with no filter** [MQTT-3.8.3-3] [MQTT-3.10.3-2] got an
  empty SUBACK/UNSUBACK; a requested QoS above 2 [MQTT-3.8.3-4] was granted as 3.
- **CONNECT**: amqtt waited for it forever (a socket that never sends one held a
  connection slot for good); a first packet of another type [MQTT-3.1.0-1] was read
  as a CONNECT. Here the whole CONNECT must arrive within `connect_timeout_s`, be a
  CONNECT with flags 0, and, for MQTT 3.1.1, be well formed: UTF-8 strings
  [MQTT-1.5.3-1/2], reserved flag 0 [MQTT-3.1.2-3], will QoS and retain only with
  a will [MQTT-3.1.2-13/14/15], nothing after the last field.

Each case closes that connection with one log line naming the client (or peer) and
the clause, never a traceback; a closed client's will is sent, as for any abnormal
close [MQTT-3.1.2-8]. Limits are per broker (`install(hub, settings)`).

The reader loop replaces amqtt's `BrokerProtocolHandler._reader_loop` for the
exact amqtt version pinned in pyproject.toml, and costs what amqtt's did per
packet: the same decoders, and one task less (the timed read uses asyncio.timeout,
not amqtt's wait_for); the checks are a dict lookup and an integer comparison in the
header, one subtraction per field read.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from amqtt.adapters import BufferReader, StreamReaderAdapter
from amqtt.errors import MQTTError, NoDataError
from amqtt.events import MQTTEvents
from amqtt.mqtt import packet_class
from amqtt.mqtt.constants import QOS_2
from amqtt.mqtt.packet import (
    CONNACK,
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBACK,
    UNSUBSCRIBE,
    MQTTFixedHeader,
)
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

from broker import conformance
from broker.conformance import ProtocolViolation, UnsupportedProtocol, check_string
from broker.hub import BrokerHub, principal_of
from station.errors import ConfigError

log = logging.getLogger(__name__)

PATCHED_VERSION = "0.12.1"
KIB, MIB = 1024, 1024 * 1024

NAMES = {
    CONNECT: "CONNECT",
    CONNACK: "CONNACK",
    PUBLISH: "PUBLISH",
    PUBACK: "PUBACK",
    PUBREC: "PUBREC",
    PUBREL: "PUBREL",
    PUBCOMP: "PUBCOMP",
    SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK",
    UNSUBSCRIBE: "UNSUBSCRIBE",
    UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP",
    DISCONNECT: "DISCONNECT",
}
# The fixed-header flags each packet a client may send must carry [MQTT-2.2.2-1/2];
# PUBLISH's flags are DUP, QoS and RETAIN (checked on their own).
CLIENT_FLAGS = {
    PUBACK: 0,
    PUBREC: 0,
    PUBREL: 0b0010,  # [MQTT-3.6.1-1]
    PUBCOMP: 0,
    SUBSCRIBE: 0b0010,  # [MQTT-3.8.1-1]
    UNSUBSCRIBE: 0b0010,  # [MQTT-3.10.1-1]
    PINGREQ: 0,
    DISCONNECT: 0,
}
_CLIENT_ROLES = ("station", "monitor", "observer", "operator")


@dataclass(frozen=True)
class Limits:
    connect_timeout_s: float = 10.0
    max_packet_connect: int = 64 * KIB
    max_packet_device: int = 64 * KIB
    max_packet_client: int = MIB
    # Role value -> limit; a role not listed (a new one) gets max_packet_device.
    by_role: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        values = {
            name: getattr(settings, name)
            for name in (
                "connect_timeout_s",
                "max_packet_connect",
                "max_packet_device",
                "max_packet_client",
            )
        }
        for name, value in values.items():
            if value <= 0:
                raise ConfigError(f"broker.{name} must be positive, got {value!r}")
        client = values["max_packet_client"]
        return cls(
            **values,
            by_role={"device": values["max_packet_device"]} | dict.fromkeys(_CLIENT_ROLES, client),
        )

    def packet_limit(self, principal: Any) -> int:
        if principal is None:
            return self.max_packet_connect
        role = getattr(principal.role, "value", principal.role)
        return self.by_role.get(str(role), self.max_packet_device)


DEFAULT = Limits.from_settings(Limits())
_limits: weakref.WeakKeyDictionary[BrokerHub, Limits] = weakref.WeakKeyDictionary()
_installed = False


def limits_of(plugins_manager: Any) -> Limits:
    broker = getattr(getattr(plugins_manager, "context", None), "_broker_instance", None)
    hub = getattr(broker, "hub", None)
    found = _limits.get(hub) if hub is not None else None
    return found if found is not None else DEFAULT


class Refused(NoDataError):
    """A connection refused before its CONNECT was accepted, already logged and closed.
    A NoDataError, so amqtt takes its quiet path: it releases the connection slot
    and its own lines about it are the ones broker.server filters ("No data from")."""


class _Gone(Exception):
    """The peer closed or reset the connection in the middle of a packet."""


class _Packet:
    """What a packet's decoders may read: exactly its remaining length."""

    __slots__ = ("_read", "left")

    def __init__(self, read: Any, left: int) -> None:
        self._read = read
        self.left = left

    async def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.left:
            raise ProtocolViolation(
                f"malformed packet: a field of {n} byte(s) runs past its remaining length "
                f"({self.left} byte(s) left)"
            )
        try:
            data: bytes = await self._read(n)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise _Gone() from None
        self.left -= n
        return data


def _raw_read(reader: Any) -> Any:
    # StreamReaderAdapter.read(n) only wraps readexactly(n): call it directly.
    if isinstance(reader, StreamReaderAdapter):
        return reader._reader.readexactly
    return reader.read


async def _read_header(read: Any, limit: int, role: str) -> tuple[int, int, int] | None:
    """(packet type, flags, remaining length); None at a clean end of stream."""
    try:
        head = await read(2)  # every packet has at least 2 header bytes
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise _Gone() from None
    except ConnectionError:
        raise _Gone() from None
    first, byte = head[0], head[1]
    length, multiplier, count = byte & 0x7F, 128, 1
    while byte & 0x80:
        if count == 4:
            raise ProtocolViolation(
                "[MQTT-2.2.3] remaining length encoded in more than 4 bytes (malformed)"
            )
        try:
            byte = (await read(1))[0]
        except (asyncio.IncompleteReadError, ConnectionError):
            raise _Gone() from None
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        count += 1
    if length > limit:
        raise ProtocolViolation(
            f"{NAMES.get(first >> 4, 'packet')} of {length} bytes announced, over the "
            f"{limit}-byte limit for {role}"
        )
    return first >> 4, first & 0x0F, length


def _check_header(packet_type: int, flags: int) -> None:
    """Raises ProtocolViolation for a packet a client must not send as it is."""
    if packet_type == PUBLISH:
        if flags & 0x06 == 0x06:
            raise ProtocolViolation("[MQTT-3.3.1-4] PUBLISH with QoS 3")
        return
    expected = CLIENT_FLAGS.get(packet_type)
    if expected is None:
        if packet_type == CONNECT:
            raise ProtocolViolation("[MQTT-3.1.0-2] a second CONNECT on the connection")
        if packet_type in NAMES:
            raise ProtocolViolation(
                f"[MQTT-4.8.0-1] {NAMES[packet_type]} is a packet only a server sends"
            )
        raise ProtocolViolation(
            f"[MQTT-4.8.0-1] reserved packet type {packet_type} (forbidden, 2.2.1)"
        )
    if flags != expected:
        clause = {
            PUBREL: "[MQTT-3.6.1-1]",
            SUBSCRIBE: "[MQTT-3.8.1-1]",
            UNSUBSCRIBE: "[MQTT-3.10.1-1]",
        }.get(packet_type, "[MQTT-2.2.2-2]")
        raise ProtocolViolation(
            f"{clause} {NAMES[packet_type]} with fixed-header flags {flags:04b}, not {expected:04b}"
        )


def _check_packet(packet_type: int, packet: Any) -> None:
    """What the decoders let through that the standard forbids (rare packets only)."""
    if packet_type == SUBSCRIBE:
        topics = packet.payload.topics if packet.payload is not None else []
        if not topics:
            raise ProtocolViolation("[MQTT-3.8.3-3] SUBSCRIBE with no topic filter")
        for topic_filter, qos in topics:
            if qos > QOS_2:  # also any reserved bit set [MQTT-3.8.3-4]
                raise ProtocolViolation(f"[MQTT-3.8.3-4] SUBSCRIBE requesting QoS byte {qos}")
            if not topic_filter:
                raise ProtocolViolation("[MQTT-4.7.3-1] SUBSCRIBE to an empty topic filter")
    elif not (packet.payload is not None and packet.payload.topics):  # UNSUBSCRIBE
        raise ProtocolViolation("[MQTT-3.10.3-2] UNSUBSCRIBE with no topic filter")


def _describe(session: Any) -> str:
    principal = principal_of(session)
    role = getattr(getattr(principal, "role", None), "value", "?")
    return f"client {session.client_id!r} ({role}, {session.remote_address}:{session.remote_port})"


async def _reader_loop(self: BrokerProtocolHandler) -> None:
    """amqtt's reader loop, reading each packet through the checks above."""
    session = self.session
    reader = self.reader
    if session is None or reader is None or self._reader_ready is None:
        await _amqtt_reader_loop(self)
        return
    read = _raw_read(reader)
    principal = principal_of(session)
    limit = limits_of(self.plugins_manager).packet_limit(principal)
    role = f"role {getattr(principal.role, 'value', '?')}" if principal else "this client"
    keepalive: int | None = session.keep_alive if session.keep_alive > 0 else None
    fire_event = self.plugins_manager.fire_event
    handlers = {
        PUBLISH: self.handle_publish,
        PUBACK: self.handle_puback,
        PUBREC: self.handle_pubrec,
        PUBREL: self.handle_pubrel,
        PUBCOMP: self.handle_pubcomp,
        SUBSCRIBE: self.handle_subscribe,
        UNSUBSCRIBE: self.handle_unsubscribe,
        PINGREQ: self.handle_pingreq,
        DISCONNECT: self.handle_disconnect,
    }

    async def next_packet() -> tuple[int, Any] | None:
        header = await _read_header(read, limit, role)
        if header is None:
            return None
        packet_type, flags, length = header
        _check_header(packet_type, flags)
        body = _Packet(read, length)
        fixed = MQTTFixedHeader(packet_type, flags, length)
        packet = await packet_class(fixed).from_stream(body, fixed_header=fixed)
        if body.left:
            raise ProtocolViolation(
                f"malformed {NAMES[packet_type]}: remaining length {length}, "
                f"{body.left} byte(s) more than its contents"
            )
        if packet_type in (SUBSCRIBE, UNSUBSCRIBE):
            _check_packet(packet_type, packet)
        return packet_type, packet

    running: collections.deque[asyncio.Task[None]] = collections.deque()
    while True:
        try:
            self._reader_ready.set()
            while running and running[0].done():
                running.popleft()
            if keepalive is None:
                got = await next_packet()
            else:
                # asyncio.timeout, not amqtt's wait_for: no task per packet
                async with asyncio.timeout(keepalive):
                    got = await next_packet()
            if got is None:
                break
            packet_type, packet = got
            await fire_event(MQTTEvents.PACKET_RECEIVED, packet=packet, session=session)
            running.append(asyncio.create_task(handlers[packet_type](packet)))
        except ProtocolViolation as exc:
            log.warning("closing %s: %s", _describe(session), exc)
            break
        except asyncio.CancelledError:
            break
        except TimeoutError:
            self.handle_read_timeout()
        except (_Gone, NoDataError):
            break
        except Exception as exc:  # an amqtt decoder's own error: still one line
            log.warning(
                "closing %s: unreadable packet (%s: %s)",
                _describe(session),
                type(exc).__name__,
                exc,
            )
            break
    while running:
        running.popleft().cancel()
    await self.handle_connection_closed()
    self._reader_stopped.set()
    await self.stop()


# -- the CONNECT ----------------------------------------------------------------------


class _Fields:
    """A CONNECT body, read field by field for the checks amqtt does not make."""

    def __init__(self, body: bytes) -> None:
        self.body, self.pos = body, 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.body):
            raise ProtocolViolation(
                f"malformed CONNECT: remaining length {len(self.body)} ends inside {what}"
            )
        data, self.pos = self.body[self.pos : end], end
        return data

    def binary(self, what: str) -> bytes:
        n = int.from_bytes(self.take(2, what), "big")
        return self.take(n, what)


def check_connect(body: bytes) -> None:
    """The checks of an MQTT 3.1.1 CONNECT body that amqtt does not make (or makes
    after trusting its lengths). Other protocols are left to broker.conformance."""
    f = _Fields(body)
    name = f.binary("the protocol name")
    level = f.take(1, "the protocol level")[0]
    if (name, level) != (b"MQTT", 4):
        return
    flags = f.take(1, "the connect flags")[0]
    f.take(2, "the keep-alive")
    if flags & 0x01:
        raise ProtocolViolation("[MQTT-3.1.2-3] CONNECT reserved flag set")
    will, will_qos, will_retain = flags & 0x04, (flags >> 3) & 0x03, flags & 0x20
    if will_qos == 3:
        raise ProtocolViolation("[MQTT-3.1.2-14] will QoS 3")
    if not will and will_qos:
        raise ProtocolViolation("[MQTT-3.1.2-13] will QoS without a will")
    if not will and will_retain:
        raise ProtocolViolation("[MQTT-3.1.2-15] will retain without a will")
    check_string(f.binary("the client id"), "the client id")
    if will:
        check_string(f.binary("the will topic"), "the will topic")
        f.binary("the will message")
    if flags & 0x80:
        check_string(f.binary("the user name"), "the user name")
    if flags & 0x40:
        f.binary("the password")  # binary data, not a string (3.1.3.5)
    if f.pos != len(body):
        raise ProtocolViolation(
            f"malformed CONNECT: remaining length {len(body)}, "
            f"{len(body) - f.pos} byte(s) more than its contents"
        )


async def read_connect(reader: Any, limit: int) -> bytes:
    """The first packet, whole: header and body. Raises ProtocolViolation, _Gone, or
    NoDataError at a clean end of stream before any byte."""
    read = _raw_read(reader)
    header = await _read_header(read, limit, "a connection before its CONNECT")
    if header is None:
        raise NoDataError("no data before the CONNECT")
    packet_type, flags, length = header
    if packet_type != CONNECT:
        raise ProtocolViolation(
            f"[MQTT-3.1.0-1] first packet is {NAMES.get(packet_type, packet_type)}, not CONNECT"
        )
    if flags:
        raise ProtocolViolation(f"[MQTT-2.2.2-2] CONNECT with fixed-header flags {flags:04b}")
    try:
        body: bytes = await read(length) if length else b""
    except (asyncio.IncompleteReadError, ConnectionError):
        raise _Gone() from None
    check_connect(body)
    return MQTTFixedHeader(CONNECT, 0, length).to_bytes() + body


_amqtt_reader_loop = BrokerProtocolHandler._reader_loop
_init_from_connect: Any = None  # broker.conformance's, set by install()


async def _init_from_connect_limited(
    cls: type[BrokerProtocolHandler],
    reader: Any,
    writer: Any,
    plugins_manager: Any,
    loop: Any = None,
) -> Any:
    limits = limits_of(plugins_manager)
    peer = writer.get_peer_info()
    where = f"{peer[0]}:{peer[1]}" if peer else "an unknown peer"
    try:
        async with asyncio.timeout(limits.connect_timeout_s):
            raw = await read_connect(reader, limits.max_packet_connect)
        return await _init_from_connect(cls, BufferReader(raw), writer, plugins_manager, loop)
    except TimeoutError:
        log.info(
            "closing the connection from %s: no CONNECT within %g s [MQTT-3.1.0-1]",
            where,
            limits.connect_timeout_s,
        )
    except ProtocolViolation as exc:
        log.warning("closing the connection from %s before its CONNECT: %s", where, exc)
    except UnsupportedProtocol:
        pass  # answered, logged and closed by broker.conformance
    except MQTTError as exc:  # amqtt's own refusals (it may have sent a CONNACK)
        log.warning("refused the connection from %s: %s", where, exc)
    except (_Gone, NoDataError):
        pass  # closed before a whole CONNECT: a reachability check, or a lost link
    try:
        await writer.close()
    except Exception:  # already broken: closed either way
        log.debug("closing %s failed", where, exc_info=True)
    raise Refused(f"connection from {where} refused") from None


def install(hub: BrokerHub | None = None, settings: Any = None) -> None:
    """Patch amqtt once (after broker.conformance), and use `settings`' limits for
    the broker of `hub`. Refuses to guess on another amqtt version."""
    global _installed, _init_from_connect
    if hub is not None:
        _limits[hub] = Limits.from_settings(settings) if settings is not None else DEFAULT
    if _installed:
        return
    found = version("amqtt")
    if found != PATCHED_VERSION:
        raise RuntimeError(
            f"broker/limits.py patches amqtt {PATCHED_VERSION}, found {found}: "
            "check its reader loop and CONNECT handling before changing the pin"
        )
    conformance.install()
    _init_from_connect = BrokerProtocolHandler.init_from_connect.__func__
    BrokerProtocolHandler.init_from_connect = classmethod(_init_from_connect_limited)
    BrokerProtocolHandler._reader_loop = _reader_loop
    _installed = True


__all__ = ["Limits", "Refused", "check_connect", "install", "limits_of", "read_connect"]
