"""The devices of a rollout as a running station reaches them: commands go out through
the broker each device reports to (the embedded one, or its home's own broker), and
what the devices report on it comes back to the rollout. Qt-free.

    fleet = StationFleet(registry, {"esp32_dht11_001": runtime.broker, ...})
    fleet.watch(rollout.observe)        # every device's info and events, from now on
    rollout.run()
    fleet.close()                       # listeners removed
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from station.device_ops import Broker, DeviceOps
from station.registry import Registry
from station.registry.tracking import DeviceUpdate

log = logging.getLogger(__name__)

# rollout.Rollout.observe: (node, "info" | "event", document)
Observer = Callable[[str, str, dict[str, Any]], None]


class DeviceLink(Broker, Protocol):
    """A broker the station reaches devices through and hears them on (EmbeddedBroker,
    ExternalBroker)."""

    def add_listener(self, listener: Callable[[DeviceUpdate], None]) -> None: ...

    def remove_listener(self, listener: Callable[[DeviceUpdate], None]) -> None: ...


class StationFleet:
    """rollout.Fleet over the brokers of a running station, one per device."""

    def __init__(self, registry: Registry, links: Mapping[str, DeviceLink]) -> None:
        self.registry = registry
        self.links = dict(links)
        self._lock = threading.Lock()
        self._observers: list[Observer] = []
        self._listening: list[DeviceLink] = []

    # -- rollout.Fleet -----------------------------------------------------------------

    def is_online(self, node: str) -> bool:
        # The registry, not a copy: the tracker keeps it current from the broker.
        return bool(self.registry.device(node).online)

    def send(self, node: str, command: dict[str, Any]) -> None:
        """Checked against the command table and logged in the device's history, as a
        command from the detail panel or the CLI is (station.device_ops)."""
        device = self.registry.device(node)
        values = {k: v for k, v in command.items() if k != "cmd"}
        DeviceOps(self.registry, self.links[node]).send(device, str(command["cmd"]), **values)

    # -- what the devices report ----------------------------------------------------------

    def watch(self, observer: Observer) -> None:
        """Hand every `info` and `event` of this fleet's devices to `observer` (called on
        the broker's thread: keep it short)."""
        with self._lock:
            self._observers.append(observer)
            for link in {id(x): x for x in self.links.values()}.values():
                if not any(link is seen for seen in self._listening):
                    link.add_listener(self._on_update)
                    self._listening.append(link)

    def close(self) -> None:
        with self._lock:
            for link in self._listening:
                link.remove_listener(self._on_update)
            self._listening.clear()
            self._observers.clear()

    def _on_update(self, update: DeviceUpdate) -> None:
        node = update.node_name
        if node not in self.links:
            return
        if update.kind == "info" and update.info:
            kind, doc = "info", update.info
        elif update.kind == "event" and isinstance(update.data, dict):
            kind, doc = "event", update.data
        else:
            return
        with self._lock:
            observers = list(self._observers)
        for observe in observers:
            try:
                observe(node, kind, doc)
            except Exception:  # one observer's bug must not stop the broker's listeners
                log.exception("fleet observer failed on %s %s", node, kind)
