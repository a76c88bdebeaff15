"""Quotes' tables: sales orders and charges (plus the runtime's outbox, inbox, parking)."""

from procure_runtime.db import UTCDateTime, new_metadata, utcnow
from sqlalchemy import JSON, Column, Integer, Numeric, String, Table

metadata = new_metadata()

sales_orders = Table(
    "sales_orders",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("opportunity_id", String(200), nullable=True),
    Column("status", String(32), nullable=False),
    Column("owner", JSON, nullable=False),
    Column("organization", JSON, nullable=False),
    Column("ship_to", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)

charges = Table(
    "charges",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("sales_order_id", String(200), nullable=True, index=True),
    Column("opportunity_id", String(200), nullable=True),
    Column("quote_item_id", String(200), nullable=True),
    Column("parent", JSON, nullable=False),
    Column("owner", JSON, nullable=False),
    Column("product", JSON, nullable=False),
    Column("organization", JSON, nullable=False),
    Column("destination", JSON, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Numeric(18, 2), nullable=False),
    # Units routed at creation (R3/R4); the ledger of later moves comes with the quotes issue.
    Column("routed_ready", Integer, nullable=False, default=0),
    Column("routed_awaiting_pick", Integer, nullable=False, default=0),
    Column("routed_to_procurement", Integer, nullable=False, default=0),
    Column("created_by_event", String(200), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)
