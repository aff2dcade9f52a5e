"""MQTT 3.1.1 conformance fixes in amqtt 0.12.1's packet decoding (issue 9).

Two places where amqtt's reader gets the standard wrong, both before a packet
reaches the broker (StationBroker fixes what happens after):

- **A wildcard in a PUBLISH topic** [MQTT-3.3.2-2]: amqtt raises MQTTError while
  decoding the topic, its reader loop logs "Message discarded" and reads on, with
  the packet id and payload still in the stream: the next bytes are read as a new
  packet (a payload can read as a PUBREL). The standard says to close the
  connection; `ProtocolViolation` is not an MQTTError, so amqtt's reader ends the
  connection on it (an abnormal close: the will is sent [MQTT-3.1.2-8]).
- **Ill-formed UTF-8 and U+0000 in a string** [MQTT-1.5.3-1], [MQTT-1.5.3-2]: amqtt's
  `decode_string` turns undecodable bytes into the text of their repr (`"b'\\xff'"`),
  so a topic that is not UTF-8 was routed under that name (and a filter
  subscribed); U+0000 passed as it is. The standard says to close the connection.
  Topic names, topic filters (SUBSCRIBE, UNSUBSCRIBE) are decoded with
  `decode_mqtt_string`, which raises `ProtocolViolation`; the CONNECT's strings are
  checked by broker/limits.py, which reads the CONNECT first.
- **An unsupported protocol** [MQTT-3.1.2-2]: a 3.1.1 server answers CONNACK 0x01
  (unacceptable protocol version) and closes. amqtt decodes an MQTT 5 CONNECT as if
  it were 3.1.1, so its properties are read as the client id's length and it waits
  for bytes that never come (no CONNACK, the socket held open); MQTT 3.1
  (`MQIsdp`) is closed without a CONNACK. We stop after the variable header,
  answer 0x01 to MQTT 5 and 3.1 (both define that code) and close; any other
  protocol name is closed without an answer, as 3.1.2-1 allows.

- **Unacknowledged QoS 1 messages are lost when a connection ends** [MQTT-4.4.0-1]:
  amqtt drops a message from the session's in-flight store as soon as its wait for
  the PUBACK ends, also when it ends because the connection closed, so a persistent
  session that resumes gets nothing back (its `_retry_deliveries` finds the store
  empty); QoS 2 messages were dropped at PUBREC too, so a PUBREL was never resent.
  The broker's outgoing QoS 1 and 2 flows keep the message when the wait was
  cancelled and the session is persistent; amqtt then resends it at the next
  CONNECT (the PUBLISH with DUP 1, or the PUBREL).
- **A message sent twice on resume**: amqtt marks a resuming session connected
  before its handler resends the in-flight store, and the routing loop may deliver
  a new message to it in that gap; the resend then found that message, already
  sent once, in the store and sent it again (DUP 1, a second PUBACK expected). The
  resend skips a message whose flow already runs on this connection.

The patches replace functions of the exact amqtt version pinned in pyproject.toml
(like broker/keepalive.py) and cost nothing per message: the wildcard test is the
one amqtt already made, moved ahead of its exception.
"""

from __future__ import annotations

import asyncio
import logging
from importlib.metadata import version
from struct import unpack
from typing import Any

from amqtt.codecs_amqtt import decode_packet_id, read_or_raise
from amqtt.errors import MQTTError, ProtocolHandlerError
from amqtt.mqtt import subscribe, unsubscribe
from amqtt.mqtt.connack import UNACCEPTABLE_PROTOCOL_VERSION, ConnackPacket
from amqtt.mqtt.connect import ConnectPayload, ConnectVariableHeader
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.protocol.handler import ProtocolHandler
from amqtt.mqtt.publish import PublishVariableHeader
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import OUTGOING, OutgoingApplicationMessage

log = logging.getLogger(__name__)

PATCHED_VERSION = "0.12.1"
SUPPORTED = ("MQTT", 4)
# Protocols whose clients understand a 3.1.1-shaped CONNACK 0x01 (MQTT 5 3.1.2.2
# says a client may get one from a server that does not speak 5).
ANSWERED_NAMES = ("MQTT", "MQIsdp")
_installed = False


class ProtocolViolation(Exception):
    """A packet the standard says ends the connection. Deliberately not an
    MQTTError: amqtt's reader loop discards those and reads on."""


class UnsupportedProtocol(MQTTError):
    """A CONNECT of another protocol version; `answer`: send CONNACK 0x01 first."""

    def __init__(self, name: str, level: int) -> None:
        super().__init__(f"[MQTT-3.1.2-2] unsupported protocol {name!r} level {level}")
        self.answer = name in ANSWERED_NAMES


