"""A charge's history is read by its charge id through the unique (charge_id, event_id)
index, whose first column that is; an index on charge_id alone (migration 0001) only
cost every history row one more index entry, and migration 0003 drops it."""

from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

import procure_quotes
from procure_quotes.models import history
from procure_runtime import migrate
from procure_runtime.db import Database

MIGRATIONS = Path(procure_quotes.__file__).parent / "migrations"


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_a_charges_history_is_read_by_the_unique_index_and_has_no_index_of_its_own(
    db_backend: str, database_url
) -> None:
    db = Database(database_url("history_indexes"))
    try:
        await migrate.upgrade(db, MIGRATIONS)
        async with db.engine.connect() as conn:
            indexes = await conn.run_sync(
                lambda sync: {
                    tuple(i["column_names"])
                    for i in inspect(sync).get_indexes("charge_history")
                    if i["column_names"][0] != "sales_order_id"
                }
            )
            assert indexes == {("charge_id", "event_id")}  # the unique constraint's
            # The read a charge's page makes, planned as if the table were large.
            read = select(history).where(history.c.charge_id == "ch-1")
            read = read.order_by(history.c.time, history.c.id)
            sql = str(read.compile(conn.sync_connection, compile_kwargs={"literal_binds": True}))
            await conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join((await conn.execute(text(f"EXPLAIN {sql}"))).scalars())
        assert "uq_charge_history_charge_id" in plan and "Seq Scan" not in plan, plan
    finally:
        await db.dispose()
