"""Everything a running station holds, without Qt: settings, registry, broker, WiFi,
secrets, and (in demo mode) the simulated site. The GUI builds one at start-up;
the CLI commands build the parts they need.

    rt = StationRuntime.start(settings, demo_devices=5)   # or demo_devices=0
    station = rt.provisioning_station()                   # for BulkQueue / Provisioner
    ...
    rt.stop()                                             # broker, fleet, registry
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from station.errors import StationError
from station.provisioning import Station
from station.registry import Registry
from station.secrets import SecretStore
from station.settings import Settings, data_dir, station_id
from station.wifi.base import WifiBackend
from station.wifi.radio import OwnedBackend, Radio, Radios

if TYPE_CHECKING:
    from broker import EmbeddedBroker
    from station.followers import Followers
    from station.sim.demo import DemoWorld
    from station.wifi.journal import Journal
    from station.wifi.manual import Confirm

log = logging.getLogger(__name__)


def demo_chip_seed(*, shared: bool) -> str:
    """The seed of a demo's simulated chip ids (station.sim.fleet.fleet_chip_ids): the
    same every run on a registry of its own; on a given (possibly shared) registry, this
    station's own, so two stations' demos never meet each other's chips."""
    return f"demo-{station_id()}" if shared else "demo"


@dataclass
class StationRuntime:
    settings: Settings
    registry: Registry
    broker: EmbeddedBroker
    secrets: SecretStore
    # The owner of the WiFi adapter (chosen lazily: may need a confirm UI); `wifi` below is
    # its backend, through which every call is serialised (docs/WIFI.md, one owner).
    radio: Radio | None = None
    wifi_reason: str = ""
    demo: DemoWorld | None = None  # the simulated site, in demo mode
    journal_path: Path = field(default_factory=lambda: data_dir() / "wifi-journal.json")
    # The settings as in the settings file (a demo runs on a modified copy).
    file_settings: Settings | None = None
    _tmp: str | None = None
    _announcement: Path | None = None  # station/control.py: how the CLI finds this broker
    radios: Radios = field(default_factory=Radios)  # one owner per adapter
    # The homes' own brokers followed while the GUI runs (follow_external_brokers).
    followers: Followers | None = None

    @property
    def wifi(self) -> OwnedBackend | None:
        """The WiFi backend for every caller: owned by `radio`, so calls never overlap."""
        return self.radio.wifi if self.radio is not None else None

    @wifi.setter
    def wifi(self, backend: WifiBackend | None) -> None:
        self.radio = None if backend is None else self.radios.own(backend)

    @classmethod
    def start(
        cls,
        settings: Settings,
        *,
        db: str | None = None,
        demo_devices: int = 0,
        demo_switch_delay: float = 0.0,
        demo_timing: dict[str, int] | None = None,
        demo_reach: Iterable[str] = (),
    ) -> StationRuntime:
        """Open the registry, start the broker; in demo mode also the simulated site.

        A demo uses a registry of its own in a temporary folder unless `db` is given,
        and binds the broker to loopback on a free port: it never touches the real
        station's data or the network.
        """
        from broker import EmbeddedBroker

        tmp = None
        file_settings = settings
        demo_seed = demo_chip_seed(shared=db is not None)
        if demo_devices:
            tmp = tempfile.mkdtemp(prefix="station-demo-")
            db = db or os.path.join(tmp, "registry.sqlite3")
            # A copy: the demo's loopback broker must never be saved as the user's setting.
            settings = copy.deepcopy(settings)
            settings.broker.bind_host, settings.broker.port = "127.0.0.1", 0
        prov = settings.provisioning
        registry = Registry(
            db or settings.registry.url,
            node_name_prefix=prov.node_name_prefix,
            topic_root=prov.topic_root,
            station_id=station_id(),
        )
        broker = EmbeddedBroker(
            registry,
            settings.broker,
            reading_min_interval_s=settings.registry.reading_min_interval_s,
        )
        try:
            broker.start()
        except Exception:
            registry.close()
            raise
        rt = cls(settings, registry, broker, SecretStore(), _tmp=tmp)
        rt.file_settings = file_settings
        if not demo_devices:  # a demo's registry is its own: no CLI should act on it
            from station import control

            rt._announcement = control.announce(broker, registry.location)
        if tmp:
            rt.journal_path = Path(tmp) / "wifi-journal.json"
        if demo_devices:
            from station.sim.demo import DemoWorld

            try:
                assert tmp is not None  # made above for every demo
                rt.demo = DemoWorld(
                    demo_devices,
                    broker.port,
                    root=Path(tmp) / "site",
                    switch_delay=demo_switch_delay,
                    timing=demo_timing,
                    reach=demo_reach,
                    seed=demo_seed,
                )
                rt.demo.start()
            except Exception:
                rt.stop()
                raise
            if settings.provisioning.wifi_backend == "manual":
                # The seed's manual flow on the simulated site: the person moves the
                # simulated laptop (Air.move_laptop) when asked; its gateway comes from
                # the air as a real laptop's comes from the OS.
                from station.sim.wifi import AirGatewayLookup
                from station.wifi.manual import ManualBackend

                rt.wifi = ManualBackend(gateway_lookup=AirGatewayLookup(rt.demo.air))
                rt.wifi_reason = (
                    "manual WiFi on the demo's simulated air: you move the simulated "
                    "laptop when asked"
                )
            else:
                rt.wifi = rt.demo.wifi()
                rt.wifi_reason = "simulated air of the demo"
            home = next(
                (h for h in registry.homes() if h.wifi_ssid == rt.demo.home_ssid), None
            ) or registry.ensure_home("Demo home", rt.demo.home_ssid)
            rt.secrets.set_home_password(home.id, rt.demo.home_password)
        return rt

    def choose_wifi(self, confirm: Confirm | None = None) -> None:
        """Pick the WiFi backend by setting (auto: the best available, with a reason)."""
        if self.demo is not None:
            wifi = self.wifi
            if confirm is not None and wifi is not None and getattr(wifi, "confirm", 0) is None:
                wifi.confirm = confirm  # the demo's manual backend asks through it
            return
        from station.wifi.select import select_backend

        wanted = self.settings.provisioning.wifi_backend
        sel = select_backend(None if wanted == "auto" else wanted)
        self.wifi = sel.create(confirm=confirm)
        self.wifi_reason = sel.reason

    def broker_address(self) -> tuple[str, int]:
        """What devices are told to connect to."""
        if self.demo is not None:
            return self.demo.broker_address
        host = self.settings.broker.advertise_host
        if not host:
            from station.netinfo import lan_address

            host = lan_address()
        return host, self.broker.port

    def journal(self) -> Journal:
        from station.wifi.journal import Journal

        return Journal(self.journal_path)

    def provisioning_station(self) -> Station:
        if self.wifi is None:
            raise StationError("no WiFi backend chosen yet")
        host, port = self.broker_address()
        return Station(
            self.registry,
            self.broker,
            self.wifi,
            self.settings.provisioning,
            host,
            port,
            self.journal(),
        )

    def follow_external_brokers(self) -> Followers:
        """Follow every home's own broker from now until stop() (returns at once: the
        followers connect and retry in threads of their own, station.followers)."""
        if self.followers is None:
            from functools import partial

            from station.followers import Followers, demo_reach

            self.followers = Followers(
                self.registry,
                self.secrets,
                reading_min_interval_s=self.settings.registry.reading_min_interval_s,
                before_start=partial(demo_reach, self.demo) if self.demo is not None else None,
            )
            self.followers.start()
        return self.followers

    def stop(self) -> None:
        if self.followers is not None:
            self.followers.stop()
            self.followers = None
        # Queued WiFi work (a trip going home) ends before the simulated air goes away.
        if not self.radios.close(timeout=60.0):
            log.warning("WiFi work was still running at stop")
        if self.demo is not None:
            self.demo.stop()
            self.demo = None
        if self._announcement is not None:
            from station import control

            control.withdraw(self._announcement)
            self._announcement = None
        self.broker.stop()
        self.registry.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
