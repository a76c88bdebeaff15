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


async def test_keys_parked_before_the_upgrade_come_back_as_their_bytes(
    database_url: Callable[[str], str],
) -> None:
    """The parking lot kept a record's key as text of at most 200 characters (a key that
    is not UTF-8 came back changed; a longer one could not be parked on PostgreSQL). A
    key parked before the upgrade comes back as the bytes it was sent as."""
    from sqlalchemy import MetaData, String, insert, select

    from procure_runtime.db import add_runtime_tables

    location = Path(importlib.import_module("procure_shipping").__file__).parent / "migrations"
    db = Database(database_url("mig_parked_key"))
    try:
        await migrate.upgrade(db, location, "0002")
        old = MetaData()
        add_runtime_tables(old)
        parked = old.tables["parked"]
        parked.c.key.type = String(200)  # the parking lot as it was made before
        row = {"topic": "t", "partition": 0, "offset": 1, "value": b"v", "headers": {}}
        row |= {"reason": "r", "attempts": 1}
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda sync: parked.drop(sync))
            await conn.run_sync(lambda sync: parked.create(sync))
            for n, key in enumerate(["ch-é", "", None]):
                await conn.execute(insert(parked).values(event_id=f"e{n}", key=key, **row))
        await migrate.upgrade(db, location)
        now = MetaData()
        add_runtime_tables(now)
        async with db.engine.connect() as conn:
            keys = (await conn.execute(select(now.tables["parked"].c.key))).scalars().all()
        assert sorted(keys, key=repr) == sorted(["ch-é".encode(), b"", None], key=repr)
    finally:
        await db.dispose()
