"""deliveries and their cancellations sum past one quantity

A charge delivered, canceled and delivered again counts each: 8 bytes on PostgreSQL,
as SQLite already stored them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 16:00:00
"""

from collections.abc import Sequence

from procure_runtime.migrate import unit_sums_in_4_bytes, unit_sums_in_8_bytes

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNIT_SUMS = {"charges": ["delivered", "delivery_canceled"]}


def upgrade() -> None:
    unit_sums_in_8_bytes(UNIT_SUMS)


def downgrade() -> None:
    unit_sums_in_4_bytes(UNIT_SUMS)
