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


# The revision before each service's step that indexes the inbox by age.
BEFORE_INBOX_AGE = {
    "quotes": "0009",
    "inventory": "0009",
    "purchasing": "0004",
    "receiving": "0004",
    "shipping": "0003",
    "notifier": "0003",
}


@pytest.mark.parametrize("service", SERVICES)
async def test_an_earlier_inbox_gets_the_index_its_prune_reads(
    service: str, database_url: Callable[[str], str]
) -> None:
    """An inbox made before the retention (no index on `processed_at`) gets it, BRIN on
    PostgreSQL, and keeps its rows; downgrading takes the index away again."""
    from alembic import command
    from sqlalchemy import inspect, text

    from procure_runtime.db import INBOX_AGE_INDEX

    location = Path(importlib.import_module(f"procure_{service}").__file__).parent / "migrations"
    db = Database(database_url(f"mig_inbox_{service}"))

    def alembic(step: Callable[[object], None]) -> Callable[[object], None]:
        return lambda sync: step(migrate.alembic_config(location, sync))

    def indexes(sync: object) -> set[str]:
        return {i["name"] for i in inspect(sync).get_indexes("inbox")}

    try:
        await migrate.upgrade(db, location, BEFORE_INBOX_AGE[service])
        async with db.engine.begin() as conn:
            # The inbox as the earlier release made it (0001 makes the tables as they
            # are now).
            await conn.execute(text(f"DROP INDEX {INBOX_AGE_INDEX}"))
            await conn.execute(
                text(
                    "INSERT INTO inbox (event_id, topic, processed_at) "
                    "VALUES ('e-1', 't', CURRENT_TIMESTAMP)"
                )
            )
        await migrate.upgrade(db, location)
        async with db.engine.connect() as conn:
            assert INBOX_AGE_INDEX in await conn.run_sync(indexes)
            assert (await conn.execute(text("SELECT event_id FROM inbox"))).scalars().all() == [
                "e-1"
            ]
            if db.dialect == "postgresql":
                found = await conn.scalar(
                    text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                    {"n": INBOX_AGE_INDEX},
                )
                assert "USING brin" in found
        async with db.engine.begin() as conn:
            await conn.run_sync(
                alembic(lambda cfg: command.downgrade(cfg, BEFORE_INBOX_AGE[service]))
            )
        async with db.engine.connect() as conn:
            assert INBOX_AGE_INDEX not in await conn.run_sync(indexes)
    finally:
        await db.dispose()
