"""`run_in_transaction`: the runtime's many-row inserts (`insert_many`, `insert_all`,
`insert_together`), run by asyncpg itself inside the session's transaction on
PostgreSQL, with SQLAlchemy's transaction, listeners and errors kept."""

import asyncio

import pytest
from sqlalchemy import Column, Integer, String, Table, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from statements import listen

from procure_runtime.consumer import is_transient
from procure_runtime.db import (
    Database,
    among,
    insert_all,
    insert_many,
    insert_together,
    new_metadata,
    run_in_transaction,
    update_many,
)

metadata = new_metadata()
items = Table(
    "tx_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(10), nullable=False),
)
notes = Table(
    "tx_notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("text", String(50), nullable=False),
)

counts = Table(
    "tx_counts",
    metadata,
    Column("k1", String(10), primary_key=True),
    Column("k2", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("label", String(10), nullable=False),
)


@pytest.fixture
async def db(database_url):
    db = Database(database_url("tx"))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield db
    await db.dispose()


async def _names(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.scalars(select(items.c.name).order_by(items.c.id))).all())


async def test_the_first_statement_of_a_transaction_is_in_it(db, db_backend) -> None:
    """The inbox claim opens every batch's transaction: run by the driver, it must still
    be inside the transaction SQLAlchemy commits or rolls back, not committed alone."""
    with pytest.raises(RuntimeError, match="undone"):
        async with db.session() as session:
            got = await insert_many(session, items, [{"id": 1, "name": "a"}], items.c.id)
            assert [r.id for r in got] == [1]
            if db_backend == "postgresql":  # SQLite's writer locks out other connections
                assert await _names(db) == []  # not committed: another connection sees none
            raise RuntimeError("undone")
    assert await _names(db) == []
    async with db.session() as session:
        await insert_all(session, items, [{"id": 2, "name": "b"}, {"id": 3, "name": "c"}])
        await insert_together(
            session, [(items, [{"id": 4, "name": "d"}], True), (notes, [{"text": "n"}], False)]
        )
    assert await _names(db) == ["b", "c", "d"]


async def test_rows_read_by_attribute_and_listeners_see_the_statement(db, db_backend) -> None:
    before, after = listen(db)
    async with db.session() as session:
        await insert_all(session, items, [{"id": 1, "name": "a"}])
        got = await insert_many(
            session,
            items,
            [{"id": 1, "name": "x"}, {"id": 2, "name": "b"}],
            items.c.id,
            items.c.name,
        )
    assert [(r.id, r.name) for r in got] == [(2, "b")]  # the one actually inserted
    inserts = [s for s in before if s.startswith(("INSERT", "WITH"))]
    assert len(inserts) == 2 and all("tx_items" in s for s in inserts)
    # On PostgreSQL the driver ran them (SQLAlchemy fires `after_cursor_execute` for what
    # it runs itself); on SQLite SQLAlchemy did.
    ran_by_sqlalchemy = [s for s in after if s.startswith(("INSERT", "WITH"))]
    assert len(ran_by_sqlalchemy) == (0 if db_backend == "postgresql" else 2)


async def test_errors_are_sqlalchemys_and_leave_the_connection_usable(db, db_backend) -> None:
    """The HTTP layer answers `IntegrityError` with 409; the consumer retries what
    `is_transient` calls transient and dead-letters the rest: both read SQLAlchemy's
    exceptions."""
    async with db.session() as session:
        await insert_all(session, items, [{"id": 1, "name": "a"}])
    with pytest.raises(IntegrityError) as conflict:
        async with db.session() as session:
            await insert_all(session, items, [{"id": 2, "name": "b"}, {"id": 1, "name": "c"}])
    assert not conflict.value.connection_invalidated and not is_transient(conflict.value)
    if db_backend == "postgresql":  # SQLite does not hold a VARCHAR to its length
        # Refused, not cut to ten characters (an explicit cast to the column's type
        # would have cut it), and raised as SQLAlchemy raises it for its own statement.
        long = {"id": 5, "name": "far too long a name"}
        with pytest.raises(DBAPIError) as ours:
            async with db.session() as session:
                await insert_all(session, items, [long])
        with pytest.raises(DBAPIError) as theirs:
            async with db.session() as session:
                await session.execute(items.insert(), [long])
        assert type(ours.value) is type(theirs.value)
        assert type(ours.value.orig) is type(theirs.value.orig)
        assert ours.value.orig.sqlstate == "22001"  # type: ignore[union-attr]
    async with db.session() as session:  # the pool's connections still work
        await insert_all(session, items, [{"id": 2, "name": "b"}])
    assert await _names(db) == ["a", "b"]


