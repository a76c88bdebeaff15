"""a charge or sales order is routed once

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('announced',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'id', name=op.f('pk_announced'))
    )
    # The charges this database shows inventory has acted for. Those announced with no
    # reservation, and sales orders, left no trace here: a later event naming one is
    # routed once more, as before this revision.
    op.execute(
        "INSERT INTO announced (kind, id) "
        "SELECT 'charge', charge_id FROM conversions "
        "UNION SELECT 'charge', charge_id FROM holds "
        "UNION SELECT 'charge', charge_id FROM reservations WHERE charge_id IS NOT NULL "
        "UNION SELECT 'charge', charge_id FROM movements WHERE charge_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table('announced')
