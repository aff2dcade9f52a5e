"""One verified firmware update on a running station (docs/OTA.md): the bundle built
and served where the devices reach it, the staged rollout run, each device confirmed
only by the version it reports over MQTT. Qt-free: `station fleet update` and the
GUI's "Update firmware" both drive it (from a worker thread: prepare() and run() block).

    update = FirmwareUpdate(runtime, ["esp32_dht11_001", "esp32_dht11_002"])
    update.prepare()                  # builds 1.0.1 (the next version), serves it
    result = update.run()             # canary, then the rest; blocks until all are final
    update.close()

What it refuses, in one line each (StationError): an unknown device, a device of no
home or of a home whose broker cannot be reached, no device online, a version that is
not dotted numbers, every device already on it. A device already running the version
is left out (`already`), not updated again: the update it asks for is done.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from station.errors import StationError
from station.fleet.bundle import MANIFEST, Bundle, make_bundle, make_crashing_bundle
from station.fleet.bundle_server import BundleServer
from station.fleet.link import StationFleet, home_links
from station.fleet.rollout import (
    DeviceProgress,
    FirmwareChange,
    Phase,
    Rollout,
    RolloutResult,
    Stages,
)
from station.sim import firmware

if TYPE_CHECKING:
    from station.external_broker import ExternalBroker
    from station.runtime import StationRuntime

log = logging.getLogger(__name__)

_NUMBERS = re.compile(r"\d+(\.\d+)*")


def version_key(version: str | None) -> tuple[int, ...]:
    """Dotted numbers compared as numbers (1.0.10 after 1.0.9); a tag is ignored."""
    found = _NUMBERS.match(version or "")
    return tuple(int(p) for p in found.group(0).split(".")) if found else ()


def next_version(versions: Sequence[str | None]) -> str:
    """The next patch version after the newest of `versions` (1.0.0 → 1.0.1); 1.0.1
    when none is known (the sources' version is the factory one)."""
    newest = max((version_key(v) for v in versions), default=())
    if not newest:
        newest = version_key(firmware.source_version())
    parts = list(newest) + [0] * (3 - len(newest))
    parts[-1] += 1
    return ".".join(str(p) for p in parts)


class FirmwareUpdate:
    def __init__(
        self,
        runtime: StationRuntime,
        nodes: Sequence[str],
        *,
        version: str | None = None,
        bundle: Bundle | None = None,
        canary: int = 1,
        concurrency: int = 4,
        max_failures: int = 0,
        device_timeout_s: float = 300.0,
        on_progress: Callable[[DeviceProgress], None] | None = None,
        bad_bundle: bool = False,
    ) -> None:
        """`bad_bundle`: roll out station.fleet.bundle.make_crashing_bundle's firmware
        instead (demos and tests: the canary must roll back and the rollout stop)."""
        self.runtime = runtime
        registry = runtime.registry
        devices = [registry.device(n) for n in dict.fromkeys(nodes)]
        if not devices:
            raise StationError("no device to update: name at least one")
        if bundle is not None and version is not None and version != bundle.version:
            raise StationError(f"the bundle holds version {bundle.version}, not {version}")
        self.version = (
            bundle.version
            if bundle is not None
            else version or next_version([d.firmware for d in devices])
        )
        firmware.check_version(self.version)
        self.bundle = bundle
        self.bad_bundle = bad_bundle
        # What each device ran before (the final table's "from" column).
        self.previous: dict[str, str | None] = {d.node_name: d.firmware for d in devices}
        self.already = [d.node_name for d in devices if d.firmware == self.version]
        self.nodes = [d.node_name for d in devices if d.firmware != self.version]
        if not self.nodes:
            raise StationError(f"every device named already runs firmware {self.version}")
        self.stages = Stages(canary, concurrency, max_failures, device_timeout_s)
        self.on_progress = on_progress
        self._owned: list[ExternalBroker] = []
        self._server: BundleServer | None = None
        self._tmp: str | None = None
        self._rollout: Rollout | None = None
        self._paused = False
        self._cancelled = False
        self.url = ""
        try:
            links = home_links(
                runtime, [d for d in devices if d.node_name in self.nodes], self._owned
            )
        except StationError:
            self.close()
            raise
        self.fleet = StationFleet(registry, links)
        if not any(self.fleet.is_online(n) for n in self.nodes):
            self.close()
            raise StationError("none of these devices is online now: nothing to update")

    # -- what the GUI and the CLI show -----------------------------------------------------

    @property
    def devices(self) -> dict[str, DeviceProgress]:
        if self._rollout is not None:
            return self._rollout.devices
        return {n: DeviceProgress(n) for n in self.nodes}

    # -- the steps ---------------------------------------------------------------------------

    def prepare(self) -> Bundle:
        """Build the bundle (unless one was given) and serve it where the devices reach
        it: seconds of work, call it off the GUI thread."""
        if self._rollout is not None:
            assert self.bundle is not None
            return self.bundle
        rt = self.runtime
        demo = rt.demo
        if self.bundle is None or self.bad_bundle:
            self._tmp = tempfile.mkdtemp(prefix="station-bundle-")
            make = make_crashing_bundle if self.bad_bundle else make_bundle
            self.bundle = make(
                Path(self._tmp),
                version=self.version,
                # The demo's devices are the unix port's; they run the seed's passphrase.
                board="host" if demo is not None else "esp32",
                ap_passphrase=firmware.DEFAULT_PASSPHRASE
                if demo is not None
                else rt.settings.provisioning.setup_passphrase,
            )
        if demo is not None:
            # On the simulated site the server is on loopback; the home network maps the
            # laptop's address to it, and only while the laptop is home (as a real one).
            server = BundleServer(self.bundle, "127.0.0.1", 0).start()
            host = demo.broker_address[0]
            port = server.address[1]
            _demo_reach(rt, f"{host}:{port}", f"127.0.0.1:{port}")
        else:
            host = rt.broker_address()[0]  # the laptop's address on the home LAN
            wanted = rt.settings.broker.bundle_port
            try:
                server = BundleServer(self.bundle, host, wanted).start()
            except OSError as exc:
                raise StationError(
                    f"cannot serve the firmware on {host}:{wanted or 'a free port'}: "
                    f"{exc.strerror or exc} (setting broker.bundle_port)"
                ) from None
            port = server.address[1]
        self._server = server
        self.url = f"http://{host}:{port}/{self.bundle.digest}/{MANIFEST}"
        change = FirmwareChange(self.version, self.url, self.bundle.digest)
        self._rollout = self.stages.rollout(self.nodes, change, self.fleet, self.on_progress)
        if self._paused:
            self._rollout.pause()
        if self._cancelled:
            self._rollout.cancel()
        self.fleet.watch(self._rollout.observe)
        log.info(
            "firmware %s (%d files, %d bytes) served at %s",
            self.version,
            len(self.bundle.manifest["files"]),
            self.bundle.size,
            self.url,
        )
        return self.bundle

    def run(self) -> RolloutResult:
        """The rollout, start to end (blocks); each device's outcome goes into its history."""
        self.prepare()
        assert self._rollout is not None
        result = self._rollout.run()
        registry = self.runtime.registry
        for dev in result.devices:
            try:
                device = registry.device(dev.node)
            except StationError:  # removed meanwhile
                continue
            registry.log_event(
                device,
                "firmware_update",
                f"firmware {self.version}: {dev.phase}"
                + (f" ({dev.reason})" if dev.reason else ""),
                {
                    "version": self.version,
                    "from": self.previous.get(dev.node),
                    "phase": str(dev.phase),
                    "reason": dev.reason,
                    "canary": dev.canary,
                    "timings": dev.timings,
                },
            )
        return result

    def pause(self) -> None:
        self._paused = True
        if self._rollout is not None:
            self._rollout.pause()

    def resume(self) -> None:
        self._paused = False
        if self._rollout is not None:
            self._rollout.resume()

    def cancel(self) -> None:
        self._cancelled = True
        if self._rollout is not None:
            self._rollout.cancel()

    def abandon(self, reason: str = "the station stopped before it confirmed") -> None:
        """Make a running run() return now (the window closes): see Rollout.abandon."""
        self._cancelled = True
        if self._rollout is not None:
            self._rollout.abandon(reason)

    def close(self) -> None:
        """Stop serving, stop listening, stop the brokers started here; idempotent."""
        if getattr(self, "fleet", None) is not None:
            self.fleet.close()
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        for ext in self._owned:
            ext.stop()
        self._owned.clear()
        tmp, self._tmp = self._tmp, None
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> FirmwareUpdate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _demo_reach(rt: StationRuntime, dest: str, target: str) -> None:
    """The demo's home network reaches `dest` (the laptop's address) at `target`, while
    the laptop is home, as it reaches the station's broker."""
    demo = rt.demo
    assert demo is not None
    try:
        demo.air.extend_reach(demo.home_ssid, {dest: target}, laptop=[dest])
    except ValueError as exc:
        raise StationError(f"the demo's home network: {exc}") from None


__all__ = ["FirmwareUpdate", "Phase", "next_version", "version_key"]
