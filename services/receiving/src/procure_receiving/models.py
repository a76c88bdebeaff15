"""Receiving's tables: submitted POs with their lines' open quantities, every receipt,
and every serial number ever received (plus the runtime's tables and catalog replicas)."""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKeyConstraint,
    Integer,
    String,
    Table,
    Text,
)

from procure_runtime.db import BigId, UTCDateTime, new_metadata, utcnow
from procure_runtime.replica import replica_tables

metadata = new_metadata()
replica_tables(metadata, "products", "locations")  # serialized flags; known locations

purchase_orders = Table(
    "purchase_orders",
    metadata,
    Column("n", BigId, primary_key=True, autoincrement=True),  # arrival order, for paging
    Column("id", String(200), nullable=False, unique=True),
    Column("number", String(64), nullable=False),
    Column("vendor", JSON, nullable=False),
    Column("ship_to", JSON, nullable=False),
    Column("drop_ship", Boolean, nullable=False),
    Column("status", String(32), nullable=False),
    Column("submitted_by", JSON, nullable=False),
    Column("correlation_id", String(200), nullable=True),  # the flow po.submitted belonged to
    Column("submitted_at", UTCDateTime(), nullable=False, default=utcnow),
)

po_lines = Table(
    "po_lines",
    metadata,
    Column("po_id", String(200), primary_key=True),
    Column("line_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("charge_id", String(200), nullable=True),
    # The flow the line belongs to (spec: a correlationid is the sales order id when there
    # is one, else the charge id): its charge's sales order, else its charge, else the
    # PO's. What its receipts and its close publish correlate with.
    Column("correlation_id", String(200), nullable=True),
    Column("product", JSON, nullable=False),
    Column("unit_cost", String(32), nullable=False),
    Column("ordered", Integer, nullable=False),
    Column("received", Integer, nullable=False, default=0),
    Column("closed", Boolean, nullable=False, default=False),
    Column("closed_quantity", Integer, nullable=False, default=0),
    Column("close_reason", Text, nullable=True),
    Column("closed_by", JSON, nullable=True),
    Column("closed_at", UTCDateTime(), nullable=True),
)

receipts = Table(
    "receipts",
    metadata,
    Column("n", BigId, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("po_id", String(200), nullable=False, index=True),
    Column("received_by", JSON, nullable=False),
    Column("vendor_invoice", String(200), nullable=True),
    Column("po_status", String(32), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False, default=utcnow),
)

receipt_lines = Table(
    "receipt_lines",
    metadata,
    Column("receipt_id", String(200), primary_key=True),
    Column("line_id", String(200), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("location_id", String(200), nullable=True),
    Column("serials", JSON, nullable=False),
    Column("open_after", Integer, nullable=False),
    ForeignKeyConstraint(["receipt_id"], ["receipts.id"]),
)

# A serial number is received once per product, ever (R10); the key makes that hold
# even between two instances receiving at the same time.
received_serials = Table(
    "received_serials",
    metadata,
    Column("product_id", String(200), primary_key=True),
    Column("serial", String(200), primary_key=True),
    Column("receipt_id", String(200), nullable=False),
)
