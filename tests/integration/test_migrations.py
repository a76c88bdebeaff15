"""Every service's migrations build exactly the schema its models describe (runtime
tables included), on SQLite and PostgreSQL, and can be applied twice."""

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from procure_runtime import migrate
from procure_runtime.db import Database

SERVICES = ["quotes", "inventory", "purchasing", "receiving", "shipping", "notifier"]


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_match_the_models(
    service: str, database_url: Callable[[str], str]
) -> None:
    url = database_url(f"mig_{service}")
    models = importlib.import_module(f"procure_{service}.models")
    location = Path(importlib.import_module(f"procure_{service}").__file__).parent / "migrations"
    db = Database(url)
    try:
        await migrate.upgrade(db, location)
        await migrate.upgrade(db, location)  # a second instance starting later: no-op
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), models.metadata
                )
            )
        assert diff == [], f"run `make migration SERVICE={service} MSG=...`: {diff}"
    finally:
        await db.dispose()