def check_string(raw: bytes, what: str) -> str:
    """An MQTT UTF-8 string's bytes as text, or ProtocolViolation [MQTT-1.5.3-1/2]."""
    try:
        text = raw.decode("utf-8")  # also refuses encoded surrogates U+D800-U+DFFF
    except UnicodeDecodeError:
        raise ProtocolViolation(
            f"[MQTT-1.5.3-1] ill-formed UTF-8 in {what}: {raw[:40]!r}"
        ) from None
    if "\x00" in text:
        raise ProtocolViolation(f"[MQTT-1.5.3-2] U+0000 in {what}: {raw[:40]!r}")
    return text


async def decode_mqtt_string(reader: Any) -> str:
    """amqtt's `decode_string`, but ill-formed UTF-8 or U+0000 ends the connection."""
    (length,) = unpack("!H", await read_or_raise(reader, 2))
    if not length:
        return ""
    return check_string(await read_or_raise(reader, length), "a topic name or filter")


async def _publish_header_from_stream(
    cls: type[PublishVariableHeader], reader: Any, fixed_header: Any
) -> PublishVariableHeader:
    topic_name = await decode_mqtt_string(reader)
    if "#" in topic_name or "+" in topic_name:
        raise ProtocolViolation(f"[MQTT-3.3.2-2] wildcard in PUBLISH topic {topic_name!r}")
    packet_id = await decode_packet_id(reader) if (fixed_header.flags >> 1) & 0x03 else None
    return cls(topic_name, packet_id)


_connect_payload_from_stream = ConnectPayload.from_stream.__func__
_init_from_connect = BrokerProtocolHandler.init_from_connect.__func__


async def _connect_payload(
    cls: type[ConnectPayload],
    reader: Any,
    fixed_header: Any,
    variable_header: ConnectVariableHeader | None,
) -> ConnectPayload:
    if variable_header is not None:
        found = (variable_header.proto_name, variable_header.proto_level)
        if found != SUPPORTED:
            # The rest is another protocol's payload: do not read it as 3.1.1.
            raise UnsupportedProtocol(*found)
    payload: ConnectPayload = await _connect_payload_from_stream(
        cls, reader, fixed_header, variable_header
    )
    return payload


async def _init_from_connect_answering(
    cls: type[BrokerProtocolHandler],
    reader: Any,
    writer: Any,
    plugins_manager: Any,
    loop: Any = None,
) -> Any:
    try:
        handler, session = await _init_from_connect(cls, reader, writer, plugins_manager, loop)
        # The session as this CONNECT asked for it, before amqtt swaps in a stored one
        # (StationBroker._initialize_client_session may need it back).
        handler.station_incoming = session
        return handler, session
    except UnsupportedProtocol as exc:
        log.info("refused a connection from %s: %s", writer.get_peer_info(), exc)
        if exc.answer:
            # Session present 0 [MQTT-3.2.2-4], return code 0x01.
            await ConnackPacket.build(0, UNACCEPTABLE_PROTOCOL_VERSION).to_stream(writer)
        await writer.close()
        raise


_qos1_flow = ProtocolHandler._handle_qos1_message_flow


async def _qos1_flow_keeping_unacked(self: BrokerProtocolHandler, app_message: Any) -> None:
    """amqtt's outgoing QoS 1 flow, except that a message whose PUBACK wait was
    cancelled (the connection ended) stays in a persistent session's in-flight
    store [MQTT-4.4.0-1]. Incoming messages take amqtt's path unchanged."""
    session = self.session
    if app_message.direction != OUTGOING or session is None:
        await _qos1_flow(self, app_message)
        return
    packet_id = app_message.packet_id
    if app_message.qos != QOS_1 or packet_id is None or app_message.puback_packet:
        raise MQTTError(f"QoS 1 flow for a message it does not fit: {app_message!r}")
    if packet_id not in session.inflight_out and isinstance(
        app_message, OutgoingApplicationMessage
    ):
        session.inflight_out[packet_id] = app_message
    live = _live(self)
    live.add(packet_id)
    keep = False
    try:
        # A message that already went out once is a retry: DUP 1 [MQTT-3.3.1-1].
        publish = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        await self._send_packet(publish)
        app_message.publish_packet = publish
        app_message.puback_packet = await _await_ack(
            self, self._puback_waiters, packet_id, "PUBACK"
        )
    except (asyncio.CancelledError, ProtocolHandlerError):
        # The connection ended (amqtt turns a cancelled send into ProtocolHandlerError).
        keep = not session.clean_session
        raise
    finally:
        live.discard(packet_id)
        if not keep:
            session.inflight_out.pop(packet_id, None)


_qos2_flow = ProtocolHandler._handle_qos2_message_flow