@pytest.mark.parametrize("db_backend", ["postgresql"])  # SQLite has no server to close it
async def test_a_lost_connection_is_invalidated_and_transient(db) -> None:
    async with db.engine.connect() as killer:
        with pytest.raises(DBAPIError) as lost:
            async with db.session() as session:
                await insert_all(session, items, [{"id": 1, "name": "a"}])
                conn = await session.connection()
                pid = (await conn.get_raw_connection()).driver_connection.get_server_pid()
                await killer.execute(select(func.pg_terminate_backend(pid)))
                await asyncio.sleep(0.2)
                await insert_all(session, items, [{"id": 2, "name": "b"}])
    assert lost.value.connection_invalidated and is_transient(lost.value)
    async with db.session() as session:
        await insert_all(session, items, [{"id": 3, "name": "c"}])
    assert await _names(db) == ["c"]


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_a_database_restart_seen_here_recycles_the_pools_other_connections(db) -> None:
    """After a restart every pooled connection is dead. SQLAlchemy, seeing one lost,
    recycles all the older ones; so must a statement the driver ran, or each would fail
    once more in whatever next checks it out (an HTTP request: a 503)."""

    async def pooled() -> None:  # two connections in the pool, both used once
        async with db.session() as one, db.session() as two:
            await one.execute(select(1))
            await two.execute(select(1))

    await pooled()
    outside = Database(db.url)  # not the pool's: every backend of the pool is killed
    try:
        async with outside.engine.connect() as killer:
            await killer.execute(
                select(func.pg_terminate_backend(text("pid")))
                .select_from(text("pg_stat_activity"))
                .where(text("datname = current_database() AND pid <> pg_backend_pid()"))
            )
    finally:
        await outside.dispose()
    await asyncio.sleep(0.2)
    with pytest.raises(DBAPIError) as lost:
        async with db.session() as session:
            await insert_all(session, items, [{"id": 1, "name": "a"}])
    assert lost.value.connection_invalidated
    await pooled()  # neither connection handed out now is one of the dead
    async with db.session() as session:
        await insert_all(session, items, [{"id": 2, "name": "b"}])
    assert await _names(db) == ["b"]


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_a_statement_cancelled_halfway_leaves_its_connection_unused(db) -> None:
    """A stopping service cancels its consumer, maybe in the middle of a statement."""

    async def slow() -> None:
        async with db.session() as session:
            await run_in_transaction(session, "SELECT pg_sleep(5)", ())

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.engine.pool.checkedout() == 0
    async with db.session() as session:
        await insert_all(session, items, [{"id": 1, "name": "a"}])
    assert await _names(db) == ["a"]


@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_a_session_outside_a_transaction_is_refused(db) -> None:
    """On an autocommit connection the driver's statement would commit on its own."""
    autocommit = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    async with AsyncSession(autocommit) as session:
        with pytest.raises(ValueError, match="in a transaction"):
            await insert_all(session, items, [{"id": 1, "name": "a"}])
    assert await _names(db) == []


