"""one sales order an opportunity

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Fails if an opportunity already has two sales orders (see docs/operations.md).
    with op.batch_alter_table('sales_orders') as batch:
        batch.create_unique_constraint(
            op.f('uq_sales_orders_opportunity_id'), ['opportunity_id']
        )


def downgrade() -> None:
    with op.batch_alter_table('sales_orders') as batch:
        batch.drop_constraint(op.f('uq_sales_orders_opportunity_id'), type_='unique')
