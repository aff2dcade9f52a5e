"""One device through the seed's steps, with the station as both the app and the backend.

    prov = Provisioner(station, listener)
    ticket = prov.prepare(target, home, name="Hall")        # step 1 (20 -> 40 %)
    with Excursion(station.wifi, station.journal) as trip:
        prov.configure(trip, ticket, home_password)         # steps 2-3 (40 -> 80 %)
    prov.wait_online([ticket])                              # step 4 (80 -> 100 %)

The bulk queue (station.provisioning.queue) runs the same methods for many devices,
configuring several before it goes home once. Every step's duration and any error
go into the device's ProvisioningJob.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import peewee

from station.errors import StationError
from station.provisioning.events import Listener, Progress
from station.provisioning.steps import PROGRESS
from station.registry import Device, Home, ProvisioningJob, Registry, RegistryError
from station.registry.models import utcnow
from station.registry.status import Status, Step
from station.settings import ProvisioningSettings
from station.wifi.base import Link, WifiBackend
from station.wifi.errors import Cancelled, WifiError
from station.wifi.guard import Excursion
from station.wifi.journal import Journal

if TYPE_CHECKING:
    from station.device_client import DeviceInfo, HeardNetwork, TrialStatus
    from station.registry.tracking import DeviceUpdate

log = logging.getLogger(__name__)

CHIP_SUFFIX_RE = re.compile(r"-([0-9A-F]{6})$")


class ProvisioningError(StationError):
    """A step failed; `step` says which, the message what to do next."""

    def __init__(self, message: str, step: Step) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True)
class SetupTarget:
    """A device's setup AP as found by a scan (or typed in)."""

    ssid: str
    bssid: str | None = None
    signal_dbm: int | None = None

    @property
    def chip_suffix(self) -> str | None:
        m = CHIP_SUFFIX_RE.search(self.ssid)
        return m.group(1) if m else None


def is_setup_ap(ssid: str, prefix: str) -> bool:
    """`esp32-dht11-Setup-XXXXXX`, or the seed's plain `esp32-dht11-Setup`."""
    return ssid == prefix or (ssid.startswith(prefix + "-") and len(ssid) == len(prefix) + 7)


class BrokerLink(Protocol):
    """What the flow needs of the broker (broker.EmbeddedBroker, or a test's stand-in)."""

    def device_registered(self, device: Device, token: str | None = None) -> None:
        """A device was issued `token` (its clear text, for a broker that needs it to make
        the login: an external Mosquitto; the embedded broker reads the hash)."""

    def device_removed(self, device: Device) -> None: ...

    def add_listener(self, listener: Callable[[DeviceUpdate], None]) -> None: ...

    def remove_listener(self, listener: Callable[[DeviceUpdate], None]) -> None: ...


class SetupClient(Protocol):
    """What the flow needs of the device's setup API (station.device_client.DeviceClient)."""

    def info(self) -> DeviceInfo: ...

    def scan(self) -> list[HeardNetwork]: ...

    def send_wifi(self, ssid: str, password: str) -> None: ...

    def send_mqtt(
        self,
        broker: str,
        port: int,
        topic_prefix: str,
        node_name: str,
        username: str | None = None,
        password: str | None = None,
        *,
        ca: str | None = None,
    ) -> None: ...

    def wait_for_trial(
        self,
        timeout: float,
        poll: float = 0.5,
        cancel: threading.Event | None = None,
        *,
        broker: bool | None = None,
    ) -> TrialStatus: ...

    def restart(self, *, confirm_timeout: float = 5.0) -> None: ...


@dataclass
class Station:
    """What a provisioning run needs; built once by the CLI or GUI."""

    registry: Registry
    broker: BrokerLink
    wifi: WifiBackend
    settings: ProvisioningSettings
    broker_host: str  # the address devices are told to use (the laptop on the home LAN)
    broker_port: int
    journal: Journal | None = None
    # (base URL, ap_ssid=...) -> client; default DeviceClient
    client_factory: Callable[..., SetupClient] | None = None
    # A TLS broker's CA certificate (PEM): devices are told `tls` and given it.
    broker_ca: str | None = None

    def client(self, link: Link, ap_ssid: str) -> SetupClient:
        from station.device_client import DeviceClient

        factory = self.client_factory or DeviceClient
        host, port = link.device.host, link.device.port
        base = f"http://{host}" + (f":{port}" if port else "")
        return factory(base, ap_ssid=ap_ssid)


