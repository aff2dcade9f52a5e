"""Moving a home's devices to another broker without visiting them (docs/FLEET.md): from
the laptop's embedded broker to the customer's permanent one, between two external
brokers, or back. Staged and confirmed like a firmware update (station.fleet.rollout):
each device is told the new broker and a login there (set_broker), and counts as moved
only when it reports, on the new broker, that it is there. A device the new broker
refuses, or cannot reach, stays on its old broker and says why; a canary that does not
move stops the move before any other device is touched. Qt-free.

    with BrokerMove(runtime, "Smith", "mqtt://admin:pw@192.168.1.20:1883") as move:
        result = move.run()           # blocks until every device is final
    move.home_moved                   # True: the home now points at the new broker

Logins: a fresh token per device. On a Mosquitto (dynamic security) it is created as
that device's turn comes; for the embedded broker the registry takes the token's hash
then (the old broker keeps the old login, so a device that cannot move loses nothing).
Once a device has moved, its login on the old broker is revoked. The home's broker
changes in the registry only when every device of the home has moved: a half-moved
home keeps pointing at its old broker, and the command says which devices moved; run
again, it leaves those alone (each device's reported broker is in the registry) and
moves the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from station import broker_target, external_broker
from station.errors import StationError
from station.external_broker import ExternalBroker
from station.fleet.changes import BrokerChange
from station.fleet.link import DeviceLink, StationFleet, home_links
from station.fleet.rollout import DeviceProgress, Phase, Rollout, RolloutResult, Stages
from station.registry import Device, Home, credentials

if TYPE_CHECKING:
    from station.runtime import StationRuntime

log = logging.getLogger(__name__)


def _describe(url: str | None) -> str:
    return url or "the station's embedded broker"


class BrokerMove:
    def __init__(
        self,
        runtime: StationRuntime,
        home: str | Home,
        broker: str,
        *,
        canary: int = 1,
        concurrency: int = 4,
        max_failures: int = 0,
        device_timeout_s: float = 120.0,
        on_progress: Callable[[DeviceProgress], None] | None = None,
    ) -> None:
        """`broker`: a URL (mqtt://USER:PASSWORD@host:port, the admin login of a
        Mosquitto with dynamic security; kept in the keyring) or `embedded`."""
        self.stages = Stages(canary, concurrency, max_failures, device_timeout_s)
        self.runtime = rt = runtime
        registry = rt.registry
        if isinstance(home, str):
            found = next((h for h in registry.homes() if h.name == home), None)
            if found is None:
                raise StationError(f"no home {home!r} (see `station homes`)")
            home = found
        self.home = home
        devices = [d for d in registry.devices() if d.home is not None and d.home.id == home.id]
        if not devices:
            raise StationError(f"home {home.name!r} has no device to move")
        target = external_broker.remember(rt.secrets, broker)
        if target is not None and target.tls:
            raise StationError(
                "devices take a new broker over plain MQTT only (set_broker carries no CA "
                "certificate yet): for an mqtts:// broker, re-provision them "
                f"(`station homes edit {home.name!r} --broker …`, then `station provision`)"
            )
        self.source = home.broker_url
        self.target_url = target.url if target is not None else None
        if self.target_url == self.source:
            raise StationError(f"home {home.name!r} already reports to {_describe(self.source)}")
        self.home_moved = False
        self._owned: list[ExternalBroker] = []
        self._tokens: dict[str, str] = {}
        self._rollout: Rollout | None = None
        try:
            self.old_links = home_links(rt, devices, self._owned)
            self.new_link, host, port = self._new_broker(target)
        except BaseException:
            self.close()
            raise
        self.change = BrokerChange(host, port, self._login_for)
        # Devices that already report from there (a move that stopped halfway, run
        # again): nothing to do for them.
        self.already = [d.node_name for d in devices if d.broker_address == self.change.address]
        self.nodes = [d.node_name for d in devices if d.node_name not in self.already]
        self.old_links = {n: link for n, link in self.old_links.items() if n in self.nodes}
        self.fleet = StationFleet(registry, self.old_links, also_hear=[self.new_link])
        self.on_progress = on_progress
        if self.nodes and not any(self.fleet.is_online(n) for n in self.nodes):
            self.close()
            raise StationError("none of the home's devices is online now: nothing can move")

    @property
    def address(self) -> str:
        """Where the devices are told to go (host:port as the home network names it)."""
        return self.change.address

    @property
    def devices(self) -> dict[str, DeviceProgress]:
        if self._rollout is not None:
            return self._rollout.devices
        return {n: DeviceProgress(n) for n in self.nodes}

    def _new_broker(self, target: broker_target.BrokerTarget | None) -> tuple[DeviceLink, str, int]:
        rt = self.runtime
        if target is None:
            host, port = rt.broker_address()
            return rt.broker, host, port
        link = rt.followers.follower(target.url) if rt.followers is not None else None
        if link is None:
            login = rt.secrets.broker_login(target.key)
            if login is None:
                raise StationError(
                    f"no admin login for {target.url}: give it once as "
                    f"{target.scheme}://USER:PASSWORD@{target.host}:{target.port}"
                )
            link = ExternalBroker(
                rt.registry,
                target,
                login,
                reading_min_interval_s=rt.settings.registry.reading_min_interval_s,
                secrets_store=rt.secrets,
            )
            try:
                link.start()
            except StationError as exc:
                raise StationError(
                    f"the broker {target.url} cannot take devices, so nothing was moved: {exc}"
                ) from None
            self._owned.append(link)
        if rt.demo is not None:
            # The customer's broker is on the simulated home LAN, not on the laptop.
            dest = f"{target.host}:{target.port}"
            rt.demo.air.extend_reach(rt.demo.home_ssid, {dest: dest})
        return link, target.host, target.port

    def _login_for(self, node: str) -> tuple[str, str]:
        """The device's login on the new broker, made as its turn comes (rollout lock
        held: a registry write or one dynamic-security call)."""
        device = self.runtime.registry.device(node)
        token = credentials.new_token()
        if self.target_url is None:
            # The embedded broker checks the registry's hash; the old broker (an external
            # one) keeps the device's old login until the device has moved.
            self.runtime.registry.set_token(
                device, token, "token for the station's broker (moving there)"
            )
            self.runtime.broker.device_registered(device)  # its login cache reads it again
        else:
            self.new_link.device_registered(device, token)
        self._tokens[node] = token
        return device.mqtt_username, token

    def run(self) -> RolloutResult:
        rollout = self._rollout = self.stages.rollout(
            self.nodes, self.change, self.fleet, self.on_progress
        )
        self.fleet.watch(rollout.observe)
        log.info(
            "moving %d device(s) of %s from %s to %s",
            len(self.nodes),
            self.home.name,
            _describe(self.source),
            _describe(self.target_url),
        )
        result = rollout.run()
        registry = self.runtime.registry
        for dev in result.devices:
            try:
                device = registry.device(dev.node)
            except StationError:  # removed meanwhile: its logins went with it
                continue
            self._settle(device, dev)
            registry.log_event(
                device,
                "broker_move",
                f"to {_describe(self.target_url)}: {dev.phase}"
                + (f" ({dev.reason})" if dev.reason else ""),
                {
                    "from": self.source,
                    "to": self.target_url,
                    "address": self.address,
                    "phase": str(dev.phase),
                    "reason": dev.reason,
                },
            )
        if all(d.phase is Phase.CONFIRMED for d in result.devices):
            self.home = registry.edit_home(self.home, broker_url=self.target_url, broker_ca=None)
            self.home_moved = True
            log.info("home %s now reports to %s", self.home.name, _describe(self.target_url))
        return result

    def _settle(self, device: Device, dev: DeviceProgress) -> None:
        """After its turn: the moved device's old login revoked, a login it never used
        removed."""
        token = self._tokens.get(dev.node)
        if token is None:
            return
        try:
            if dev.phase is Phase.CONFIRMED:
                if self.target_url is not None:
                    # The registry's hash follows the device (its old one is revoked on
                    # the embedded broker with it).
                    self.runtime.registry.set_token(
                        device, token, f"token for {self.target_url} (moved there)"
                    )
                    self.runtime.broker.device_registered(device)
                old = self.old_links[dev.node]
                if isinstance(old, ExternalBroker):
                    old.device_removed(device)
            elif self.target_url is not None:
                self.new_link.device_removed(device)
        except StationError as exc:  # the broker went away meanwhile: say so, go on
            log.warning("%s: login not tidied up: %s", dev.node, exc)

    def pause(self) -> None:
        if self._rollout is not None:
            self._rollout.pause()

    def resume(self) -> None:
        if self._rollout is not None:
            self._rollout.resume()

    def cancel(self) -> None:
        if self._rollout is not None:
            self._rollout.cancel()

    def close(self) -> None:
        fleet = getattr(self, "fleet", None)
        if fleet is not None:
            fleet.close()
        for ext in self._owned:
            ext.stop()
        self._owned.clear()

    def __enter__(self) -> BrokerMove:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
