"""A new report interval for installed devices, rolled out like a firmware update
(station.fleet.rollout: canary first, only devices online) and confirmed by the
`interval` each device then reports in its info. Qt-free; `station fleet set-interval`
drives it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from station.errors import StationError
from station.fleet.changes import IntervalChange
from station.fleet.link import StationFleet, home_links
from station.fleet.rollout import DeviceProgress, RolloutResult, Stages

if TYPE_CHECKING:
    from station.external_broker import ExternalBroker
    from station.runtime import StationRuntime


class IntervalUpdate:
    def __init__(
        self,
        runtime: StationRuntime,
        nodes: Sequence[str],
        seconds: int,
        *,
        canary: int = 1,
        concurrency: int = 4,
        max_failures: int = 0,
        device_timeout_s: float = 60.0,
        on_progress: Callable[[DeviceProgress], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.change = IntervalChange(seconds)  # CommandError: out of the device's range
        stages = Stages(canary, concurrency, max_failures, device_timeout_s)
        registry = runtime.registry
        devices = [registry.device(n) for n in dict.fromkeys(nodes)]
        if not devices:
            raise StationError("no device named: name at least one")
        self.nodes = [d.node_name for d in devices]
        self._owned: list[ExternalBroker] = []
        try:
            links = home_links(runtime, devices, self._owned)
        except StationError:
            self._stop_owned()
            raise
        self.fleet = StationFleet(registry, links)
        self.rollout = stages.rollout(self.nodes, self.change, self.fleet, on_progress)
        if not any(self.fleet.is_online(n) for n in self.nodes):
            self.close()
            raise StationError("none of these devices is online now: nothing to change")

    def run(self) -> RolloutResult:
        self.fleet.watch(self.rollout.observe)
        result = self.rollout.run()
        registry = self.runtime.registry
        for dev in result.devices:
            try:
                device = registry.device(dev.node)
            except StationError:  # removed meanwhile: no history to write
                continue
            registry.log_event(
                device,
                "interval_change",
                f"interval {self.change.value} s: {dev.phase}"
                + (f" ({dev.reason})" if dev.reason else ""),
                {"value": self.change.value, "phase": str(dev.phase), "reason": dev.reason},
            )
        return result

    def cancel(self) -> None:
        self.rollout.cancel()

    def close(self) -> None:
        self.fleet.close()
        self._stop_owned()

    def _stop_owned(self) -> None:
        for ext in self._owned:
            ext.stop()
        self._owned.clear()

    def __enter__(self) -> IntervalUpdate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
