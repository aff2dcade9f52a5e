"""amqtt's Broker with the station's ACL, tracking and routing on its hot path.

Measured on 2 cores with 1000 devices × 1 msg/s (docs/PERFORMANCE.md), stock amqtt
plus plugins could not keep up: every message spawned asyncio tasks for each topic
plugin call and event, and routing compared the topic against every subscription
filter (1000 devices subscribed to their own `cmd` = 1000 comparisons per message).
This subclass keeps amqtt's behaviour but:

- checks the ACL synchronously (`_topic_filtering`), with no task per check;
- sees every routed message, wills included, in `_broadcast_message`, which is
  where the registry ingest is fed (amqtt raises no event for a will);
- routes through an index: exact filters by dict lookup, only wildcard filters
  are matched one by one;
- sends retained messages only for the session's own subscriptions and only where
  the ACL lets it receive them. amqtt 0.12.1 replays, on every connect, the retained
  messages matching *any* client's filters to the new client, unchecked: a device
  connecting after the station subscribed to `#` would get every other device's
  retained info and status (and a connect storm of N devices costs O(N³) matches).

It also fixes where amqtt 0.12.1 breaks MQTT 3.1.1 (issue 9; broker/conformance.py
has the fixes in packet decoding):

- delivered QoS = min(published QoS, granted QoS) [MQTT-3.8.4-6], live and on
  retained replay (amqtt delivered at the granted QoS, and replayed a retained
  QoS 0 message at the granted QoS because `0 or qos` is `qos`);
- a SUBSCRIBE to a filter the session already has replaces its QoS [MQTT-3.8.4-3];
- a PUBLISH to a `$` topic is dropped and the connection kept (`$` topics are the
  broker's; amqtt left the client's message loop instead, so its DISCONNECT was never
  handled and its next CONNECT waited for the take-over timeout, MQTT-3.1.4-2);
- a clean session ends with its connection [MQTT-3.1.2-6], so a later
  clean_session=0 CONNECT gets session present 0 [MQTT-3.2.2-2];
- messages queued for an offline persistent session come back with retain 0
  [MQTT-3.3.1-9] (amqtt marked them retained).

Load (issue 9 part 6; docs/PERFORMANCE.md "Broker flood", tests/broker/test_backpressure.py).
amqtt queued without bounds at every stage, so four flooding publishers made it
accept ~10x what it delivered, its memory grew with the backlog, and a shutdown
under load did not finish in time. Here:

- **Bounded backlog, TCP backpressure.** The broadcast queue holds at most
  `BROADCAST_QUEUE` messages; a publisher whose parsed-but-unrouted messages pass
  `INCOMING_HIGH` has its socket's reading paused until they are below
  `INCOMING_LOW`, so a flooding client waits in its own TCP window, not in our memory.
- **Slow subscribers.** QoS 0 goes straight into the subscriber's socket buffer; once
  `OUT_BUFFER_LIMIT` bytes are waiting there, QoS 0 messages for it are dropped (one
  log line per episode, as Mosquitto drops for a slow client). A subscriber with
  `MAX_INFLIGHT_OUT` unacknowledged QoS 1/2 deliveries is closed (one log line); an
  offline persistent session keeps at most `MAX_QUEUED` messages (Mosquitto's default).
- **Clean shutdown under load.** Routing stops first, then connections close; a
  socket that cannot drain (its peer does not read) is aborted instead of awaited.
- **Hot path.** QoS 0 deliveries are encoded once per message and written without a
  task, a lock or a packet object; the broadcast loop and each client's message loop
  take what is queued in batches instead of a task and an `asyncio.wait` per message.

It overrides private methods of amqtt 0.12.1, which pyproject.toml pins exactly;
tests/broker cover the behaviour these overrides must keep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import deque
from typing import Any

from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action
from amqtt.errors import ProtocolHandlerError
from amqtt.events import BrokerEvents
from amqtt.mqtt.constants import QOS_0, QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

from broker.access import AccessControl
from broker.hub import BrokerHub, principal_of
from station.control import CONTROL_PREFIX

log = logging.getLogger(__name__)

# Messages routed but not yet delivered (the broadcast queue): a publisher's message
# loop waits for room, which pauses its socket (below).
BROADCAST_QUEUE = 1024
# A client's messages read but not yet routed: above HIGH its socket stops being read
# until they are below LOW (TCP backpressure on a flooding publisher).
INCOMING_HIGH = 256
INCOMING_LOW = 64
# What the client message loop routes before it looks at SUBSCRIBE/UNSUBSCRIBE/DISCONNECT.
DELIVERY_BATCH = 64
# A SUBSCRIBE waits at most this long for the messages queued before it to be routed.
SUBSCRIBE_ROUTE_WAIT_S = 2.0
# Bytes waiting in a subscriber's socket buffer past which its QoS 0 messages are dropped.
OUT_BUFFER_LIMIT = 1024 * 1024
# Unacknowledged QoS 1/2 deliveries to one subscriber: at this many, routing waits for
# it; if it acknowledges nothing for OUT_STALL_S, it is closed.
MAX_INFLIGHT_OUT = 1000
OUT_STALL_S = 5.0
# Messages kept for an offline persistent session (Mosquitto's max_queued_messages).
MAX_QUEUED = 1000
# How long a closing connection may take to send what it has buffered before its socket
# is aborted (0 during the broker's shutdown).
DRAIN_ON_CLOSE_S = 1.0
# Cancellations sent to a connection's reader, 50 ms apart, before giving up on it.
END_READER_TRIES = 100
# Routed messages between two yields of the broadcast loop to the event loop.
ROUTE_BATCH = 64


class BackpressureQueue(asyncio.Queue[Any]):
    """A client's messages read but not yet routed (amqtt's unbounded
    `delivered_message_queue`). Past INCOMING_HIGH its socket stops being read until
    fewer than INCOMING_LOW are left: a flooding publisher waits in its own TCP window,
    and what it costs here is bounded by what its socket had buffered."""

    def __init__(self, handler: Any) -> None:
        super().__init__()
        self.handler = handler
        self.paused = False

    def put_nowait(self, item: Any) -> None:
        super().put_nowait(item)
        if not self.paused and self.qsize() > INCOMING_HIGH:
            self.paused = _pause_reading(self.handler)

    def get_nowait(self) -> Any:
        item = super().get_nowait()
        if self.paused and self.qsize() < INCOMING_LOW:
            self.paused = False
            transport = _transport(self.handler)
            if transport is not None and not transport.is_closing():
                transport.resume_reading()
        return item


def _pause_reading(handler: Any) -> bool:
    transport = _transport(handler)
    if transport is None or transport.is_closing():
        return False
    transport.pause_reading()
    # asyncio's StreamReader resumes a transport it paused itself once its buffer is
    # read: tell it this pause is not its own, or it would undo ours.
    stream = getattr(handler.reader, "_reader", None)
    if stream is not None and getattr(stream, "_paused", False):
        stream._paused = False
    return True


def _transport(handler: Any) -> Any:
    """The asyncio transport under an amqtt TCP handler, or None (websockets, detached)."""
    writer = getattr(getattr(handler, "writer", None), "_writer", None)
    return getattr(writer, "transport", None)


def _length(n: int) -> bytes:
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_publish_qos0(topic: str, data: bytes | bytearray) -> bytes:
    """A QoS 0 PUBLISH with DUP 0 and RETAIN 0 (MQTT 3.1.1 section 3.3)."""
    raw = topic.encode("utf-8")
    body_len = 2 + len(raw) + len(data)
    return b"".join((b"\x30", _length(body_len), struct.pack("!H", len(raw)), raw, data))


class SubscriptionIndex(dict):
    """amqtt's `{filter: [(session, qos), ...]}` that also knows its wildcard filters."""

    def __init__(self) -> None:
        super().__init__()
        self.wildcards: list[str] = []

    def _reindex(self) -> None:
        self.wildcards = [f for f in self if "+" in f or "#" in f]

    def __setitem__(self, key: str, value: Any) -> None:
        new = key not in self
        super().__setitem__(key, value)
        if new and ("+" in key or "#" in key):
            self.wildcards.append(key)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        if "+" in key or "#" in key:
            self._reindex()

    def pop(self, key: str, *default: Any) -> Any:
        value = super().pop(key, *default)
        self._reindex()
        return value

    def clear(self) -> None:
        super().clear()
        self.wildcards = []