def _live(handler: Any) -> set[int]:
    """Packet ids of the outgoing flows running on this connection (amqtt's message
    objects have __slots__, so the mark lives on the handler)."""
    live: set[int] | None = getattr(handler, "_station_live", None)
    if live is None:
        live = handler._station_live = set()
    return live


async def _await_ack(
    self: BrokerProtocolHandler, waiters: dict[int, Any], packet_id: int, name: str
) -> Any:
    """Wait up to 5 s (as amqtt) for an acknowledgement of an outgoing message."""
    waiter: asyncio.Future[Any] = asyncio.Future()
    waiters[packet_id] = waiter
    try:
        return await asyncio.wait_for(waiter, timeout=5)
    except TimeoutError:
        msg = f"Timeout waiting for {name} for packet ID {packet_id}"
        log.warning(msg)
        raise TimeoutError(msg) from None
    finally:
        waiters.pop(packet_id, None)


async def _qos2_flow_keeping_unacked(self: BrokerProtocolHandler, app_message: Any) -> None:
    """amqtt's outgoing QoS 2 flow, but the message stays in the in-flight store
    until PUBCOMP (amqtt dropped it at PUBREC, and at any end of the connection), so a
    resumed persistent session gets the PUBLISH again (DUP 1) if no PUBREC came, or
    the PUBREL if no PUBCOMP came [MQTT-4.4.0-1]."""
    session = self.session
    if app_message.direction != OUTGOING or session is None:
        await _qos2_flow(self, app_message)
        return
    packet_id = app_message.packet_id
    if app_message.qos != QOS_2 or packet_id is None or app_message.pubcomp_packet:
        raise MQTTError(f"QoS 2 flow for a message it does not fit: {app_message!r}")
    if packet_id not in session.inflight_out and isinstance(
        app_message, OutgoingApplicationMessage
    ):
        session.inflight_out[packet_id] = app_message
    live = _live(self)
    live.add(packet_id)
    keep = False
    try:
        if not app_message.pubrel_packet:
            publish = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
            await self._send_packet(publish)
            app_message.publish_packet = publish
            app_message.pubrec_packet = await _await_ack(
                self, self._pubrec_waiters, packet_id, "PUBREC"
            )
        app_message.pubrel_packet = PubrelPacket.build(packet_id)
        await self._send_packet(app_message.pubrel_packet)
        app_message.pubcomp_packet = await _await_ack(
            self, self._pubcomp_waiters, packet_id, "PUBCOMP"
        )
    except (asyncio.CancelledError, ProtocolHandlerError):
        # The connection ended (amqtt turns a cancelled send into ProtocolHandlerError).
        keep = not session.clean_session
        raise
    finally:
        live.discard(packet_id)
        if not keep:
            session.inflight_out.pop(packet_id, None)


async def _retry_deliveries_once(self: ProtocolHandler) -> None:
    """amqtt's resend of the in-flight stores at CONNECT [MQTT-4.4.0-1], without the
    messages this connection is already delivering (see the module's docstring)."""
    session = self.session
    if session is None:
        raise MQTTError("Session is not initialized.")
    live = _live(self)
    waiting = [
        *session.inflight_in.values(),
        *(m for i, m in session.inflight_out.items() if i not in live),
    ]
    tasks = [
        asyncio.create_task(asyncio.wait_for(self._handle_message_flow(m), 10)) for m in waiting
    ]
    if tasks:
        await asyncio.wait(tasks)


def install() -> None:
    """Patch amqtt's decoders once; refuse to guess on another amqtt version."""
    global _installed
    if _installed:
        return
    found = version("amqtt")
    if found != PATCHED_VERSION:
        raise RuntimeError(
            f"broker/conformance.py patches amqtt {PATCHED_VERSION}, found {found}: "
            "check its PUBLISH and CONNECT decoding before changing the pin"
        )
    PublishVariableHeader.from_stream = classmethod(_publish_header_from_stream)
    # The SUBSCRIBE and UNSUBSCRIBE payloads read their filters through these names.
    subscribe.decode_string = decode_mqtt_string
    unsubscribe.decode_string = decode_mqtt_string
    ConnectPayload.from_stream = classmethod(_connect_payload)
    BrokerProtocolHandler.init_from_connect = classmethod(_init_from_connect_answering)
    BrokerProtocolHandler._handle_qos1_message_flow = _qos1_flow_keeping_unacked
    BrokerProtocolHandler._handle_qos2_message_flow = _qos2_flow_keeping_unacked
    BrokerProtocolHandler._retry_deliveries = _retry_deliveries_once
    _installed = True


__all__ = [
    "ProtocolViolation",
    "UnsupportedProtocol",
    "check_string",
    "decode_mqtt_string",
    "install",
]