@dataclass
class Ticket:
    """One device in flight. The token lives only here (and hashed in the registry)."""

    job: ProvisioningJob
    device: Device
    # None for a resumed job: a wait needs none; a configuration gets a fresh one.
    token: str | None
    target: SetupTarget
    restarted_at: float | None = None  # monotonic time the device was told to restart
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def pid(self) -> str:
        return self.job.provisioning_id


class Provisioner:
    def __init__(
        self,
        station: Station,
        listener: Listener | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.station = station
        self.listener = listener
        self.cancel = cancel or threading.Event()

    # -- reporting -------------------------------------------------------------------

    def _report(
        self,
        ticket: Ticket,
        step: Step,
        status: Status,
        message: str,
        progress: int | None = None,
        error: str | None = None,
    ) -> None:
        pct = PROGRESS[step][0] if progress is None else progress
        fields: dict[str, Any] = {
            "step": step,
            "progress": pct,
            "status": status,
            "error": error,
            "timings": dict(ticket.timings),
        }
        self.station.registry.update_job(ticket.job, **fields)
        if self.listener is not None:
            self.listener(
                Progress(
                    ticket.pid,
                    ticket.device.node_name,
                    ticket.target.ssid,
                    step,
                    pct,
                    status,
                    message,
                    error,
                )
            )

    def _fail(self, ticket: Ticket, step: Step, error: str) -> ProvisioningError:
        self.station.registry.update_job(ticket.job, attempts=ticket.job.attempts + 1)
        self._report(ticket, step, Status.FAILED, f"{step.value} failed", error=error)
        self.station.registry.log_event(
            ticket.device,
            "provisioning_failed",
            error,
            {"step": str(step), "ap": ticket.target.ssid},
        )
        return ProvisioningError(error, step)

    # -- step 1 ----------------------------------------------------------------------

    def prepare(self, target: SetupTarget, home: Home | None, name: str = "") -> Ticket:
        """Register the device and allocate its node name, topic and token (20 -> 40 %)."""
        started = time.monotonic()
        try:
            issued = self.station.registry.register_device(
                home=home, name=name, ap_ssid=target.ssid, ap_bssid=target.bssid
            )
        except peewee.DatabaseError as exc:
            # The seed's scenario 1 ("Cannot reach server"): here the backend is the
            # station's own registry. Nothing was written (one transaction).
            raise ProvisioningError(
                f"Cannot reach the device registry ({self.station.registry.location}): "
                f"{exc}. Check the database setting (--db) and that the disk is writable; "
                "nothing was changed.",
                Step.PREPARE,
            ) from exc
        self.station.broker.device_registered(issued.device, issued.token)
        ticket = Ticket(issued.job, issued.device, issued.token, target)
        ticket.timings[Step.PREPARE] = round(time.monotonic() - started, 3)
        self._report(
            ticket,
            Step.PREPARE,
            Status.REGISTERED,
            f"registered as {issued.device.node_name}",
            progress=40,
        )
        return ticket

    def reuse(self, device: Device, target: SetupTarget, home: Home | None) -> Ticket:
        """Step 1 for a device already in the registry (a rerun, or re-provisioning):
        its job is reopened or a new one opened, over `target`, with a fresh token;
        node name and topic prefix stay (20 -> 40 %)."""
        started = time.monotonic()
        try:
            job = self.station.registry.reprovision(
                device, home=home, ap_ssid=target.ssid, ap_bssid=target.bssid
            )
        except peewee.DatabaseError as exc:
            raise ProvisioningError(
                f"Cannot reach the device registry ({self.station.registry.location}): "
                f"{exc}. Check the database setting (--db) and that the disk is writable; "
                "nothing was changed.",
                Step.PREPARE,
            ) from exc
        if target.chip_suffix:
            for orphan in self.station.registry.drop_orphans(device, target.ssid):
                self.station.broker.device_removed(orphan)
        ticket = self.resume(job)
        ticket.timings[Step.PREPARE] = round(time.monotonic() - started, 3)
        self._report(
            ticket,
            Step.PREPARE,
            Status.REGISTERED,
            f"already registered as {device.node_name}: configuring it again",
            progress=40,
        )
        return ticket

    def resume(self, job: ProvisioningJob) -> Ticket:
        """A ticket for a job from the registry (after a crash, a retry, a rerun).

        A device already told to restart (WAITING) keeps the token it has. Any other is
        given a fresh token when it is configured again (`send_configuration`, once its
        setup AP has answered), so a token that may have been sent before stops working,
        while a device that never turns out to be in setup mode keeps a working one.
        """
        return Ticket(
            job,
            job.device,
            None,
            SetupTarget(job.ap_ssid or "", job.ap_bssid),
            timings=dict(job.timings or {}),
            restarted_at=time.monotonic() if job.status == Status.WAITING else None,
        )

    # -- steps 2 and 3 -----------------------------------------------------------------

    def configure(
        self, trip: Excursion, ticket: Ticket, home_ssid: str, home_password: str
    ) -> None:
        """Join the device's AP, send WiFi and MQTT settings, restart it (40 -> 80 %).

        A wrong home password is reported here, before leaving the AP: the device tries
        the home network while keeping its AP up and /api/status tells the result.
        """
        link = self.connect(trip, ticket)
        self.send_configuration(ticket, link, home_ssid, home_password)

    def connect(self, trip: Excursion, ticket: Ticket) -> Link:
        """Step 2 alone: join the device's setup AP (40 -> 60 %).

        The single-device wizard runs steps 2 and 3 as separate screens, as the seed does.
        """
        s = self.station
        ap = ticket.target.ssid
        if not ap:
            raise self._fail(
                ticket,
                Step.CONNECT,
                f"The setup network of {ticket.device.node_name} is not known yet: put the "
                "device in setup mode, scan, and provision it from the scan.",
            )
        self._report(ticket, Step.CONNECT, Status.RUNNING, f"joining {ap}")
        started = time.monotonic()
        try:
            link = trip.connect(
                ap,
                s.settings.setup_passphrase,
                bssid=ticket.target.bssid,
                timeout=s.settings.wifi_connect_timeout_s,
            )
        except Cancelled:
            raise
        except WifiError as exc:
            raise self._fail(ticket, Step.CONNECT, f"Cannot join {ap}: {exc}") from exc
        ticket.timings[Step.CONNECT] = round(time.monotonic() - started, 3)
        self._report(ticket, Step.CONNECT, Status.RUNNING, f"joined {ap}", progress=60)
        return link

    def send_configuration(
        self, ticket: Ticket, link: Link, home_ssid: str, home_password: str
    ) -> None:
        """Step 3 alone, on the device's AP: settings, trial result, restart (60 -> 80 %).

        A wrong home password fails here with the device still in setup mode, so it may
        be called again on the same link with the right one.
        """
        s = self.station
        started = time.monotonic()
        if ticket.token is None:
            # Configured again (resumed, retried, rerun): the device is in setup mode on
            # this link, so the token it may hold is replaced now.
            ticket.token = s.registry.rotate_token(ticket.device)
            s.broker.device_registered(ticket.device, ticket.token)
        client = s.client(link, ticket.target.ssid)
        try:
            self._configure(ticket, client, home_ssid, home_password)
        except ProvisioningError:
            raise
        except StationError as exc:
            if self.cancel.is_set():
                raise Cancelled("Provisioning cancelled.") from exc
            raise self._fail(ticket, Step.CONFIGURE, str(exc)) from exc
        ticket.timings[Step.CONFIGURE] = round(time.monotonic() - started, 3)
        ticket.restarted_at = time.monotonic()
        self._report(
            ticket,
            Step.RECONNECT,
            Status.WAITING,
            "configured and restarting; waiting for it on the broker",
            progress=80,
        )

    def _configure(
        self, ticket: Ticket, client: SetupClient, home_ssid: str, home_password: str
    ) -> None:
        s = self.station
        info = client.info()
        self._check_cancel()
        self._adopt_known_chip(ticket, info.chip_id)
        s.registry.set_chip_id(
            ticket.device, info.chip_id, model=info.model, firmware=info.firmware, mac=info.mac
        )
        self._report(
            ticket,
            Step.CONFIGURE,
            Status.RUNNING,
            f"device {info.chip_id} found; sending WiFi settings",
            progress=65,
        )
        client.send_wifi(home_ssid, home_password)
        # The MQTT settings go while the device tries the home network (its trial runs
        # in the background), so the trial costs no extra time on this AP.
        tls = {"ca": s.broker_ca} if s.broker_ca else {}  # the seed's body otherwise
        client.send_mqtt(
            s.broker_host,
            s.broker_port,
            ticket.device.topic_prefix,
            ticket.device.node_name,
            ticket.device.mqtt_username,
            ticket.token,
            **tls,
        )
        self._report(
            ticket,
            Step.CONFIGURE,
            Status.RUNNING,
            f"settings sent; device is trying {home_ssid}",
            progress=70,
        )
        # The result comes before the laptop leaves the AP, so a wrong password is
        # reported now. The broker is not checked: it is this laptop, away right now.
        trial = client.wait_for_trial(
            timeout=s.settings.wifi_connect_timeout_s, cancel=self.cancel, broker=False
        )
        self._check_cancel()
        client.restart()
        s.registry.log_event(
            ticket.device,
            "configured",
            f"configured over {ticket.target.ssid} (device IP "
            f"{getattr(trial, 'ip', None) or 'unknown'}); restarting",
        )
        self._report(ticket, Step.CONFIGURE, Status.RUNNING, "restarting the device", progress=80)

    def _adopt_known_chip(self, ticket: Ticket, chip_id: str) -> None:
        """The chip answering on this AP may already be registered under another entry
        (a rerun whose scan told nothing apart before /api/info). Then that entry is
        configured again (its node name and topic, a fresh token) and the new entry
        is dropped; a chip registered to an entry that is not new stays an error."""
        s = self.station
        try:
            known = s.registry.device(chip_id)
        except RegistryError:
            return
        if known.id == ticket.device.id:
            return
        dropped = s.registry.move_job(ticket.job, known)
        s.broker.device_removed(dropped)
        ticket.device = ticket.job.device
        ticket.token = s.registry.rotate_token(ticket.device)
        s.broker.device_registered(ticket.device, ticket.token)
        self._report(
            ticket,
            Step.CONFIGURE,
            Status.RUNNING,
            f"chip {chip_id} is already registered as {ticket.device.node_name}: "
            f"configuring that entry again ({dropped.node_name} dropped)",
            progress=62,
        )

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("Provisioning cancelled.")

    # -- step 4 ----------------------------------------------------------------------

    def wait_online(
        self, tickets: list[Ticket], timeout: float | None = None, poll: float = 0.25
    ) -> dict[str, bool]:
        """Wait until each device's first `online` reaches the broker (80 -> 100 %).

        The seed's 60 s poll timeout counts from when the laptop is back home (devices
        cannot reach the station's broker before that). A device that misses it is
        marked failed with a retry hint; if it connects later the registry still marks
        it provisioned (the seed: "device may still connect in background").
        """
        timeout = self.station.settings.online_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        waiting = {t.pid: t for t in tickets}
        result: dict[str, bool] = {}
        wake = threading.Event()

        def on_update(update: DeviceUpdate) -> None:
            if update.kind == "online":
                wake.set()

        self.station.broker.add_listener(on_update)
        try:
            while waiting:
                for pid, ticket in list(waiting.items()):
                    job = self.station.registry.job(pid)
                    if job is not None and job.is_provisioned:
                        ticket.job = job
                        self._complete(ticket)
                        result[pid] = True
                        del waiting[pid]
                if not waiting or self.cancel.is_set() or time.monotonic() >= deadline:
                    break
                wake.wait(poll)
                wake.clear()
        finally:
            self.station.broker.remove_listener(on_update)
        for pid, ticket in waiting.items():
            result[pid] = False
            if self.cancel.is_set():
                self._report(
                    ticket,
                    Step.RECONNECT,
                    Status.WAITING,
                    "stopped waiting (cancelled); it may still come online",
                    progress=80,
                )
                continue
            self._fail(
                ticket,
                Step.RECONNECT,
                f"{ticket.device.node_name} did not come online within "
                f"{timeout:.0f} s. It may still connect in the background; check "
                "that the home WiFi reaches this computer, then retry.",
            )
        return result

    def _complete(self, ticket: Ticket) -> None:
        if ticket.restarted_at is not None:
            ticket.timings[Step.RECONNECT] = round(time.monotonic() - ticket.restarted_at, 3)
        self.station.registry.update_job(
            ticket.job,
            timings=dict(ticket.timings),
            connected_at=ticket.job.connected_at or utcnow(),
        )
        if self.listener is not None:
            self.listener(
                Progress(
                    ticket.pid,
                    ticket.device.node_name,
                    ticket.target.ssid,
                    Step.COMPLETE,
                    100,
                    Status.DONE,
                    f"{ticket.device.node_name} is online",
                )
            )
