"""State the station's amqtt plugins share: access control, live connections, ingest.

Everything here runs on the broker's event loop, except `observe` consumers
(broker.ingest runs in its own thread).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amqtt.session import Session

from broker import keepalive
from broker.access import ACCOUNT_ROLES, AccessControl, Principal, Role
from broker.stats import BrokerStats
from station.control import CONTROL_ACCOUNT, CONTROL_REMOVED
from station.registry.models import utcnow
from station.registry.tracking import TRACKED_LEAVES, Observation

log = logging.getLogger(__name__)

PRINCIPAL_ATTR = "station_principal"
TAKEOVER_TIMEOUT_S = 3.0
GHOST_CLEANUP_DELAY_S = 0.5


def principal_of(session: Session | None) -> Principal | None:
    return getattr(session, PRINCIPAL_ATTR, None) if session is not None else None


@dataclass
class _Live:
    session: Session
    handler: Any
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class BrokerHub:
    def __init__(
        self,
        access: AccessControl,
        observe: Callable[[Observation], None],
        observe_raw: Callable[[str, bytes, float], None],
        keepalive_factor: float = 1.5,
    ) -> None:
        self.access = access
        self.observe = observe
        self.observe_raw = observe_raw
        self.keepalive_factor = keepalive_factor
        self.amqtt_broker: Any = None  # set once the amqtt Broker exists
        self.live: dict[str, _Live] = {}
        self.on_connection_change: Callable[[int], None] | None = None
        # Called (on the loop) with a removed device's username, from the CLI's message.
        self.on_device_removed: Callable[[str], None] | None = None
        self.denied = 0
        self.stats = BrokerStats()

    # -- connect -----------------------------------------------------------------------

    async def authenticate(self, session: Session) -> bool:
        decision = self.access.authenticate(
            session.client_id,
            session.username,
            session.password,
            session.will_topic if session.will_flag else None,
        )
        if not decision.ok:
            self.denied += 1
            # Never log the password; the username and reason are enough to act on.
            log.warning(
                "refused client %r (user %r): %s",
                session.client_id,
                session.username,
                decision.reason,
            )
            self._drop_ghost_later(session)
            return False
        setattr(session, PRINCIPAL_ATTR, decision.principal)
        keepalive.scale(session, self.keepalive_factor)
        await self._take_over(session)
        return True

    async def _take_over(self, session: Session) -> None:
        """MQTT-3.1.4-2: a new connection with a live client id closes the old one.

        amqtt only deletes the old session's state, leaving its socket open; its will
        would then arrive *after* the new connection's `online` and mark a live device
        offline. Closing it first keeps the order right.
        """
        old = self.live.get(session.client_id or "")
        if old is None or old.session is session:
            return
        log.info("client %s reconnected: closing its previous connection", session.client_id)
        await old.handler.handle_connection_closed()
        try:
            await asyncio.wait_for(old.gone.wait(), TAKEOVER_TIMEOUT_S)
        except TimeoutError:
            log.warning("previous connection of %s did not close in time", session.client_id)

    async def control(self, session: Session | None, topic: str, data: bytes) -> None:
        """A control message: only the station's own clients may send one."""
        principal = principal_of(session)
        if principal is None or principal.role is not Role.STATION:
            log.warning("ignored control message on %s from a non-station client", topic)
            return
        if topic == CONTROL_REMOVED:
            username = data.decode("utf-8", "replace")
            self.access.remove(username)
            if self.on_device_removed is not None:
                self.on_device_removed(username)
            await self.close_client(username)
            log.info("device %s removed by another station process: login revoked", username)
        elif topic == CONTROL_ACCOUNT:
            name = data.decode("utf-8", "replace")
            closed = await self.account_changed(name)
            log.info(
                "account %s removed or given a new password: %d connection(s) closed",
                name,
                closed,
            )
        else:
            log.warning("unknown control message %s", topic)

    async def account_changed(self, name: str) -> int:
        """An account was removed or rotated: forget its login and close every connection
        it holds (a tool may hold several, with any client ids). Returns how many."""
        self.access.forget_account(name)
        holders = [
            client_id
            for client_id, live in self.live.items()
            if (p := principal_of(live.session)) is not None
            and p.role in ACCOUNT_ROLES
            and p.username == name
        ]
        for client_id in holders:
            await self.close_client(client_id)
        return len(holders)

    async def close_client(self, client_id: str, timeout: float = TAKEOVER_TIMEOUT_S) -> bool:
        """Close a live connection (a removed device's) and wait until amqtt has let it
        go, its will included. Returns False if it had none."""
        live = self.live.get(client_id)
        if live is None or live.handler is None:
            return False
        log.info("closing the connection of %s", client_id)
        await live.handler.handle_connection_closed()
        try:
            await asyncio.wait_for(live.gone.wait(), timeout)
        except TimeoutError:
            log.warning("connection of %s did not close in time", client_id)
        return True

    def _drop_ghost_later(self, session: Session) -> None:
        # amqtt keeps a refused client's session in broker.sessions forever (one per
        # random client id); remove it once amqtt has sent the CONNACK and closed.
        def drop() -> None:
            sessions = self.amqtt_broker.sessions if self.amqtt_broker else {}
            entry = sessions.get(session.client_id)
            if entry is not None and entry[0] is session:
                del sessions[session.client_id]

        asyncio.get_running_loop().call_later(GHOST_CLEANUP_DELAY_S, drop)

    # -- events ------------------------------------------------------------------------

    def connected(self, client_id: str, session: Session) -> None:
        handler = None
        if self.amqtt_broker is not None:
            entry = self.amqtt_broker.sessions.get(client_id)
            handler = entry[1] if entry else None
        self.live[client_id] = _Live(session, handler)
        self._count_changed()

    def disconnected(self, client_id: str, session: Session) -> None:
        live = self.live.get(client_id)
        if live is not None and live.session is session:
            del self.live[client_id]
            live.gone.set()
            self._count_changed()
        principal = principal_of(session)
        if principal is not None and principal.role is Role.DEVICE:
            # A will raises no message event, and a clean DISCONNECT sends no will:
            # either way the device is gone.
            self.observe(
                Observation("offline", principal.topic_prefix, utcnow(), reason="disconnected")
            )

    def message(self, topic: str, data: bytes | bytearray | None) -> None:
        # Hot path (every routed message): only a cheap topic test here; parsing
        # happens in the ingest thread.
        if topic.endswith(TRACKED_LEAVES):
            self.observe_raw(topic, bytes(data or b""), time.time())

    def _count_changed(self) -> None:
        if self.on_connection_change is not None:
            self.on_connection_change(len(self.live))
