"""Public contract of the procurement platform: CloudEvents envelope, event data models,
status strings and the topic registry (spec sections 2 and 4)."""

from procure_contracts.envelope import CloudEvent, new_event
from procure_contracts.registry import REGISTRY, EventSpec, spec_for_topic, spec_for_type
from procure_contracts.status import (
    ApprovalStatus,
    POStatus,
    SalesOrderStatus,
    UnitStatus,
)

__all__ = [
    "REGISTRY",
    "ApprovalStatus",
    "CloudEvent",
    "EventSpec",
    "POStatus",
    "SalesOrderStatus",
    "UnitStatus",
    "new_event",
    "spec_for_topic",
    "spec_for_type",
]
