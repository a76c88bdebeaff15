"""a reservation its loss released is taken back once

`released_on_loss` now also says that no claim has settled the reservation yet: the
claim that takes it back clears it. Reservations settled before this upgrade are
cleared the same: one a claim took back after the loss (`picked`: a loss releases only
what no charge picked from), and every reservation of an opportunity won after all (its
won was settled in one transaction). A direct charge not subject to procurement that
listed one after the loss (R3) left no trace; such a reservation stays marked.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 19:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE reservations SET released_on_loss = :no"
            " WHERE released_on_loss = :yes AND (status = 'picked' OR opportunity_id IN"
            " (SELECT id FROM opportunities WHERE outcome = 'won'))"
        ).bindparams(yes=True, no=False)
    )


def downgrade() -> None:
    pass  # the cleared marks said only what the code before it never read again
