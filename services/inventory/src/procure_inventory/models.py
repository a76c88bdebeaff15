"""Inventory's tables: the catalog, stock per product and location, what is held for
charges, serials, reservations, closed opportunities and the stock movements (plus the
runtime's tables)."""

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Integer,
    String,
    Table,
    Text,
    false,
)

from procure_runtime.db import UNIT_SUM, BigId, MoneyAmount, UTCDateTime, new_metadata, utcnow

metadata = new_metadata()

vendors = Table(
    "vendors",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("email", String(300), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
)

locations = Table(
    "locations",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(300), nullable=False),
    Column("address", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
)

products = Table(
    "products",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("sku", String(200), nullable=False, unique=True),
    Column("name", String(300), nullable=False),
    Column("is_inventory", Boolean, nullable=False),
    Column("subject_to_procurement", Boolean, nullable=False),
    Column("serialized", Boolean, nullable=False),
    Column("unit_cost", MoneyAmount(), nullable=False),
    Column("unit_price", MoneyAmount(), nullable=False),
    Column("vendor_id", String(200), nullable=True, index=True),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow),
)

# No foreign key to products: any product received into a location enters stock (R11),
# even one this catalog does not know.
stock = Table(
    "stock",
    metadata,
    Column("product_id", String(200), primary_key=True),
    Column("location_id", String(200), primary_key=True),
    # Sums over every charge and receipt: 8 bytes, not a quantity's 4 (migration 0011).
    Column("on_hand", UNIT_SUM, nullable=False, default=0),
    Column("reserved", UNIT_SUM, nullable=False, default=0),
    Column("picked", UNIT_SUM, nullable=False, default=0),
    # The last line of defence of R1; the code checks first and answers 409 / parks.
    CheckConstraint(
        "reserved >= 0 AND picked >= 0 AND on_hand - reserved - picked >= 0", name="r1"
    ),
)

# Units picked (held) for a charge at a location: what a delivery may take out.
holds = Table(
    "holds",
    metadata,
    Column("charge_id", String(200), primary_key=True),
    Column("product_id", String(200), primary_key=True),
    Column("location_id", String(200), primary_key=True),
    Column("quantity", UNIT_SUM, nullable=False, default=0),  # a sum of receipts
    CheckConstraint("quantity >= 0", name="non_negative"),
)

serials = Table(
    "serials",
    metadata,
    Column("product_id", String(200), primary_key=True),
    Column("serial", String(200), primary_key=True),
    Column("location_id", String(200), nullable=False, index=True),
    Column("charge_id", String(200), nullable=True),  # set while held for a charge
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("opportunity_id", String(200), nullable=False, index=True),
    Column("quote_item_id", String(200), nullable=False, index=True),
    Column("product_id", String(200), nullable=False),
    Column("location_id", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # active | released | picked
    Column("charge_id", String(200), nullable=True),  # the (first) charge it was picked for
    Column("picked", Integer, nullable=False, default=0),
    Column("reserved_by", JSON, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("closed_at", UTCDateTime(), nullable=True),
    # Released because its opportunity was lost: a won of that opportunity applied after
    # the loss (topics are not ordered) takes its listed units back, as if it came first.
    # Cleared once a claim settles it (`picking._settle_loss_releases`): taken back once.
    Column("released_on_loss", Boolean, nullable=False, default=False, server_default=false()),
)

# Opportunities inventory has seen won or lost (`outcome`), or reserved for while open
# (null): a closed one takes no new reservation (R2). A new reservation and the close
# both lock the row, so neither misses the other.
opportunities = Table(
    "opportunities",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("outcome", String(8), nullable=True),  # won | lost
    Column("closed_at", UTCDateTime(), nullable=True),
)

# Each reservation listed on a charge, once converted into its pick (or its failure):
# the same charge announced again under a new event id (a producer's replay) converts
# nothing twice, so quotes is never told twice that units must be ordered.
conversions = Table(
    "conversions",
    metadata,
    Column("charge_id", String(200), primary_key=True),
    Column("reservation_id", String(200), primary_key=True),
    Column("converted_at", UTCDateTime(), nullable=False, default=utcnow),
)

# Charges and sales orders inventory has routed (kind: "charge" or "sales order"). Quotes
# stores the first event naming one and ignores any later one (an outside producer's
# retry under new event ids, listing other reservations; a won under a sales order that
# exists): inventory ignores them too, or it picks units for charges quotes never hears
# of, held for good.
announced = Table(
    "announced",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("id", String(200), primary_key=True),
)

# Per charge, the last of shipping's delivery and cancellation `seq`s applied (R13), so
# that they apply in shipping's order whatever topic or partition brought them first: a
# later delivery taking the units an earlier one was waiting for would leave both, and the
# earlier one's cancellation, parked for good. Null: a charge delivered before inventory
# followed seqs (migration 0005), whose events apply as they come.
delivery_order = Table(
    "delivery_order",
    metadata,
    Column("charge_id", String(200), primary_key=True),
    Column("last_seq", Integer, nullable=True),
)

# The audit trail of stock: every change of on hand, with its cause.
movements = Table(
    "movements",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(200), nullable=False, unique=True),  # the transfer id
    Column("cause", String(16), nullable=False),
    Column("product_id", String(200), nullable=False, index=True),
    Column("charge_id", String(200), nullable=True, index=True),
    Column("from_location_id", String(200), nullable=True),
    Column("to_location_id", String(200), nullable=True),
    Column("quantity", Integer, nullable=False),
    Column("serials", JSON, nullable=False, default=list),
    Column("reason", Text, nullable=True),
    Column("reference", String(200), nullable=True),  # receipt / delivery id
    Column("moved_by", JSON, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
)
