"""The spec's exact status strings (section 2), one enum per lifecycle."""

from enum import StrEnum


class UnitStatus(StrEnum):
    WAITING_APPROVAL = "Waiting Approval"
    NEED_TO_ORDER = "Need to Order/Fulfill"
    ON_ORDER = "On Order"
    READY = "Ready to Deliver/Ship"
    DELIVERED = "Delivered/Shipped"
    CANCELED = "Canceled"


class POStatus(StrEnum):
    NEW = "New"
    SUBMITTED = "Submitted"
    RECEIVED_PARTIAL = "Received Partial"
    RECEIVED_FULL = "Received Full"
    CANCELED = "Canceled"


class SalesOrderStatus(StrEnum):
    NEW = "New"
    IN_PROGRESS = "In Progress"
    FULFILLED = "Fulfilled"
    CANCELED = "Canceled"


class ApprovalStatus(StrEnum):
    PENDING = "Pending"
    APPROVED = "Approved"
    REJECTED = "Rejected"
