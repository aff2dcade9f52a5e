"""Device registry: homes, devices, provisioning jobs, readings and the audit log (peewee)."""

from station.registry.db import database_proxy, make_database
from station.registry.models import Device, Event, Home, ProvisioningJob, Reading
from station.registry.service import DeviceCredentials, IssuedDevice, Registry, RegistryError

__all__ = [
    "Device",
    "DeviceCredentials",
    "Event",
    "Home",
    "IssuedDevice",
    "ProvisioningJob",
    "Reading",
    "Registry",
    "RegistryError",
    "database_proxy",
    "make_database",
]
