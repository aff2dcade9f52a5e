"""The provisioning flow (the seed's five steps) and the bulk queue; no Qt."""

from station.provisioning.events import Listener, Progress
from station.provisioning.flow import (
    BrokerLink,
    Provisioner,
    ProvisioningError,
    SetupClient,
    SetupTarget,
    Station,
    Ticket,
    is_setup_ap,
)
from station.provisioning.queue import BulkQueue, RunSummary
from station.provisioning.steps import PROGRESS, Status, Step

__all__ = [
    "PROGRESS",
    "BrokerLink",
    "BulkQueue",
    "Listener",
    "Progress",
    "Provisioner",
    "ProvisioningError",
    "RunSummary",
    "SetupClient",
    "SetupTarget",
    "Station",
    "Status",
    "Step",
    "Ticket",
    "is_setup_ap",
]
