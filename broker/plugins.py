"""The station's amqtt plugins: authentication, topic ACL and device tracking.

amqtt builds plugins from dotted paths plus a config dict, so each plugin finds
its BrokerHub through `HUBS[config.hub]` (one hub per running broker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin
from amqtt.session import Session

from broker.access import AccessControl
from broker.hub import BrokerHub, principal_of

HUBS: dict[str, BrokerHub] = {}


@dataclass
class HubConfig:
    hub: str = ""


class StationAuthPlugin(BaseAuthPlugin):
    Config = HubConfig

    async def authenticate(self, *, session: Session) -> bool | None:
        return await HUBS[self.config.hub].authenticate(session)


class StationTopicPlugin(BaseTopicPlugin):
    Config = HubConfig

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        principal = principal_of(session)
        if principal is None or not topic:
            return False
        if action == Action.PUBLISH:
            return AccessControl.may_publish(principal, topic)
        if action == Action.SUBSCRIBE:
            return AccessControl.may_subscribe(principal, topic)
        return AccessControl.may_receive(principal, topic)


class StationEventsPlugin(BasePlugin):
    Config = HubConfig

    async def on_broker_client_connected(self, *, client_id: str, client_session: Session) -> None:
        HUBS[self.config.hub].connected(client_id, client_session)

    async def on_broker_client_disconnected(
        self, *, client_id: str, client_session: Session
    ) -> None:
        HUBS[self.config.hub].disconnected(client_id, client_session)

    async def on_broker_message_broadcast(self, *, client_id: str, message: Any) -> None:
        # Fired only for publishes that passed the ACL (unlike message_received).
        HUBS[self.config.hub].message(message.topic, message.data)


def plugin_config(hub_id: str) -> dict[str, dict[str, str]]:
    """The explicit plugin list (listing plugins replaces amqtt's costly defaults)."""
    cfg = {"hub": hub_id}
    return {
        f"{__name__}.StationAuthPlugin": cfg,
        f"{__name__}.StationTopicPlugin": cfg,
        f"{__name__}.StationEventsPlugin": cfg,
    }
