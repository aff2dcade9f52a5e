"""Manual backend: the seed's flow, for machines where no automatic WiFi control works.

The person switches networks; the station says exactly which network to join (the seed's
step 2 and step 4 texts) and waits for them to confirm. The GUI and the CLI provide the
`confirm` callback: it shows the Instruction and returns True when the person clicks the
action ("I'm Connected to Device WiFi" / "Check Device Connection"), False to cancel. It
may block as long as the person needs; cancelling is up to it.

Where the device answers: the gateway of the network the person joined, asked of the OS
(`station.netinfo.default_gateway`: /proc/net/route or `ip route`, `route -n get default`,
`route print`/`ipconfig`), or the seed's 192.168.4.1 when the OS cannot tell. A
`gateway_lookup` may be passed instead (the simulated air's, in the demo); a fixed
`device_address` wins over both.

After a confirmation the device is checked (GET /api/info at that address answers with a
chip id). If it does not answer, the person is asked again with the seed's scenario 2
message in front ("Cannot reach device. Make sure you're connected to ..."); after
`max_asks` confirmations without a device, that message is raised.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from station.wifi.base import (
    Availability,
    Deadline,
    DeviceAddress,
    HomeNetwork,
    JoinRequest,
    Link,
    Network,
    Probe,
    ProfileCallback,
    ScanResult,
    WifiBackend,
    validate,
)
from station.wifi.errors import (
    Cancelled,
    DeviceUnreachable,
    NoAddress,
    WifiNotSupported,
    WifiUnavailable,
)

log = logging.getLogger("station.wifi.manual")

CONNECT_ACTION = "I'm Connected to Device WiFi"  # seed, step 2
CHECK_ACTION = "Check Device Connection"  # seed, step 4
SEED_DEVICE_HOST = "192.168.4.1"  # the seed / PROTOCOL.md section 1


@dataclass(frozen=True)
class Instruction:
    step: int  # the seed's step: 2 (join the device) or 4 (back home)
    title: str
    text: str
    ssid: str | None
    passphrase: str | None  # the device's setup password (shown, as the seed does)
    action: str  # label of the confirming button
    problem: str | None = None  # why the person is asked again (already in `text`)


def connect_instruction(ssid: str, passphrase: str, problem: str | None = None) -> Instruction:
    pw = f" (password: {passphrase})" if passphrase else " (no password)"
    text = (
        f"Open this computer's WiFi settings and connect to {ssid}{pw}. "
        f"Then come back here and click “{CONNECT_ACTION}”."
    )
    return Instruction(
        step=2,
        title="Connect to Device",
        text=f"{problem} {text}" if problem else text,
        ssid=ssid,
        passphrase=passphrase,
        action=CONNECT_ACTION,
        problem=problem,
    )


def home_instruction(home: HomeNetwork | None, problem: str | None = None) -> Instruction:
    name = home.ssid if home and home.ssid else None
    target = name or "your home WiFi network"
    text = (
        f"Please reconnect to your home WiFi: open this computer's WiFi settings and "
        f"connect to {target}. Then come back here and click “{CHECK_ACTION}”."
    )
    return Instruction(
        step=4,
        title="Reconnect to Home WiFi",
        text=f"{text} ({problem})" if problem else text,
        ssid=name,
        passphrase=None,
        action=CHECK_ACTION,
        problem=problem,
    )


Confirm = Callable[[Instruction], bool]


class GatewayLookup(Protocol):
    """Where the network this computer is on has its gateway: a host (the OS's answer), a
    DeviceAddress (a simulated site knows the device's port too), or None (cannot tell)."""

    def __call__(self) -> DeviceAddress | str | None: ...


def os_gateway() -> str | None:
    from station.netinfo import default_gateway

    return default_gateway()


class ManualBackend(WifiBackend):
    name = "manual"
    can_scan = False

    def __init__(
        self,
        confirm: Confirm | None = None,
        *,
        device_address: str | None = None,
        gateway_lookup: GatewayLookup | None = None,
        probe: Probe | None = None,
        check_timeout: float = 10.0,
        max_asks: int = 3,
        poll_interval: float = 0.5,
    ):
        """`device_address`: a fixed address where devices in setup mode answer (overrides
        the lookup); `gateway_lookup`: how to find the joined network's gateway (default:
        ask the OS); `probe`: does the device answer there (default: GET /api/info);
        `check_timeout`: how long to look for the device after each confirmation."""
        self.confirm = confirm
        self.device_address = device_address
        self.gateway_lookup: GatewayLookup = gateway_lookup or os_gateway
        self.probe = probe
        self.check_timeout = check_timeout
        self.max_asks = max(1, max_asks)
        self.poll_interval = poll_interval
        self._last_ssid: str | None = None  # the device network the person was sent to
        # The home network to send the person back to when the station cannot read the
        # current one (it never can here): the CLI and the wizard set the home's SSID.
        self.usual_home: str | None = None
        self._looks = 0  # gateway lookups so far (alternating with 192.168.4.1)

    @classmethod
    def availability(cls, system: str, **options: Any) -> Availability:
        return Availability(True, "you switch WiFi networks by hand when the station asks")

    def _ask(self, instruction: Instruction) -> bool:
        if self.confirm is None:
            raise WifiUnavailable(
                "The manual WiFi backend needs a way to ask the user "
                "(the GUI or the CLI provides it)."
            )
        log.info("asking the user: %s", instruction.text)
        return bool(self.confirm(instruction))

    def _device_probe(self) -> Probe:
        if self.probe is None:
            from station.wifi.probe import http_json_probe

            self.probe = http_json_probe()
        return self.probe

    def current(self) -> Network | None:
        return None  # unknown: only the person knows

    def remember_home(self) -> HomeNetwork | None:
        return HomeNetwork(ssid=self.usual_home) if self.usual_home else None

    def scan(self) -> list[ScanResult]:
        raise WifiNotSupported(
            "With manual WiFi switching the station cannot scan: enter the "
            "device's network name (printed on the device or its box)."
        )

    def connect(
        self,
        ssid: str,
        passphrase: str,
        *,
        bssid: str | None = None,
        timeout: float = 30.0,
        probe: Probe | None = None,
        cancel: threading.Event | None = None,
        on_profile: ProfileCallback | None = None,
    ) -> Link:
        """Ask the person to join `ssid`, then look for the device at the gateway; if it
        does not answer, ask again with the seed's "Cannot reach device" in front."""
        bssid = validate(ssid, passphrase, bssid)
        if bssid:
            log.info("the person joins '%s' by name; the BSSID cannot be pinned", ssid)
        probe = probe or self._device_probe()
        req = JoinRequest(ssid=ssid, passphrase=passphrase, bssid=bssid)
        self._last_ssid = ssid
        problem: str | None = None
        for attempt in range(1, self.max_asks + 1):
            Deadline(timeout, cancel).check()
            self._join(req, Deadline(timeout, cancel), lambda _p: None, problem)
            # The person took their time; the check's timeout runs from their confirmation.
            deadline = Deadline(min(timeout, self.check_timeout), cancel)
            try:
                device = self._wait_for_device(ssid, deadline, probe)
            except (DeviceUnreachable, NoAddress) as exc:
                if attempt == self.max_asks:
                    raise
                problem = str(exc)
                log.info("device not found after confirmation %d: %s", attempt, problem)
                continue
            log.info("on '%s'; device address %s", ssid, device.host)
            return Link(ssid=ssid, bssid=bssid, device=device, profile=None, seconds=0.0)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _join(
        self,
        req: JoinRequest,
        deadline: Deadline,
        on_profile: ProfileCallback,
        problem: str | None = None,
    ) -> None:
        if not self._ask(connect_instruction(req.ssid, req.passphrase, problem)):
            raise Cancelled(f"Cancelled: not connected to {req.ssid}.")
        deadline.check()

    def _device_address(self) -> DeviceAddress | None:
        if self.device_address:
            return DeviceAddress(self.device_address)
        try:
            found = self.gateway_lookup()
        except Exception:  # the lookup asks the OS; a failure means "cannot tell"
            log.debug("gateway lookup failed", exc_info=True)
            found = None
        if isinstance(found, DeviceAddress):
            return found  # a simulated site knows exactly where the device is
        if found and found != SEED_DEVICE_HOST:
            # The OS's default route may run over another adapter (Ethernet) while WiFi
            # is on the device's network: every other look tries the seed's address.
            self._looks += 1
            if self._looks % 2 == 0:
                return DeviceAddress(SEED_DEVICE_HOST)
        return DeviceAddress(found or SEED_DEVICE_HOST)

    def _gateway(self) -> str | None:
        addr = self._device_address()
        return addr.host if addr else None

    def _still_on_device(self) -> bool:
        addr = self._device_address()
        if addr is None:
            return False
        try:
            return bool(self._device_probe()(addr))
        except Exception:
            return False

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        problem: str | None = None
        for attempt in range(1, self.max_asks + 1):
            if not self._ask(home_instruction(home, problem)):
                log.warning(
                    "the user did not confirm being back on %s",
                    home.describe() if home else "the home network",
                )
                return
            if attempt == self.max_asks or not self._still_on_device():
                return
            # A device still answers at the gateway: the person is on its network.
            problem = (
                f"this computer still reaches the device on {self._last_ssid or 'its network'}"
            )

    def remove_profile(self, profile: str) -> None:
        pass  # the person's OS keeps whatever they joined; nothing of ours to delete