async def _counts(db: Database) -> list[tuple[str, int, int, str]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(counts).order_by(counts.c.k1, counts.c.k2))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_update_many_changes_each_row_in_the_order_given(db, db_backend) -> None:
    """`update_many` is one UPDATE a row, in the order given, as SQLAlchemy's
    executemany was: a key named twice is changed twice (added to twice, or the last
    value kept), a key no row has changes nothing. On PostgreSQL the driver runs it
    (bench/levers.md, lever 62); listeners still see it."""
    async with db.session() as session:
        await insert_all(
            session,
            counts,
            [
                {"k1": "a", "k2": 1, "n": 0, "label": "x"},
                {"k1": "a", "k2": 2, "n": 0, "label": "x"},
            ],
        )
    before, after = listen(db)
    async with db.session() as session:
        await update_many(
            session,
            counts,
            ("k1", "k2"),
            [
                {"k1": "a", "k2": 1, "n": 2},
                {"k1": "a", "k2": 2, "n": 5},
                {"k1": "a", "k2": 1, "n": 3},
            ],
            add=True,
        )
        await update_many(
            session,
            counts,
            ("k1", "k2"),
            [
                {"k1": "a", "k2": 2, "label": "y"},
                {"k1": "a", "k2": 2, "label": "z"},
                {"k1": "b", "k2": 9, "label": "nobody"},
            ],
        )
        await update_many(session, counts, ("k1", "k2"), [{"k1": "a", "k2": 1, "label": "one"}])
    assert await _counts(db) == [("a", 1, 5, "one"), ("a", 2, 5, "z")]
    updates = [s for s in before if s.startswith("UPDATE")]
    assert len(updates) == 3 and all("tx_counts" in s for s in updates)
    ran_by_sqlalchemy = [s for s in after if s.startswith("UPDATE")]
    assert len(ran_by_sqlalchemy) == (0 if db_backend == "postgresql" else 3)


async def test_an_update_many_that_fails_is_sqlalchemys_error_and_changes_nothing(
    db, db_backend
) -> None:
    async with db.session() as session:
        await insert_all(session, counts, [{"k1": "a", "k2": 1, "n": 0, "label": "x"}])
    with pytest.raises(IntegrityError):  # NOT NULL
        async with db.session() as session:
            await update_many(
                session,
                counts,
                ("k1", "k2"),
                [
                    {"k1": "a", "k2": 1, "n": 7, "label": "y"},
                    {"k1": "a", "k2": 1, "n": 8, "label": None},
                ],
            )
    assert await _counts(db) == [("a", 1, 0, "x")]


@pytest.mark.parametrize("db_backend", ["postgresql"])  # server states SQLite has not
async def test_a_server_in_trouble_is_transient_and_bad_data_is_not(db) -> None:
    """What the server says of itself is retried as an outage is: a statement timed out
    (57014), a read-only server after a failover (25006); a full disk (53100) is their
    kin. They were handler errors, so every event met during them was dead-lettered."""
    states = {}
    for setup, statement in [
        ("SET LOCAL statement_timeout = 1", "SELECT pg_sleep(1)"),
        ("SET TRANSACTION READ ONLY", "CREATE TEMPORARY TABLE t (x int)"),
        ("SELECT 1", "SELECT CAST('x' AS integer)"),  # the data: the same again and again
    ]:
        with pytest.raises(DBAPIError) as failed:
            async with db.session() as session:
                await session.execute(text(setup))
                await session.execute(text(statement))
        states[failed.value.orig.sqlstate] = is_transient(failed.value)  # type: ignore[union-attr]
    assert states == {"57014": True, "25006": True, "22P02": False}


async def test_among_takes_more_values_than_sqlite_takes_parameters(db) -> None:
    """A receipt line's serials were checked with one parameter each: SQLite refuses more
    than its build allows (32,766 by default, 250,000 in Debian's) as "too many SQL
    variables", an OperationalError, so a 503 that retrying never cured."""
    async with db.session() as session:
        await insert_all(session, items, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    many = [f"s-{n}" for n in range(260_000)] + ["b"]
    async with db.session() as session:
        found = await session.scalars(
            select(items.c.id).where(among(items.c.name, many, db.dialect))
        )
        assert found.all() == [2]
        few = await session.scalars(
            select(items.c.id).where(among(items.c.name, ["a"], db.dialect))
        )
        assert few.all() == [1]


async def test_the_readiness_ping_does_not_wait_behind_a_write(db) -> None:
    """On SQLite every transaction takes the write lock at BEGIN: a ping in one waited for
    a long write (a bulk event, up to the 30 s busy timeout), and `/readyz` said the
    database was unreachable. On PostgreSQL a SELECT 1 never waited."""
    async with db.session() as writing:
        await writing.execute(items.insert().values(id=1, name="held"))
        await asyncio.wait_for(db.ping(), timeout=2)  # the write is still open
