"""StationBridge: broker callbacks (ingest / broker threads) in, Qt signals out.

The broker calls its listeners in the registry-ingest thread and its connection-count
callback in the broker's asyncio thread; the followers of the homes' own brokers
(station.followers) call theirs in their ingest and follower threads. None may touch
a widget, so the bridge only emits signals there. The bridge lives in the GUI thread,
so every receiver that lives there gets the signal as a queued event: slots always
run in the GUI thread.

    bridge = StationBridge()
    bridge.deviceUpdated.connect(model.apply)
    bridge.attach(runtime.broker)
    ...
    bridge.detach()
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from station.registry.tracking import DeviceUpdate

log = logging.getLogger(__name__)


class StationBridge(QObject):
    deviceUpdated = Signal(object)  # station.registry.tracking.DeviceUpdate
    clientsChanged = Signal(int)
    followerChanged = Signal(object)  # station.followers.FollowerState

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._broker: Any = None
        # Once the C++ object is gone (window closed before detach) a late callback
        # must not raise in the broker's threads: it is dropped instead.
        self._alive = True

    @property
    def broker(self) -> Any:
        return self._broker

    def attach(self, broker: Any) -> None:
        """Listen to `broker` (an EmbeddedBroker); replaces an earlier attach."""
        if self._broker is not None:
            self.detach()
        self._broker = broker
        broker.add_listener(self.push_update)
        broker.on_connection_count(self.push_clients)
        # The count may have changed before we listened.
        self.clientsChanged.emit(int(broker.clients_connected))

    def detach(self) -> None:
        broker, self._broker = self._broker, None
        if broker is None:
            return
        broker.remove_listener(self.push_update)
        # The broker holds one connection-count callback; only clear it if it is ours.
        hub = getattr(broker, "hub", None)
        if hub is None or getattr(hub, "on_connection_change", None) == self.push_clients:
            broker.on_connection_count(None)

    # -- called from any thread: emit only --------------------------------------------

    def push_update(self, update: DeviceUpdate) -> None:
        """Broker listener (ingest thread). Public so tools can feed updates directly."""
        if self._alive:
            try:
                self.deviceUpdated.emit(update)
            except RuntimeError:  # deleted between the check and the emit
                self._alive = False

    def push_follower(self, state: Any) -> None:
        """A home broker's follower changed state (its own thread)."""
        if self._alive:
            try:
                self.followerChanged.emit(state)
            except RuntimeError:
                self._alive = False

    def push_clients(self, count: int) -> None:
        """Connection-count callback (broker thread)."""
        if self._alive:
            try:
                self.clientsChanged.emit(int(count))
            except RuntimeError:
                self._alive = False
