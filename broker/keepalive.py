"""Enforce MQTT keep-alive in amqtt 0.12.1 (its issue #308).

amqtt reads each packet header with `wait_for(..., timeout=keep_alive)` but its
broker handler's `handle_read_timeout()` does nothing, so a device that loses power
stays connected and "online" forever and its will is never sent. We make the
timeout end the reader loop: amqtt then runs its normal abnormal-disconnect path,
which publishes the will and fires `broker_client_disconnected`.

MQTT 3.1.1 (3.1.2.10) lets the server wait 1.5x the keep-alive; `scale()` applies
that factor to a session before its reader starts (the auth plugin calls it).

The patch is tied to the exact amqtt version pinned in pyproject.toml.
"""

from __future__ import annotations

import logging
import math
from importlib.metadata import version

from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

log = logging.getLogger(__name__)

PATCHED_VERSION = "0.12.1"
_installed = False


def _handle_read_timeout(self: BrokerProtocolHandler) -> None:
    client_id = self.session.client_id if self.session else None
    log.info("client %s silent past its keep-alive: closing, will follows", client_id)
    task = getattr(self, "_reader_task", None)
    # We run inside the reader task: cancelling it ends the loop at its next await,
    # and amqtt's own cleanup (handle_connection_closed -> will -> stop) follows.
    if task is not None and not task.done():
        task.cancel()


def install() -> None:
    """Patch the broker handler once; refuse to guess on another amqtt version."""
    global _installed
    if _installed:
        return
    found = version("amqtt")
    if found != PATCHED_VERSION:
        raise RuntimeError(
            f"broker/keepalive.py patches amqtt {PATCHED_VERSION}, found {found}: "
            "check amqtt's handle_read_timeout before changing the pin"
        )
    if BrokerProtocolHandler.handle_read_timeout is not _handle_read_timeout:
        BrokerProtocolHandler.handle_read_timeout = _handle_read_timeout
    _installed = True


def scale(session: Session, factor: float) -> None:
    """Give a client `factor` x its keep-alive before it counts as dead."""
    if session.keep_alive > 0:
        session.keep_alive = math.ceil(session.keep_alive * factor)


__all__ = ["install", "scale"]
