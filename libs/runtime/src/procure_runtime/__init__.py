"""Shared service runtime: settings, database, outbox, inbox, parking, dead letters, auth,
problem+json errors, health and metrics. A service's own code is mostly its domain."""

from procure_runtime.consumer import Applying, EventHandlers, Park, Reject
from procure_runtime.errors import Conflict, DomainError, Invalid, NotFound, UnknownReference
from procure_runtime.http import IdConvertor  # registers `{name:id}` for the routes
from procure_runtime.service import ServiceRuntime
from procure_runtime.uow import UnitOfWork

__all__ = [
    "Applying",
    "Conflict",
    "DomainError",
    "EventHandlers",
    "IdConvertor",
    "Invalid",
    "NotFound",
    "Park",
    "Reject",
    "ServiceRuntime",
    "UnitOfWork",
    "UnknownReference",
]
