"""The station's amqtt plugins: authentication and connection events.

Topic ACL and message tracking sit on amqtt's hot path instead (broker.station_broker),
where they cost no asyncio task per message.

amqtt builds plugins from dotted paths plus a config dict, so each plugin finds
its BrokerHub through `HUBS[config.hub]` (one hub per running broker).
"""

from __future__ import annotations

from dataclasses import dataclass

from amqtt.plugins.base import BaseAuthPlugin, BasePlugin
from amqtt.session import Session

from broker.hub import BrokerHub

HUBS: dict[str, BrokerHub] = {}


@dataclass
class HubConfig:
    hub: str = ""


class StationAuthPlugin(BaseAuthPlugin):
    Config = HubConfig

    async def authenticate(self, *, session: Session) -> bool | None:
        return await HUBS[self.config.hub].authenticate(session)


class StationEventsPlugin(BasePlugin):
    Config = HubConfig

    async def on_broker_client_connected(self, *, client_id: str, client_session: Session) -> None:
        HUBS[self.config.hub].connected(client_id, client_session)

    async def on_broker_client_disconnected(
        self, *, client_id: str, client_session: Session
    ) -> None:
        HUBS[self.config.hub].disconnected(client_id, client_session)


def plugin_config(hub_id: str) -> dict[str, dict[str, str]]:
    """The explicit plugin list (listing plugins replaces amqtt's costly defaults)."""
    cfg = {"hub": hub_id}
    return {
        f"{__name__}.StationAuthPlugin": cfg,
        f"{__name__}.StationEventsPlugin": cfg,
    }
