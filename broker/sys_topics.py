"""A small `$SYS` tree, as monitoring tools (MQTT Explorer, Home Assistant's broker
sensors, Telegraf) expect it.

Topic names and payload formats are Mosquitto's (tests/broker/test_sys_topics.py runs the
same subscriber against Mosquitto 2.0.11 and checks each name and format there), so a
dashboard made for Mosquitto reads the station too:

    $SYS/broker/version                      "station version 0.9.0 (amqtt 0.12.1)"
    $SYS/broker/uptime                       "42 seconds"
    $SYS/broker/clients/connected            connections logged in now
    $SYS/broker/publish/messages/received    PUBLISH packets taken from clients
    $SYS/broker/publish/messages/sent        PUBLISH packets handed to subscribers
    $SYS/broker/subscriptions/count          filters held, over all sessions
    $SYS/broker/retained messages/count      topics holding a retained message

Refreshed every `interval` seconds (Mosquitto's default is 10; 5 here, since the
numbers are cheap to read), published retained at QoS 0 like Mosquitto's, and only
when a value changed. Who may read them is broker/access.py's rule: the station and
integration accounts, never devices or anonymous monitors; `#` never matches them
[MQTT-4.7.2-1].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from importlib.metadata import version
from typing import TYPE_CHECKING

from station import __version__

if TYPE_CHECKING:
    from broker.hub import BrokerHub
    from broker.station_broker import StationBroker

log = logging.getLogger(__name__)

INTERVAL_S = 5.0
PREFIX = "$SYS/broker/"


def broker_version() -> str:
    return f"station version {__version__} (amqtt {version('amqtt')})"


def snapshot(broker: StationBroker, hub: BrokerHub) -> dict[str, str]:
    """Every `$SYS` value now, as the payload text Mosquitto uses."""
    stats = hub.stats
    return {
        PREFIX + "version": broker_version(),
        PREFIX + "uptime": f"{stats.uptime_s} seconds",
        PREFIX + "clients/connected": str(len(hub.live)),
        PREFIX + "publish/messages/received": str(stats.received),
        PREFIX + "publish/messages/sent": str(stats.sent),
        PREFIX + "subscriptions/count": str(sum(len(h) for h in broker._subscriptions.values())),
        # Mosquitto counts its own retained `$SYS` topics too.
        PREFIX + "retained messages/count": str(
            sum(1 for r in broker._retained_messages.values() if r.data)
        ),
    }


class SysPublisher:
    """Runs on the broker's loop: `start()` after the broker started, `stop()` before
    it shuts down."""

    def __init__(self, broker: StationBroker, hub: BrokerHub, interval: float = INTERVAL_S):
        self.broker = broker
        self.hub = hub
        self.interval = interval
        self._last: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish_changes(self) -> int:
        """Publish the values that changed since the last round; returns how many."""
        changed = {
            t: v for t, v in snapshot(self.broker, self.hub).items() if self._last.get(t) != v
        }
        for topic, value in changed.items():
            data = value.encode()
            # Stored first, so a subscriber that arrives meanwhile gets the new value.
            await self.broker.retain_message(None, topic, data, 0)
            await self.broker.internal_message_broadcast(topic, data, 0)
        self._last.update(changed)
        return len(changed)

    async def _run(self) -> None:
        while True:
            try:
                await self.publish_changes()
            except Exception:  # a monitoring feature must never take the broker down
                log.exception("$SYS update failed")
            await asyncio.sleep(self.interval)
