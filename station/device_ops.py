"""What a person can do to a device once it is registered: send it a command, remove it,
re-provision it. Qt-free: the GUI's detail panel (station/ui/device_detail.py) and the
CLI (`station devices remove|command`) both call these, so both do exactly the same
thing, with the same checks and the same audit events.

    ops = DeviceOps(runtime.registry, runtime.broker)
    ops.send("esp32_dht11_001", "set_interval", value=30)
    ops.remove("esp32_dht11_002")           # login revoked, HA discovery cleared
    ops.reprovision("esp32_dht11_003")      # factory reset + a new job for the queue
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from station import commands
from station.errors import StationError
from station.registry import Device, ProvisioningJob, Registry

log = logging.getLogger(__name__)

# Home Assistant discovery: homeassistant/<component>/<node_id>_<object>/config
# (PROTOCOL.md section 2; the device publishes its own, retained).
DISCOVERY_FILTER = "homeassistant/+/+/config"


class Broker(Protocol):
    """What device operations need of a broker (the embedded one implements it)."""

    def send_command(self, device: Device, command: dict[str, Any]) -> None: ...

    def device_registered(self, device: Device, token: str | None = None) -> None: ...

    def device_removed(self, device: Device) -> None: ...

    def retained_topics(self, topic_filter: str) -> list[str]: ...

    def clear_retained(self, topics: list[str]) -> list[str]: ...


@dataclass(frozen=True)
class Removal:
    node_name: str
    label: str  # "Living Room Sensor (esp32_dht11_001)" or the node name
    cleared: tuple[str, ...]  # retained topics cleared on the broker


@dataclass(frozen=True)
class Reprovision:
    node_name: str
    job: ProvisioningJob
    reset_sent: bool  # False: the device was offline, it must be factory-reset by hand


def device_topics(device: Device, retained: list[str]) -> list[str]:
    """The device's own retained topics among `retained`: everything under its prefix
    and its Home Assistant discovery documents (object ids `<node_name>_<x>`)."""
    own = []
    for topic in retained:
        if topic.startswith(device.topic_prefix + "/"):
            own.append(topic)
            continue
        parts = topic.split("/")
        if (
            len(parts) == 4
            and (parts[0], parts[3]) == ("homeassistant", "config")
            and parts[2].startswith(device.node_name + "_")
        ):
            own.append(topic)
    return own


def label(device: Device) -> str:
    return f"{device.name} ({device.node_name})" if device.name else device.node_name


class DeviceOps:
    def __init__(self, registry: Registry, broker: Broker) -> None:
        self.registry = registry
        self.broker = broker

    def device(self, node: str) -> Device:
        """By node name (or chip id); RegistryError with the name if there is none."""
        return self.registry.device(node)

    def send(self, node: str | Device, name: str, **values: Any) -> dict[str, Any]:
        """Check the command against the table and publish it; returns the payload sent.
        Commands are not retained (PROTOCOL.md): an offline device never gets it."""
        device = node if isinstance(node, Device) else self.device(node)
        payload = commands.build(name, **values)
        self.broker.send_command(device, payload)
        self.registry.log_event(device, "command", f"sent {name}", commands.redacted(payload))
        log.info("sent %s to %s", name, device.node_name)
        return payload

    def remove(self, node: str | Device) -> Removal:
        """Delete the device, revoke its login, and clear what it left on the broker.

        Its retained topics (status, info and the Home Assistant discovery documents)
        are cleared after the registry row is gone, so Home Assistant drops the ghost
        device and the tracker never sees the clearing as a message of a known device.
        """
        device = node if isinstance(node, Device) else self.device(node)
        what = label(device)
        self.registry.remove_device(device)
        self.broker.device_removed(device)
        cleared: list[str] = []
        try:
            retained = self.broker.retained_topics(f"{device.topic_prefix}/#")
            retained += self.broker.retained_topics(DISCOVERY_FILTER)
            cleared = self.broker.clear_retained(device_topics(device, retained))
        except StationError as exc:
            # The broker is not running here (e.g. the CLI while no station runs): the
            # next station start finds no owner for them; say so rather than fail.
            log.warning("%s: retained topics not cleared: %s", device.node_name, exc)
        self.registry.log_event(
            None,
            "removed",
            f"removed {what} from the registry"
            + (f"; cleared {len(cleared)} retained topics" if cleared else ""),
            {"node_name": device.node_name, "cleared": cleared},
        )
        return Removal(device.node_name, what, tuple(cleared))

    def reprovision(self, node: str | Device, *, online: bool | None = None) -> Reprovision:
        """Open a job so the queue configures this device again (same node name and
        topic; a fresh token when it is configured), and factory-reset it if it is
        online, so its setup network appears. An offline device must be reset by hand
        (hold BOOT 5 s at power-on)."""
        device = node if isinstance(node, Device) else self.device(node)
        is_online = device.online if online is None else online
        reset = False
        if is_online:
            self.send(device, "factory_reset")
            reset = True
        job = self.registry.reprovision(device)
        self.registry.log_event(
            device,
            "reprovision",
            f"{device.node_name} marked for re-provisioning"
            + (
                ": factory reset sent, the device returns to setup mode"
                if reset
                else ": it is offline; factory-reset it by hand (hold BOOT 5 s at power-on)"
            ),
        )
        return Reprovision(device.node_name, job, reset)
