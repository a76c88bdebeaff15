"""money amounts are exact to the cent on SQLite too

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:10:00
"""

from collections.abc import Sequence

from procure_runtime.migrate import money_as_cents_on_sqlite, money_as_units_on_sqlite

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = {"products": ["unit_cost", "unit_price"]}


def upgrade() -> None:
    money_as_cents_on_sqlite(MONEY)


def downgrade() -> None:
    money_as_units_on_sqlite(MONEY)
