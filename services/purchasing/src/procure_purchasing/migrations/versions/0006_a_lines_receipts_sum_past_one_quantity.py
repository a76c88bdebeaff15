"""a line's receipts sum past one quantity

What receiving reports received and closed on a PO line adds up its events: 8 bytes
on PostgreSQL, as SQLite already stored them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 16:00:00
"""

from collections.abc import Sequence

from procure_runtime.migrate import unit_sums_in_4_bytes, unit_sums_in_8_bytes

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNIT_SUMS = {"po_lines": ["received", "closed_quantity"]}


def upgrade() -> None:
    unit_sums_in_8_bytes(UNIT_SUMS)


def downgrade() -> None:
    unit_sums_in_4_bytes(UNIT_SUMS)
