"""stock counts sum past one quantity

A location's on hand, reserved and picked, and what is held for a charge, add up many
receipts: 8 bytes on PostgreSQL, as SQLite already stored them.

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

UNIT_SUMS = {"stock": ["on_hand", "reserved", "picked"], "holds": ["quantity"]}


def upgrade() -> None:
    unit_sums_in_8_bytes(UNIT_SUMS)


def downgrade() -> None:
    unit_sums_in_4_bytes(UNIT_SUMS)
