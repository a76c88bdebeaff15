"""The notifier's tables: the stakeholder directory (built from events), the settings
and the notification log, which is also the queue the sender works through."""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from procure_notifier.domain import MAX_ADDRESS
from procure_runtime.db import BigId, UTCDateTime, new_metadata, utcnow
from procure_runtime.replica import replica_tables

metadata = new_metadata()
replica_tables(metadata, "settings")  # `settings.procurement`, kept current by handlers.py

sales_orders = Table(
    "sales_orders",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("owner", JSON, nullable=False),
    Column("opportunity_id", String(200), nullable=True),
    Column("opportunity_owner", JSON, nullable=True),
    Column("event_id", String(200), nullable=False),
)

charges = Table(
    "charges",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("owner", JSON, nullable=False),
    Column("parent", JSON, nullable=False),
    Column("product", JSON, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("sales_order_id", String(200), nullable=True, index=True),
    Column("quoted", Boolean, nullable=False),  # a quoted item: its opportunity owner is told
    Column("event_id", String(200), nullable=False),
)

notification_settings = Table(
    "notification_settings",
    metadata,
    Column("type", String(64), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_by", String(200), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False),
    Column("type", String(64), nullable=False),
    Column("recipient", String(MAX_ADDRESS), nullable=False),  # longer ones are not recorded
    Column("subject", Text, nullable=False),
    Column("body_text", Text, nullable=False),
    Column("body_html", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    # One email per event, address and type, whatever redelivers the event.
    UniqueConstraint("event_id", "recipient", "type", name="uq_notifications_once"),
    Index("ix_notifications_due", "status", "next_attempt_at"),
    Index("ix_notifications_recipient", "recipient", "id"),
)
