"""`run_alone`: a standalone statement built once, run by asyncpg itself on PostgreSQL
(the outbox relay's and the notifier's per-round and per-mail statements)."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, Integer, String, Table, bindparam, func, select, update
from sqlalchemy.exc import DBAPIError
from statements import listen

from procure_runtime.db import Database, UTCDateTime, among_param, new_metadata, run_alone

metadata = new_metadata()
rows = Table(
    "alone_rows",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("state", String(10), nullable=False),
    Column("at", UTCDateTime(), nullable=True),
)


@pytest.fixture
async def db(database_url):
    db = Database(database_url("alone"))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(rows.insert(), [{"id": n, "state": "new"} for n in range(1, 6)])
    yield db
    await db.dispose()


async def test_it_runs_a_kept_statement_with_its_own_and_the_given_values(db, db_backend) -> None:
    """Values the statement carries (the state, the limit) and values given at execution
    (a list for `among_param`, a timestamp in another zone, passed through the column
    type's bind processor) reach the database; rows come back positionally."""
    marked = (
        update(rows)
        .where(among_param(rows.c.id, "ids", db.dialect), rows.c.state == "new")
        .values(state="done", at=bindparam("at"))
    )
    unmarked = select(rows.c.id, rows.c.state).where(rows.c.state == "new").order_by(rows.c.id)
    unmarked = unmarked.limit(2)
    at = datetime(2026, 11, 30, 13, 0, tzinfo=timezone(timedelta(hours=2)))
    before, after = listen(db)
    async with db.autocommit() as conn:
        assert await run_alone(conn, marked, {"ids": [1, 3, 99], "at": at}) == []
        got = await run_alone(conn, unmarked)
    seen_before = [s for s in before if s.startswith(("UPDATE", "SELECT"))]
    seen_after = [s for s in after if s.startswith(("UPDATE", "SELECT"))]
    assert [tuple(r) for r in got] == [(2, "new"), (4, "new")]
    first_id, first_state = got[0]  # unpacks as SQLAlchemy's rows do
    assert (first_id, first_state) == (2, "new")
    async with db.engine.connect() as conn:  # committed: another connection sees it
        done = (await conn.execute(select(rows).where(rows.c.state == "done"))).all()
    assert [(r.id, r.at) for r in done] == [(1, at), (3, at)]
    assert all(r.at.utcoffset() == timedelta(0) for r in done)
    # Listeners of statements see both; on PostgreSQL SQLAlchemy did not run them (it
    # fires `after_cursor_execute` for what it runs itself).
    assert len(seen_before) == 2 and seen_before[0].startswith("UPDATE alone_rows")
    assert len(seen_after) == (0 if db_backend == "postgresql" else 2)


async def test_a_missing_value_is_an_error_before_anything_runs(db) -> None:
    marked = update(rows).where(rows.c.id == bindparam("row_id")).values(state="done")
    async with db.autocommit() as conn:
        with pytest.raises(Exception, match="row_id"):
            await run_alone(conn, marked, {})
    async with db.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).where(rows.c.state == "done")) == 0


@pytest.mark.parametrize("db_backend", ["postgresql"])  # SQLite's go through SQLAlchemy
async def test_postgresql_refuses_what_it_could_not_run_as_sqlalchemy_does(db) -> None:
    """Returned columns whose type processes results (UTC timestamps read back), and
    expanding `IN` parameters, are SQLAlchemy's to run."""
    async with db.autocommit() as conn:
        with pytest.raises(ValueError, match="result processing"):
            await run_alone(conn, select(rows.c.at))
        with pytest.raises(ValueError, match="expanding"):
            await run_alone(conn, select(rows.c.id).where(rows.c.id.in_([1, 2])))


@pytest.mark.parametrize("db_backend", ["postgresql"])  # SQLite has no server to close it
async def test_a_connection_the_server_closed_is_invalidated(db) -> None:
    """The relay keeps its connection; one that died under a statement must not go back
    to the pool as if usable."""
    query = select(rows.c.id).order_by(rows.c.id).limit(1)
    async with db.engine.connect() as killer:
        conn = await db.engine.connect()
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            assert [tuple(r) for r in await run_alone(conn, query)] == [(1,)]
            pid = (await conn.get_raw_connection()).driver_connection.get_server_pid()
            await killer.execute(select(func.pg_terminate_backend(pid)))
            # Raised as SQLAlchemy raises it, whichever way the news of the end arrived.
            with pytest.raises(DBAPIError):
                await run_alone(conn, query)
            assert conn.invalidated
        finally:
            await conn.close()
    async with db.autocommit() as fresh:  # the pool hands out a working connection
        assert [tuple(r) for r in await run_alone(fresh, query)] == [(1,)]


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_a_statement_cancelled_halfway_leaves_its_connection_unused(db) -> None:
    """A stopping sender may be cancelled in the middle of a statement: the connection,
    its answer still on the way, is not handed out again."""
    conn = await db.engine.connect()
    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        task = asyncio.create_task(run_alone(conn, select(func.pg_sleep(5))))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert conn.invalidated
    finally:
        await conn.close()


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_a_connection_in_a_transaction_is_refused(db) -> None:
    """SQLAlchemy begins a transaction at its first statement: a statement the driver
    ran first would commit on its own, whatever became of the transaction."""
    marked = update(rows).where(rows.c.id == 1).values(state="done")
    async with db.engine.connect() as conn:
        with pytest.raises(ValueError, match="autocommit"):
            await run_alone(conn, marked)
        await conn.rollback()
    async with db.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).where(rows.c.state == "done")) == 0
