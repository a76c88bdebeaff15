"""the outbox keeps only unpublished events: the relay deletes what it publishes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 01:59:38.827381
"""

from collections.abc import Sequence

from procure_runtime.migrate import add_outbox_sent_at, drop_outbox_sent_at

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    drop_outbox_sent_at()


def downgrade() -> None:
    add_outbox_sent_at()
