"""the inbox forgets event ids past their retention: the index its prune reads

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:30:00
"""

from collections.abc import Sequence

from procure_runtime.migrate import drop_inbox_age_index, index_inbox_by_age

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    index_inbox_by_age()


def downgrade() -> None:
    drop_inbox_age_index()
