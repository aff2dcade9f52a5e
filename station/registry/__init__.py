"""Device registry: homes, devices, provisioning jobs, readings and the audit log (peewee)."""

from station.registry.db import database_proxy, make_database
from station.registry.models import Device, Event, Home, ProvisioningJob, Reading
from station.registry.service import DeviceCredentials, IssuedDevice, Registry, RegistryError
from station.registry.status import OPEN, TO_CONFIGURE, Status, Step

__all__ = [
    "OPEN",
    "TO_CONFIGURE",
    "Device",
    "DeviceCredentials",
    "Event",
    "Home",
    "IssuedDevice",
    "ProvisioningJob",
    "Reading",
    "Registry",
    "RegistryError",
    "Status",
    "Step",
    "database_proxy",
    "make_database",
]
