"""a won applied after its loss takes its listed units back

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(
            sa.Column("released_on_loss", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Those released by their opportunity's loss before the upgrade: in the loss's own
    # transaction, so at or after its close (a person's delete came before it).
    reservations = sa.table(
        "reservations",
        sa.column("status", sa.String),
        sa.column("opportunity_id", sa.String),
        sa.column("closed_at", sa.String),
        sa.column("released_on_loss", sa.Boolean),
    )
    opportunities = sa.table(
        "opportunities",
        sa.column("id", sa.String),
        sa.column("outcome", sa.String),
        sa.column("closed_at", sa.String),
    )
    lost = (
        sa.select(opportunities.c.id)
        .where(
            opportunities.c.id == reservations.c.opportunity_id,
            opportunities.c.outcome == "lost",
            reservations.c.closed_at >= opportunities.c.closed_at,
        )
        .exists()
    )
    op.execute(
        reservations.update()
        .where(reservations.c.status == "released", lost)
        .values(released_on_loss=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("released_on_loss")
