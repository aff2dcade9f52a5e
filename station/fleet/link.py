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
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from station import external_broker
from station.device_ops import Broker, DeviceOps
from station.errors import StationError
from station.registry import Device, Registry
from station.registry.tracking import DeviceUpdate

if TYPE_CHECKING:
    from station.external_broker import ExternalBroker
    from station.runtime import StationRuntime

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

    def __init__(
        self,
        registry: Registry,
        links: Mapping[str, DeviceLink],
        also_hear: Sequence[DeviceLink] = (),
    ) -> None:
        """`also_hear`: brokers the devices may report on besides their own (the one a
        re-homing moves them to)."""
        self.registry = registry
        self.links = dict(links)
        self.also_hear = list(also_hear)
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
            for link in {id(x): x for x in [*self.links.values(), *self.also_hear]}.values():
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
        if update.kind == "info" and (update.data or update.info):
            kind, doc = "info", update.data or update.info or {}
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


def home_links(
    rt: StationRuntime, devices: Sequence[Device], owned: list[ExternalBroker]
) -> dict[str, DeviceLink]:
    """Each device's broker: the embedded one for devices of homes without a broker of
    their own; a home's own broker through the GUI's follower when one runs, else one
    started here and appended to `owned` (the caller stops it)."""
    links: dict[str, DeviceLink] = {}
    by_url: dict[str, DeviceLink] = {}
    for device in devices:
        home = device.home
        if home is None or not home.broker_url:
            links[device.node_name] = rt.broker
            continue
        url = home.broker_url
        if url not in by_url:
            follower = rt.followers.follower(url) if rt.followers is not None else None
            if follower is None:
                follower = external_broker.for_home(
                    rt.registry,
                    rt.secrets,
                    home,
                    reading_min_interval_s=rt.settings.registry.reading_min_interval_s,
                )
                if follower is None:  # pragma: no cover - the home has a broker URL
                    raise StationError(f"home {home.name!r} has no broker of its own")
                owned.append(follower)
            by_url[url] = follower
        links[device.node_name] = by_url[url]
    return links