class StationBroker(Broker):
    def __init__(
        self, config: dict[str, Any], hub: BrokerHub, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(config, loop=loop)
        self.hub = hub
        self.refused_full = 0  # connections closed at once: max_connections reached
        self._subscriptions = SubscriptionIndex()
        # Messages to route, and subscribers' marks (_handle_subscription).
        self._broadcast_queue: asyncio.Queue[dict[str, Any] | asyncio.Future[None]] = asyncio.Queue(
            BROADCAST_QUEUE
        )
        # QoS 1/2 deliveries in flight (amqtt kept them in a deque it only trimmed
        # from the front, so one slow subscriber kept every later one alive).
        self._deliveries: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.dropped = 0  # QoS 0 messages dropped for slow subscribers
        self.queue_dropped = 0  # messages not queued for a full offline session

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        return self.allowed(session, topic, action)

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        """amqtt's checks, but a second SUBSCRIBE to a filter replaces the first
        [MQTT-3.8.4-3] (amqtt kept the old QoS and answered the new one)."""
        topic_filter, qos = subscription
        levels = topic_filter.split("/")
        if any(
            "#" in level and (level != "#" or i != len(levels) - 1)
            for i, level in enumerate(levels)
        ):
            return 0x80  # [MQTT-4.7.1-2]
        if any("+" in level and level != "+" for level in levels):
            return 0x80  # [MQTT-4.7.1-3]
        if not self.allowed(session, topic_filter, Action.SUBSCRIBE):
            return 0x80
        max_qos = self.config.get("max-qos", qos)
        if isinstance(max_qos, int):
            qos = min(qos, max_qos)
        holders = self._subscriptions.get(topic_filter)
        if holders is None:
            self._subscriptions[topic_filter] = [(session, qos)]
            return qos
        for i, (held, _) in enumerate(holders):
            if held.client_id == session.client_id:
                holders[i] = (session, qos)
                return qos
        holders.append((session, qos))
        return qos

    async def _handle_message_delivery(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        wait_deliver: asyncio.Future[Any],
    ) -> bool:
        return await self._deliver(client_session, handler, wait_deliver.result())

    async def _deliver(
        self, client_session: Session, handler: BrokerProtocolHandler, app_message: Any
    ) -> bool:
        """amqtt's `_handle_message_delivery`, but the published QoS travels with the
        message (MQTT-3.8.4-6), a `$` topic is dropped with the connection kept, and a
        topic the standard forbids closes the connection the way amqtt closes any
        other: through the handler, so the message loop handles the end (will,
        disconnect event)."""
        await self.plugins_manager.fire_event(
            BrokerEvents.MESSAGE_RECEIVED, client_id=client_session.client_id, message=app_message
        )
        if app_message is None:
            return True
        self.hub.stats.received += 1
        topic = app_message.topic
        if not topic or "#" in topic or "+" in topic:
            # [MQTT-4.7.3-1], [MQTT-3.3.2-2] (wildcards are caught while decoding too)
            log.warning("client %s published to %r: closing", client_session.client_id, topic)
            await handler.handle_connection_closed()
            return True
        if topic[0] == "$":
            log.info("client %s published to %s: dropped", client_session.client_id, topic)
            return True
        if not self.allowed(client_session, topic, Action.PUBLISH):
            return True
        await self.plugins_manager.fire_event(
            BrokerEvents.MESSAGE_BROADCAST, client_id=client_session.client_id, message=app_message
        )
        await self._broadcast_message(client_session, topic, app_message.data, app_message.qos)
        packet = app_message.publish_packet
        if packet is not None and packet.retain_flag:
            await self.retain_message(client_session, topic, app_message.data, app_message.qos)
        return True

    async def _client_connected(self, listener_name: str, reader: Any, writer: Any) -> None:
        """amqtt's, but a connection past `max_connections` is closed at once, as
        Mosquitto does ("max_connections exceeded"), instead of waiting unread for a
        free slot (its client only sees a CONNECT that is never answered)."""
        server = self._servers.get(listener_name)
        semaphore = getattr(server, "semaphore", None)
        if semaphore is not None and semaphore.locked():
            self.refused_full += 1
            if self.refused_full == 1 or self.refused_full % 1000 == 0:
                log.warning(
                    "connection from %s refused: %d connections, max_connections reached "
                    "(%d refused so far)",
                    writer.get_peer_info(),
                    server.max_connections,
                    self.refused_full,
                )
            await writer.close()
            return
        try:
            await super()._client_connected(listener_name, reader, writer)
        except asyncio.CancelledError:
            # The broker is stopping. Python 3.11's StreamReaderProtocol calls
            # task.exception() on this connection's task when it ends, which raises
            # for a cancelled task and logs a traceback per open connection (3.12
            # checks task.cancelled() first): end the task normally instead.
            with contextlib.suppress(Exception):
                await writer.close()

    async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> Any:
        """amqtt's, then the session's incoming queue becomes a BackpressureQueue.

        A clean_session=0 CONNECT that arrives while a clean session of the same client
        id is still ending (its DISCONNECT read, its end not handled yet) got that session
        from amqtt: session present 1, and the session still marked clean, so the end of
        its own connection deleted it. A clean session lasts as long as its connection
        [MQTT-3.1.2-6]: this CONNECT starts a new persistent session [MQTT-3.2.2-2]."""
        handler, session = await super()._initialize_client_session(*args, **kwargs)
        fresh = getattr(handler, "station_incoming", None)
        if session.parent == 1 and session.clean_session and fresh is not None:
            # (amqtt reuses a stored session only for a clean_session=0 CONNECT.)
            client_id = session.client_id or ""
            held, old_handler = self._sessions.get(client_id, (None, None))
            if held is session:
                if session.transitions.is_connected() and old_handler is not None:
                    # Its connection is still open: this CONNECT takes over [MQTT-3.1.4-2].
                    await old_handler.handle_connection_closed()
                    await old_handler.stop()
                await self._delete_session(client_id)
            fresh.parent = 0
            session = fresh
        queue = session.delivered_message_queue
        if not isinstance(queue, BackpressureQueue):
            bounded = BackpressureQueue(handler)
            while not queue.empty():
                bounded.put_nowait(queue.get_nowait())
            session.delivered_message_queue = bounded
        else:
            queue.handler = handler  # a persistent session on a new connection
        return handler, session

    async def _client_message_loop(
        self, client_session: Session, handler: BrokerProtocolHandler
    ) -> None:
        """amqtt's loop, but messages already queued are routed in batches of up to
        DELIVERY_BATCH (amqtt made a waiter and an `asyncio.wait` for each one)."""
        disconnect_waiter = asyncio.ensure_future(handler.wait_disconnect())
        subscribe_waiter = asyncio.ensure_future(handler.get_next_pending_subscription())
        unsubscribe_waiter = asyncio.ensure_future(handler.get_next_pending_unsubscription())
        wait_deliver = asyncio.ensure_future(handler.mqtt_deliver_next_message())
        connected = True
        while connected:
            try:
                done, _ = await asyncio.wait(
                    [disconnect_waiter, subscribe_waiter, unsubscribe_waiter, wait_deliver],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if disconnect_waiter in done:
                    await self._handle_disconnect(client_session, handler, disconnect_waiter)
                    connected = False
                if subscribe_waiter in done:
                    await self._handle_subscription(client_session, handler, subscribe_waiter)
                    subscribe_waiter = asyncio.ensure_future(
                        handler.get_next_pending_subscription()
                    )
                if unsubscribe_waiter in done:
                    await self._handle_unsubscription(client_session, handler, unsubscribe_waiter)
                    unsubscribe_waiter = asyncio.ensure_future(
                        handler.get_next_pending_unsubscription()
                    )
                if wait_deliver in done:
                    if not await self._handle_message_delivery(
                        client_session, handler, wait_deliver
                    ):
                        break
                    queue = client_session.delivered_message_queue
                    for _ in range(DELIVERY_BATCH):
                        if queue.empty() or disconnect_waiter.done():
                            break
                        await self._deliver(client_session, handler, queue.get_nowait())
                    wait_deliver = asyncio.ensure_future(handler.mqtt_deliver_next_message())
            except asyncio.CancelledError:
                break
        waiters = [disconnect_waiter, subscribe_waiter, unsubscribe_waiter, wait_deliver]
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any],
    ) -> None:
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)
        # [MQTT-3.1.2-6] a clean session lasts as long as its connection. amqtt kept it
        # (and its subscriptions) until the client id connected again, so a
        # clean_session=0 CONNECT after it got session present 1 [MQTT-3.2.2-2].
        client_id = client_session.client_id
        entry = self._sessions.get(client_id or "")
        if client_session.clean_session and entry is not None and entry[0] is client_session:
            await self._delete_session(client_id or "")

    @staticmethod
    def allowed(session: Session | None, topic: str | None, action: Action) -> bool:
        principal = principal_of(session)
        if principal is None or not topic:
            return False
        if action == Action.PUBLISH:
            return AccessControl.may_publish(principal, topic)
        if action == Action.SUBSCRIBE:
            return AccessControl.may_subscribe(principal, topic)
        return AccessControl.may_receive(principal, topic)

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        # Every message amqtt routes passes here after its ACL check: client publishes,
        # wills and the station's own publishes.
        if topic:
            if topic.startswith(CONTROL_PREFIX):
                # Another station process (the CLI) on this broker: never routed.
                await self.hub.control(session, topic, bytes(data or b""))
                return
            self.hub.message(topic, data)
        await super()._broadcast_message(session, topic, data, force_qos)

    async def _publish_session_retained_messages(self, session: Session) -> None:
        """Messages queued while a persistent session was offline, as amqtt sends them
        but with retain 0: they match an established subscription [MQTT-3.3.1-9]
        (amqtt sent them as retained). Since delivery takes min(published, granted)
        QoS, only QoS 1/2 messages are queued [MQTT-3.1.2.4 lets QoS 0 go]."""
        handler = self._get_handler(session)
        if handler is None:
            return
        queued = session.retained_messages
        tasks = []
        while not queued.empty():
            m = queued.get_nowait()
            tasks.append(
                asyncio.ensure_future(handler.mqtt_publish(m.topic, m.data, m.qos, retain=False))
            )
        self.hub.stats.sent += len(tasks)
        if tasks:
            await asyncio.wait(tasks)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Session
    ) -> None:
        topic_filter, qos = subscription
        holders = self._subscriptions.get(topic_filter, ())
        if not any(s.client_id == session.client_id for s, _ in holders):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        if "+" in topic_filter or "#" in topic_filter:
            candidates = [
                r for t, r in self._retained_messages.items() if self._matches(t, topic_filter)
            ]
        else:
            found = self._retained_messages.get(topic_filter)
            candidates = [found] if found is not None else []
        tasks = [
            asyncio.ensure_future(
                # [MQTT-3.8.4-6] (amqtt's `r.qos or qos` replayed QoS 0 at the granted QoS)
                handler.mqtt_publish(
                    r.topic, r.data, qos if r.qos is None else min(qos, r.qos), retain=True
                )
            )
            for r in candidates
            # A cleared topic (MQTT-3.3.1-10) stays in amqtt's store with no data.
            if r.data and self.allowed(session, r.topic, Action.RECEIVE)
        ]
        self.hub.stats.sent += len(tasks)
        if tasks:
            await asyncio.wait(tasks)

    async def _broadcast_loop(self) -> None:
        """amqtt's loop routed each message in a task of its own and waited on it and on
        the shutdown future with `asyncio.wait`; this takes what is queued in turn and
        only waits (one getter task) when the queue is empty."""
        queue = self._broadcast_queue
        stop = self._broadcast_shutdown_waiter
        getter: asyncio.Future[Any] | None = None
        routed = 0
        try:
            while not stop.done():
                if queue.empty():
                    routed = 0
                    getter = asyncio.ensure_future(queue.get())
                    await asyncio.wait((getter, stop), return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        break
                    broadcast = getter.result()
                    getter = None
                else:
                    broadcast = queue.get_nowait()
                if isinstance(broadcast, asyncio.Future):  # a subscriber's mark: see below
                    if not broadcast.done():
                        broadcast.set_result(None)
                    continue
                await self._route(broadcast)
                routed += 1
                if routed >= ROUTE_BATCH:
                    routed = 0
                    await asyncio.sleep(0)  # let the readers and writers run
        finally:
            if getter is not None:
                getter.cancel()
            await self._cancel_deliveries()

    async def _cancel_deliveries(self) -> None:
        pending = [t for t in self._deliveries if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        self._deliveries.clear()

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[Any]]) -> None:
        """amqtt's single step (kept for anything that calls it): route one message."""
        broadcast = await self._broadcast_queue.get()
        if isinstance(broadcast, asyncio.Future):
            if not broadcast.done():
                broadcast.set_result(None)
            return
        await self._route(broadcast)

    async def _handle_subscription(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        subscribe_waiter: asyncio.Future[Any],
    ) -> None:
        """amqtt's, after every message queued for routing before this SUBSCRIBE has
        been routed. Routing runs behind the publishers' PUBACKs, so a message a client
        published (and had acknowledged) just before it subscribed could otherwise be
        routed after the subscription exists: delivered live and again as the retained
        replay. Mosquitto routes before it acknowledges; a mark through the routing
        queue gives the same order here."""
        mark: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._broadcast_queue.put_nowait(mark)
        except asyncio.QueueFull:
            mark.set_result(None)  # a full queue: subscribe now rather than wait on it
        try:
            await asyncio.wait_for(asyncio.shield(mark), SUBSCRIBE_ROUTE_WAIT_S)
        except TimeoutError:
            log.debug("subscribe of %s went ahead of the routing backlog", client_session.client_id)
        await super()._handle_subscription(client_session, handler, subscribe_waiter)

    async def _route(self, broadcast: dict[str, Any]) -> None:
        topic = broadcast["topic"]
        subs = self._subscriptions
        groups = []
        exact = subs.get(topic)
        if exact:
            groups.append(exact)
        for a_filter in subs.wildcards:
            if self._matches(topic, a_filter):
                groups.append(subs[a_filter])
        if not groups:
            return
        # [MQTT-3.8.4-6] delivered QoS = min(published, granted). A broadcast without a
        # QoS (a plugin's) keeps amqtt's rule: the granted QoS.
        pub_qos = broadcast.get("qos", QOS_2)
        data = broadcast["data"]
        encoded: bytes | None = None  # the QoS 0 PUBLISH, encoded once for everyone
        for subscriptions in groups:
            for target_session, sub_qos in list(subscriptions):
                qos = sub_qos if sub_qos < pub_qos else pub_qos
                if not self.allowed(target_session, topic, Action.RECEIVE):
                    continue
                state = target_session.transitions.state
                # As amqtt: keep QoS 1/2 messages for a disconnected persistent session.
                if (
                    state != "connected"
                    and not target_session.clean_session
                    and qos in (QOS_1, QOS_2)
                    and not target_session.is_anonymous
                ):
                    await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                if state != "connected":
                    continue
                handler = self._get_handler(target_session)
                if handler is None:
                    continue
                if qos == QOS_0:
                    transport = _transport(handler)
                    if transport is not None:
                        if encoded is None:
                            encoded = encode_publish_qos0(topic, data or b"")
                        self._send_qos0(handler, target_session, transport, encoded)
                        continue
                await self._send_tracked(handler, target_session, topic, data, qos)

    def _send_qos0(self, handler: Any, session: Session, transport: Any, packet: bytes) -> None:
        """Into the socket buffer at once; dropped while the subscriber is not reading."""
        if transport.is_closing() or handler.writer.is_closed:
            return
        if transport.get_write_buffer_size() > OUT_BUFFER_LIMIT:
            self.dropped += 1
            dropped = getattr(handler, "_station_dropped", 0)
            if not dropped:
                log.warning(
                    "client %s is not reading (%d KiB unsent): dropping QoS 0 messages for it",
                    session.client_id,
                    transport.get_write_buffer_size() // 1024,
                )
            handler._station_dropped = dropped + 1
            return
        dropped = getattr(handler, "_station_dropped", 0)
        if dropped:
            log.info("client %s reads again; %d QoS 0 messages dropped", session.client_id, dropped)
            handler._station_dropped = 0
        transport.write(packet)
        self.hub.stats.sent += 1

    async def _send_tracked(
        self, handler: Any, session: Session, topic: str, data: Any, qos: int
    ) -> None:
        """A QoS 1/2 delivery as amqtt makes it (a task waiting for the acknowledgement),
        at most MAX_INFLIGHT_OUT at a time per subscriber: at that many, routing waits
        for this subscriber (up to OUT_STALL_S; publishers wait in their TCP windows
        meanwhile), and a subscriber that acknowledges nothing in that time is closed."""
        if getattr(handler, "_station_pending", 0) >= MAX_INFLIGHT_OUT:
            if getattr(handler, "_station_closing", False):
                return
            room = getattr(handler, "_station_room", None)
            if room is None:
                room = handler._station_room = asyncio.Event()
            room.clear()
            try:
                await asyncio.wait_for(room.wait(), OUT_STALL_S)
            except TimeoutError:
                handler._station_closing = True
                log.warning(
                    "client %s acknowledged none of its %d QoS %d messages in %.0f s: closing it",
                    session.client_id,
                    handler._station_pending,
                    qos,
                    OUT_STALL_S,
                )
                task = asyncio.ensure_future(handler.handle_connection_closed())
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
                return
            if (
                session.transitions.state != "connected"
                or self._get_handler(session) is not handler
            ):
                return
        handler._station_pending = getattr(handler, "_station_pending", 0) + 1
        self.hub.stats.sent += 1
        task = asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, retain=False))
        self._deliveries.add(task)
        task.add_done_callback(lambda t, h=handler: self._delivery_done(t, h))

    def _delivery_done(self, task: asyncio.Task[Any], handler: Any) -> None:
        self._deliveries.discard(task)
        handler._station_pending -= 1
        room = getattr(handler, "_station_room", None)
        if room is not None and handler._station_pending < MAX_INFLIGHT_OUT // 2:
            room.set()
        if task.cancelled():
            return
        exc = task.exception()
        # A PUBACK/PUBCOMP that never came is logged where it was awaited.
        if exc is not None and not isinstance(exc, TimeoutError | ProtocolHandlerError):
            log.warning(
                "delivery to %s failed: %r", getattr(handler.session, "client_id", "?"), exc
            )

    async def _retain_broadcast_message(
        self, broadcast: dict[str, Any], qos: int, target_session: Session
    ) -> None:
        """amqtt's, but an offline session keeps at most MAX_QUEUED messages."""
        queued = target_session.retained_messages
        if queued.qsize() >= MAX_QUEUED:
            self.queue_dropped += 1
            if not getattr(target_session, "_station_queue_full", False):
                target_session._station_queue_full = True
                log.warning(
                    "offline session %s has %d messages queued: dropping new ones",
                    target_session.client_id,
                    MAX_QUEUED,
                )
            return
        target_session._station_queue_full = False
        await queued.put(
            RetainedApplicationMessage(
                broadcast["session"], broadcast["topic"], broadcast["data"], qos
            )
        )
        await self.plugins_manager.fire_event(
            BrokerEvents.RETAINED_MESSAGE,
            client_id=target_session.client_id,
            retained_message=queued,
        )

    # -- shutdown ----------------------------------------------------------------------

    async def shutdown(self) -> None:
        """amqtt's, in an order that finishes under load: routing stops first (its
        queue is dropped: publishers then wait in their TCP windows), and every socket
        that cannot drain is aborted rather than awaited. Readers stop before the
        deliveries in flight are cancelled, so no acknowledgement arrives for one."""
        self._closing = True
        for server in self._servers.values():
            instance = getattr(server, "instance", None)
            if instance is not None:
                instance.close()  # no new connections while the others close
        handlers = [h for _s, h in list(self._sessions.values()) if h is not None]
        await asyncio.gather(*(_end_reader(h) for h in handlers), return_exceptions=True)
        await self._shutdown_broadcast_loop()
        dropped = self._broadcast_queue.qsize()
        while not self._broadcast_queue.empty():
            self._broadcast_queue.get_nowait()
        if dropped:
            log.info("shutdown: %d routed messages not delivered", dropped)
        for _session, handler in list(self._sessions.values()):
            transport = _transport(handler)
            if transport is not None and transport.get_write_buffer_size():
                transport.abort()
        await super().shutdown()

    async def _shutdown_broadcast_loop(self) -> None:
        if self._broadcast_shutdown_waiter.done():
            return  # already stopped by shutdown()
        await super()._shutdown_broadcast_loop()
        # amqtt replaces the waiter; keep it done so a second call is a no-op.
        self._broadcast_shutdown_waiter.set_result(True)

    async def _stop_handler(self, handler: BrokerProtocolHandler) -> None:
        """amqtt's close drains the socket first: for a peer that does not read, that
        waited forever (a shutdown under load never finished). Give it
        DRAIN_ON_CLOSE_S, then abort."""
        transport = _transport(handler)
        if transport is not None and transport.get_write_buffer_size():
            if self._closing:
                transport.abort()
            else:
                asyncio.get_running_loop().call_later(DRAIN_ON_CLOSE_S, _abort_if_stuck, transport)
        await _end_reader(handler)
        await super()._stop_handler(handler)


async def _end_reader(handler: BrokerProtocolHandler) -> None:
    """Cancel a handler's reader task until it has stopped. amqtt's `stop()` cancels it
    once and waits; but the reader reads each packet through `asyncio.wait_for`, which
    in Python 3.11 returns the packet and drops the cancellation when both come at
    once: under a flood that happened at nearly every shutdown, and `stop()` waited
    forever (the "shutdown did not finish cleanly" of issue 9). A reader that keeps
    dropping them has its socket aborted: it then reads what is buffered, reaches the
    end of the stream and stops as for any lost connection."""
    task = handler._reader_task
    stopped = handler._reader_stopped
    if task is None or task.done() or task is asyncio.current_task():
        return
    waiter = asyncio.ensure_future(stopped.wait())
    try:
        for attempt in range(END_READER_TRIES):
            task.cancel()
            await asyncio.wait((waiter, task), timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done() or task.done():
                return
            if attempt == 2:
                transport = _transport(handler)
                if transport is not None:
                    transport.abort()
        log.warning("the reader of %s did not stop", getattr(handler.session, "client_id", "?"))
    finally:
        waiter.cancel()


def _abort_if_stuck(transport: Any) -> None:
    if transport.get_write_buffer_size():
        transport.abort()
