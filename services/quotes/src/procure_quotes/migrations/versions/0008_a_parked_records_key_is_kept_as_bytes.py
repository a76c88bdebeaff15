"""a parked record's key is kept as bytes: its dead letter is byte for byte

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:05:00
"""

from collections.abc import Sequence

from procure_runtime.migrate import parked_key_as_bytes, parked_key_as_text

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    parked_key_as_bytes()


def downgrade() -> None:
    parked_key_as_text()
