"""Quotes' tables: opportunities and quote items, sales orders, charges with their
ledger counters, ids claimed by requests, PO lines per charge, history (plus the
runtime's own tables)."""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from procure_runtime.db import UNIT_SUM, BigId, MoneyAmount, UTCDateTime, new_metadata, utcnow
from procure_runtime.replica import replica_tables

metadata = new_metadata()
replica_tables(metadata, "products", "locations")

opportunities = Table(
    "opportunities",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(500), nullable=False),
    Column("owner", JSON, nullable=False),
    Column("organization", JSON, nullable=False),
    Column("status", String(16), nullable=False, default="Open"),  # Open, Won, Lost
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)

quote_items = Table(
    "quote_items",
    metadata,
    Column("id", String(200), primary_key=True),
    Column(
        "opportunity_id", String(200), ForeignKey("opportunities.id"), nullable=False, index=True
    ),
    Column("product", JSON, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", MoneyAmount(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)

# What inventory says is reserved for quote items (`stock.reserved` / `stock.released`).
reservations = Table(
    "reservations",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("quote_item_id", String(200), nullable=False, index=True),
    Column("opportunity_id", String(200), nullable=False),
    Column("location_id", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("released", Boolean, nullable=False, default=False),
)

# Reservations inventory has picked for a charge (a `units.picked` naming one): no longer
# held for their quote item, though no `stock.released` says so when a charge took them
# whole. Apart from `reservations` so that either event may come first.
picked_reservations = Table(
    "picked_reservations",
    metadata,
    Column("id", String(200), primary_key=True),
)

sales_orders = Table(
    "sales_orders",
    metadata,
    Column("id", String(200), primary_key=True),
    # Unique: winning creates one sales order (R3). A second `opportunity.won` of an
    # opportunity under another sales order id (an outside producer's retry that made new
    # ids) is refused by the insert that stores it, and ignored, instead of ordering
    # everything again. Null for none (SQL lets nulls repeat).
    Column("opportunity_id", String(200), nullable=True, unique=True),
    Column("status", String(32), nullable=False),
    Column("owner", JSON, nullable=False),
    Column("organization", JSON, nullable=False),
    Column("ship_to", JSON, nullable=False),
    Column("can_fulfill", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)

# Ids of sales orders and charges a request of quotes' own HTTP API has published, taken
# in the request's transaction (kind: "sales order" or "charge"). The rows of
# `sales_orders` and `charges` only come when the consumer handles that event, so a
# second request naming the id meanwhile would pass a look at those tables; it meets
# this key instead. Ids that come in other producers' events are not claimed here:
# those tables hold them once handled.
claimed_ids = Table(
    "claimed_ids",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("id", String(200), primary_key=True),
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
    Column("unit_price", MoneyAmount(), nullable=False),
    # Ledger counters (monotonic; statuses are derived in domain.Ledger).
    Column("ready_direct", Integer, nullable=False, default=0),
    Column("reserved_at_routing", Integer, nullable=False, default=0),
    Column("sent_to_procurement", Integer, nullable=False, default=0),
    Column("picked", Integer, nullable=False, default=0),
    # Every delivery and cancellation ever, so past a quantity's 4 bytes (migration 0011).
    Column("delivered", UNIT_SUM, nullable=False, default=0),
    Column("delivery_canceled", UNIT_SUM, nullable=False, default=0),
    Column("last_seq", Integer, nullable=False, default=0),
    # Billing (R17).
    Column("posted", Boolean, nullable=False, default=False),
    Column("posted_at", UTCDateTime(), nullable=True),
    Column("posted_by", JSON, nullable=True),
    Column("delivery_canceled_after_post", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)

charge_po_lines = Table(
    "charge_po_lines",
    metadata,
    Column("line_id", String(200), primary_key=True),
    Column("charge_id", String(200), nullable=False, index=True),
    Column("po_id", String(200), nullable=False),
    Column("po_number", String(32), nullable=False),
    Column("ordered", Integer, nullable=False),
    Column("received", Integer, nullable=False, default=0),
    Column("closed", Boolean, nullable=False, default=False),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("charge_id", String(200), nullable=False, index=True),
    Column("quantity", Integer, nullable=False),
    Column("requested", Boolean, nullable=False, default=False),
    Column("decided", Boolean, nullable=False, default=False),
    Column("approved", Boolean, nullable=False, default=False),
)

history = Table(
    "charge_history",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # null: a sales order event. Looked up by the unique (charge_id, event_id) index below,
    # whose first column it is: an index of its own would only cost every insert.
    Column("charge_id", String(200), nullable=True),
    Column("sales_order_id", String(200), nullable=True, index=True),
    Column("time", UTCDateTime(), nullable=False),
    Column("type", String(200), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("summary", Text, nullable=False),
    # Where the line's units are (a pick): named when read, from the locations replica, so
    # a line reads the same whichever of the pick and the location's catalog event came
    # first. Its summary leaves the place out.
    Column("location_id", String(200), nullable=True),
    UniqueConstraint("charge_id", "event_id"),
)
