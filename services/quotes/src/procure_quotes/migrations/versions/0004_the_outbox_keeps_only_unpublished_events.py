"""the outbox keeps only unpublished events: the relay deletes what it publishes

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 01:59:32.982577
"""

from collections.abc import Sequence

from procure_runtime.migrate import add_outbox_sent_at, drop_outbox_sent_at

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    drop_outbox_sent_at()


def downgrade() -> None:
    add_outbox_sent_at()
