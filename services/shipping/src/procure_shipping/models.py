"""Shipping's tables: the charge replica (from `opportunity.won` / `charge.created` /
`charge.ready`), the Ready tab, deliveries with their Delivered tab items, cancellations
(plus the runtime's tables and the locations replica)."""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from procure_runtime.db import BigId, UTCDateTime, new_metadata, utcnow
from procure_runtime.replica import replica_tables

metadata = new_metadata()
replica_tables(metadata, "locations")  # names of pick locations

charges = Table(
    "charges",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("sales_order_id", String(200), nullable=True),
    Column("product", JSON, nullable=False),
    Column("destination", JSON, nullable=False),
    Column("parent", JSON, nullable=True),
    # The seq of this charge's next delivery or cancellation (R13); the row is locked
    # (FOR UPDATE) by every change to the charge's items.
    Column("next_seq", Integer, nullable=False, default=1),
)

ready_items = Table(
    "ready_items",
    metadata,
    Column("n", BigId, primary_key=True, autoincrement=True),
    Column("item_id", String(200), nullable=False, unique=True),
    Column("charge_id", String(200), nullable=False),
    Column("location_key", String(200), nullable=False),  # location id, "" for none
    Column("location_id", String(200), nullable=True),
    Column("quantity", Integer, nullable=False, default=0),
    Column("serials", JSON, nullable=False),
    UniqueConstraint("charge_id", "location_key"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("n", BigId, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("drop_ship", Boolean, nullable=False),
    Column("po_number", String(64), nullable=True),
    Column("destination", JSON, nullable=False),
    Column("delivered_by", JSON, nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=False, default=utcnow),
)

delivered_items = Table(
    "delivered_items",
    metadata,
    Column("n", BigId, primary_key=True, autoincrement=True),
    Column("item_id", String(200), nullable=False, unique=True),
    Column("delivery_id", String(200), nullable=False, index=True),
    Column("charge_id", String(200), nullable=False),
    Column("location_id", String(200), nullable=True),
    Column("ready_item_id", String(200), nullable=True),  # where canceled units go back
    Column("delivered", Integer, nullable=False),  # as delivered
    Column("quantity", Integer, nullable=False),  # still delivered (cancellations deduct)
    Column("serials", JSON, nullable=False),  # still delivered
    Column("transfer_id", String(200), nullable=True),
)

cancellations = Table(
    "cancellations",
    metadata,
    Column("n", BigId, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),
    Column("delivery_id", String(200), nullable=False, index=True),
    Column("reason", Text, nullable=True),
    Column("canceled_by", JSON, nullable=False),
    Column("items", JSON, nullable=False),
    Column("canceled_at", UTCDateTime(), nullable=False, default=utcnow),
)
