"""deliveries apply in seq order

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('delivery_order',
    sa.Column('charge_id', sa.String(length=200), nullable=False),
    sa.Column('last_seq', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('charge_id', name=op.f('pk_delivery_order'))
    )
    # Which seqs a charge known here already used cannot be told from this database:
    # drop-ship deliveries and items with no location left no trace. Such charges keep
    # applying deliveries as they come (last_seq null); any other starts at seq 1.
    op.execute(
        "INSERT INTO delivery_order (charge_id) "
        "SELECT charge_id FROM movements WHERE charge_id IS NOT NULL "
        "UNION SELECT charge_id FROM holds "
        "UNION SELECT charge_id FROM reservations WHERE charge_id IS NOT NULL "
        "UNION SELECT charge_id FROM serials WHERE charge_id IS NOT NULL"
    )

def downgrade() -> None:
    op.drop_table('delivery_order')
