"""money amounts are exact to the cent on SQLite too

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:10:00
"""

from collections.abc import Sequence

from procure_runtime.migrate import money_as_cents_on_sqlite, money_as_units_on_sqlite

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = {"procurement_settings": ["approval_threshold"], "approvals": ["extended_cost", "threshold"]}


def upgrade() -> None:
    money_as_cents_on_sqlite(MONEY)


def downgrade() -> None:
    money_as_units_on_sqlite(MONEY)
