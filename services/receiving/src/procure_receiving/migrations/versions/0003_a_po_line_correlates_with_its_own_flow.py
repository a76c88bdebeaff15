"""a PO line correlates with its own flow: its charge's sales order

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 01:00:00

A PO may span sales orders; what a line's receipt or close publishes correlated with
the PO's first charge's flow. Lines stored before keep that flow (their PO's), which is
what they published until now; lines of POs submitted from now on carry their own.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("po_lines") as batch:
        batch.add_column(sa.Column("correlation_id", sa.String(length=200), nullable=True))
    op.execute(
        "UPDATE po_lines SET correlation_id = (SELECT purchase_orders.correlation_id"
        " FROM purchase_orders WHERE purchase_orders.id = po_lines.po_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("po_lines") as batch:
        batch.drop_column("correlation_id")
