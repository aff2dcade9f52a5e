"""Manual backend: the seed's flow, for machines where no automatic WiFi control works.

The person switches networks; the station says exactly which network to join (the seed's
step 2 and step 4 texts) and waits for them to confirm. The GUI and the CLI provide the
`confirm` callback: it shows the Instruction and returns True when the person clicks the
action ("I'm Connected to Device WiFi" / "Check Device Connection"), False to cancel. It
may block as long as the person needs; cancelling is up to it.

After a confirmation the device is still checked (the probe at the device address): if it
does not answer, the seed's scenario 2 message is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station.wifi.base import (
    Availability,
    Deadline,
    HomeNetwork,
    JoinRequest,
    Network,
    ProfileCallback,
    ScanResult,
    WifiBackend,
)
from station.wifi.errors import Cancelled, WifiNotSupported, WifiUnavailable

log = logging.getLogger("station.wifi.manual")

CONNECT_ACTION = "I'm Connected to Device WiFi"  # seed, step 2
CHECK_ACTION = "Check Device Connection"  # seed, step 4


@dataclass(frozen=True)
class Instruction:
    step: int  # the seed's step: 2 (join the device) or 4 (back home)
    title: str
    text: str
    ssid: str | None
    passphrase: str | None  # the device's setup password (shown, as the seed does)
    action: str  # label of the confirming button


def connect_instruction(ssid: str, passphrase: str) -> Instruction:
    pw = f" (password: {passphrase})" if passphrase else " (no password)"
    return Instruction(
        step=2,
        title="Connect to Device",
        text=(
            f"Open this computer's WiFi settings and connect to {ssid}{pw}. "
            f"Then come back here and click “{CONNECT_ACTION}”."
        ),
        ssid=ssid,
        passphrase=passphrase,
        action=CONNECT_ACTION,
    )


def home_instruction(home: HomeNetwork | None) -> Instruction:
    name = home.ssid if home and home.ssid else None
    target = name or "your home WiFi network"
    return Instruction(
        step=4,
        title="Reconnect to Home WiFi",
        text=(
            f"Please reconnect to your home WiFi: open this computer's WiFi settings and "
            f"connect to {target}. Then come back here and click “{CHECK_ACTION}”."
        ),
        ssid=name,
        passphrase=None,
        action=CHECK_ACTION,
    )


Confirm = Callable[[Instruction], bool]


class ManualBackend(WifiBackend):
    name = "manual"
    can_scan = False

    def __init__(
        self,
        confirm: Confirm | None = None,
        *,
        device_address: str | None = None,
        gateway_lookup: Callable[[], str | None] | None = None,
        poll_interval: float = 0.5,
        **_ignored: Any,
    ):
        """`device_address`: where a device in setup mode answers (the station's setting,
        PROTOCOL.md's address); `gateway_lookup` may find it from the OS instead."""
        self.confirm = confirm
        self.device_address = device_address
        self.gateway_lookup = gateway_lookup
        self.poll_interval = poll_interval

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

    def current(self) -> Network | None:
        return None  # unknown: only the person knows

    def remember_home(self) -> HomeNetwork | None:
        return None

    def scan(self) -> list[ScanResult]:
        raise WifiNotSupported(
            "With manual WiFi switching the station cannot scan: enter the "
            "device's network name (printed on the device or its box)."
        )

    def _join(self, req: JoinRequest, deadline: Deadline, on_profile: ProfileCallback) -> None:
        if not self._ask(connect_instruction(req.ssid, req.passphrase)):
            raise Cancelled(f"Cancelled: not connected to {req.ssid}.")
        if self.device_address is None and self.gateway_lookup is None:
            raise WifiUnavailable("The manual WiFi backend needs the device address setting.")
        # The person took their time; the timeout applies from their confirmation on.
        deadline.restart()
        return None

    def _gateway(self) -> str | None:
        if self.gateway_lookup is not None:
            gw = self.gateway_lookup()
            if gw:
                return gw
        return self.device_address

    def return_home(self, home: HomeNetwork | None, *, timeout: float = 30.0) -> None:
        if not self._ask(home_instruction(home)):
            log.warning(
                "the user did not confirm being back on %s",
                home.describe() if home else "the home network",
            )

    def remove_profile(self, profile: str) -> None:
        pass  # the person's OS keeps whatever they joined; nothing of ours to delete
