"""picked reservations: no longer held for their quote item

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('picked_reservations',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_picked_reservations'))
    )


def downgrade() -> None:
    op.drop_table('picked_reservations')
