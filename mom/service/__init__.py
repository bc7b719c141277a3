"""The broker service: what the REST layer and the node use of the replicated groups (see `broker_service`)."""

from mom.service.broker_service import DECLARE_WAIT_S, BrokerService, DestinationStatus, wall_clock_ms
from mom.service.housekeeping import SendDeadLetters
from mom.service.locator import Handle, LeadershipMoved, Located, MetadataBehind, Ref

__all__ = [
    "DECLARE_WAIT_S",
    "BrokerService",
    "DestinationStatus",
    "Handle",
    "LeadershipMoved",
    "Located",
    "MetadataBehind",
    "Ref",
    "SendDeadLetters",
    "wall_clock_ms",
]
