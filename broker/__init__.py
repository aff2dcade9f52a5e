"""The station's embedded MQTT broker (amqtt): lifecycle, auth, ACL, device tracking."""

from broker.server import BrokerStartError, EmbeddedBroker

__all__ = ["BrokerStartError", "EmbeddedBroker"]
