"""Purchasing's tables: settings, approvals, the queue's per-charge counters, pick
requests, purchase orders and their lines (plus the runtime's outbox, inbox, parking)."""

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)

from procure_runtime.db import UNIT_SUM, MoneyAmount, UTCDateTime, new_metadata, utcnow
from procure_runtime.replica import replica_tables

metadata = new_metadata()
REPLICAS = ("products", "vendors", "locations")  # from inventory's catalog topics
replica_tables(metadata, *REPLICAS)

procurement_settings = Table(
    "procurement_settings",
    metadata,
    Column("id", String(32), primary_key=True),  # one row: "procurement"
    Column("approval_threshold", MoneyAmount(), nullable=True),
    Column("purchasing_team", JSON, nullable=False),
    Column("updated_by", JSON, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
)

# One row per charge sent to procurement; its item_id on the queue is the charge id.
# Every unit sent sits in exactly one counter, and each move is one atomic UPDATE from
# one counter to another, so the counters always sum to `sent` and none goes negative.
UNIT_COUNTERS = ("waiting", "queued", "ordered", "picking", "done", "canceled")
charges = Table(
    "charges",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("sales_order_id", String(200), nullable=True),
    Column("product", JSON, nullable=False),
    Column("vendor_id", String(200), nullable=True, index=True),
    Column("organization", JSON, nullable=False),
    Column("destination", JSON, nullable=False),
    Column("sent", Integer, nullable=False, default=0),
    *[Column(name, Integer, nullable=False, default=0) for name in UNIT_COUNTERS],
    *[CheckConstraint(f"{name} >= 0", name=f"{name}_not_negative") for name in UNIT_COUNTERS],
    Column("first_sent_at", UTCDateTime(), nullable=False, default=utcnow),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("charge_id", String(200), nullable=False, index=True),
    Column("sales_order_id", String(200), nullable=True),
    Column("product", JSON, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("extended_cost", MoneyAmount(), nullable=False),
    Column("threshold", MoneyAmount(), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("requested_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("decided_by", JSON, nullable=True),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("note", Text, nullable=True),
)

pick_requests = Table(
    "pick_requests",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("charge_id", String(200), nullable=False, index=True),
    Column("location_id", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # Requested, Picked, Failed
    Column("requested_by", JSON, nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False, default=utcnow),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

purchase_orders = Table(
    "purchase_orders",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("number", String(32), nullable=False, unique=True),
    Column("status", String(32), nullable=False, index=True),
    Column("vendor", JSON, nullable=False),
    Column("ship_kind", String(16), nullable=False),  # location | organization
    Column("location_id", String(200), nullable=True),
    Column("ship_address", JSON, nullable=True),  # drop-ship: the charges' destination
    Column("created_by", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("submitted_by", JSON, nullable=True),
    Column("submitted_at", UTCDateTime(), nullable=True),
    Column("canceled_at", UTCDateTime(), nullable=True),
)

po_lines = Table(
    "po_lines",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("po_id", String(200), ForeignKey("purchase_orders.id"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("charge_id", String(200), nullable=True),  # null: a stock replenishment line
    Column("product", JSON, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_cost", String(40), nullable=False),  # exact decimal text, as the product has it
    # Sums of every receipt and closing of the line as reported (migration 0006).
    Column("received", UNIT_SUM, nullable=False, default=0),
    Column("closed", Boolean, nullable=False, default=False),
    Column("closed_quantity", UNIT_SUM, nullable=False, default=0),
)
