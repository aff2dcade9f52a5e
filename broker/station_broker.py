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

It overrides private methods of amqtt 0.12.1, which pyproject.toml pins exactly;
tests/broker cover the behaviour these overrides must keep.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.events import BrokerEvents
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

from broker.access import AccessControl
from broker.hub import BrokerHub, principal_of
from station.control import CONTROL_PREFIX

log = logging.getLogger(__name__)


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
        self._subscriptions = SubscriptionIndex()

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
        """amqtt's, but the published QoS travels with the message (MQTT-3.8.4-6), a
        `$` topic is dropped with the connection kept, and a topic the standard
        forbids closes the connection the way amqtt closes any other: through the
        handler, so the message loop handles the end (will, disconnect event)."""
        app_message = wait_deliver.result()
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

    async def _run_broadcast(self, running_tasks: deque[asyncio.Task[Any]]) -> None:
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        subs = self._subscriptions
        groups = []
        exact = subs.get(topic)
        if exact:
            groups.append(exact)
        for a_filter in subs.wildcards:
            if self._matches(topic, a_filter):
                groups.append(subs[a_filter])
        # [MQTT-3.8.4-6] delivered QoS = min(published, granted). A broadcast without a
        # QoS (a plugin's) keeps amqtt's rule: the granted QoS.
        pub_qos = broadcast.get("qos", QOS_2)
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
                if handler:
                    self.hub.stats.sent += 1
                    running_tasks.append(
                        asyncio.ensure_future(
                            handler.mqtt_publish(topic, broadcast["data"], qos, retain=False)
                        )
                    )
