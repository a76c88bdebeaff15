"""Each service's migration for the relay that deletes what it publishes: an outbox left
by an earlier release (rows marked sent beside unsent ones, `sent_at` and its index) keeps
only the unsent rows and loses the column, on SQLite and PostgreSQL; a database made since
(`test_migrations.py`) passes through the same step unchanged."""

import importlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text

from procure_runtime import migrate
from procure_runtime.db import Database

# The revision each service's outbox step comes after.
BEFORE = {
    "quotes": "0003",
    "inventory": "0001",
    "purchasing": "0001",
    "receiving": "0001",
    "shipping": "0001",
    "notifier": "0001",
}


def _alembic(service: str, step: Callable[[Any], None]) -> Callable[[Any], None]:
    location = Path(importlib.import_module(f"procure_{service}").__file__).parent / "migrations"
    return lambda sync: step(migrate.alembic_config(location, sync))


def _outbox(sync: Any) -> tuple[set[str], set[str]]:
    found = inspect(sync)
    return (
        {c["name"] for c in found.get_columns("outbox")},
        {i["name"] for i in found.get_indexes("outbox")},
    )


@pytest.mark.parametrize("service", sorted(BEFORE))
async def test_an_earlier_outbox_keeps_only_its_unsent_rows(
    service: str, database_url: Callable[[str], str]
) -> None:
    db = Database(database_url(f"outbox_{service}"))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(
                _alembic(service, lambda cfg: command.upgrade(cfg, BEFORE[service]))
            )
            # The outbox as the earlier release made it, with two rows published and
            # marked, and one not yet published.
            await conn.execute(text("ALTER TABLE outbox ADD COLUMN sent_at TIMESTAMP"))
            await conn.execute(text("CREATE INDEX ix_outbox_pending ON outbox (sent_at, id)"))
            now = datetime.now(UTC).replace(tzinfo=None)
            for event_id, sent in (("e-1", now), ("e-2", None), ("e-3", now)):
                await conn.execute(
                    text(
                        "INSERT INTO outbox (event_id, topic, key, value, created_at, sent_at) "
                        "VALUES (:e, 't', 'k', :v, :c, :s)"
                    ),
                    {"e": event_id, "v": event_id.encode(), "c": now, "s": sent},
                )
        async with db.engine.begin() as conn:
            await conn.run_sync(_alembic(service, lambda cfg: command.upgrade(cfg, "head")))
        async with db.engine.connect() as conn:
            left = (await conn.execute(text("SELECT event_id, value FROM outbox"))).all()
            columns, indexes = await conn.run_sync(_outbox)
        assert [(e, bytes(v)) for e, v in left] == [("e-2", b"e-2")]
        assert "sent_at" not in columns and "ix_outbox_pending" not in indexes
        assert {"id", "event_id", "topic", "key", "value", "created_at"} <= columns

        # And back: the column returns, the rows left being the unsent ones.
        async with db.engine.begin() as conn:
            await conn.run_sync(
                _alembic(service, lambda cfg: command.downgrade(cfg, BEFORE[service]))
            )
        async with db.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT event_id, sent_at FROM outbox"))).all()
            columns, indexes = await conn.run_sync(_outbox)
        assert [tuple(r) for r in rows] == [("e-2", None)]
        assert "sent_at" in columns and "ix_outbox_pending" in indexes
    finally:
        await db.dispose()
