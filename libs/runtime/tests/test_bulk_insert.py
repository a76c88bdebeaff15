"""`insert_many` and `insert_all`: a batch's rows in one statement on PostgreSQL (one
array per column), stored exactly as SQLAlchemy's own insert stores them, on both
databases."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    event,
    func,
    select,
)

from procure_contracts.shapes import Person
from procure_runtime.db import (
    BigId,
    Database,
    MoneyAmount,
    UTCDateTime,
    insert_all,
    insert_many,
    insert_together,
    new_metadata,
    utcnow,
)

metadata = new_metadata()
things = Table(
    "things",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("note", Text, nullable=True),
    Column("count", Integer, nullable=False),
    Column("big", BigInteger, nullable=False, default=7),
    Column("flag", Boolean, nullable=False, default=False),
    Column("doc", JSON, nullable=True),
    Column("person", JSON, nullable=False, default=dict),
    Column("blob", LargeBinary, nullable=False),
    Column("price", MoneyAmount(), nullable=False),
    Column("at", UTCDateTime(), nullable=False, default=utcnow),
)
lines = Table(
    "lines",
    metadata,
    Column("n", BigId, primary_key=True, autoincrement=True),
    Column("label", String(20), nullable=False),
)
HELSINKI = timezone(timedelta(hours=2))
PERSON = Person(id="u-1", name="Zoë Åberg", email="zoe@example.com")


def row(n: int, **over: Any) -> dict[str, Any]:
    values = {
        "id": f"t{n}",
        "note": None if n % 2 else "ü \" ' \\ ,{}",
        "count": n,
        "doc": None if n % 3 == 0 else {"n": n, "list": [1, "a", None]},
        "blob": bytes([0, n % 256, 255]),
        "price": Decimal("12.34") + n,
        "at": datetime(2026, 11, 30, 12, 0, tzinfo=HELSINKI) + timedelta(seconds=n),
    }
    return values | over


async def stored(db: Database, table: Table, order: Any) -> list[dict[str, Any]]:
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in (await conn.execute(select(table).order_by(order)))]


@pytest.fixture
async def twin(database_url):
    """Two fresh databases of the test's backend: one written by SQLAlchemy's own
    executemany, the other by the helpers under test."""
    dbs = [Database(database_url("reference")), Database(database_url("bulk"))]
    for db in dbs:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    yield dbs
    for db in dbs:
        await db.dispose()


async def test_rows_are_stored_as_sqlalchemy_stores_them(twin) -> None:
    """Every column type the services use, NULLs, a contract model in a JSON column,
    a zone other than UTC, and the columns' defaults (a value, a function) for missing
    keys."""
    reference, bulk = twin
    defaulted = [row(n) for n in range(7)]  # no person, big, flag: their defaults
    given = [row(7, person=PERSON, big=1, flag=True)]
    async with reference.session() as session:
        await session.execute(things.insert(), defaulted)
        await session.execute(things.insert(), given)
    async with bulk.session() as session:
        await insert_all(session, things, defaulted)
        await insert_all(session, things, given)
    got = await stored(bulk, things, things.c.id)
    assert got == await stored(reference, things, things.c.id)
    assert got[7]["person"] == PERSON.model_dump(mode="json") and got[7]["flag"] is True
    assert got[0]["person"] == {} and got[0]["big"] == 7 and got[0]["flag"] is False
    assert got[0]["at"] == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


async def test_a_missing_timestamp_takes_its_default_now(twin) -> None:
    _, db = twin
    before = utcnow()
    async with db.session() as session:
        rows = [{k: v for k, v in row(n).items() if k != "at"} for n in range(3)]
        await insert_many(session, things, rows)
    after = utcnow()
    got = await stored(db, things, things.c.id)
    assert len(got) == 3 and all(before <= r["at"] <= after for r in got)


async def test_insert_many_ignores_rows_that_exist_and_returns_the_ones_it_added(twin) -> None:
    _, db = twin
    async with db.session() as session:
        first = await insert_many(session, things, [row(1), row(2)], things.c.id)
        again = await insert_many(
            session, things, [row(2), row(3), row(3, count=99)], things.c.id, things.c.count
        )
        none = await insert_many(session, things, [row(4)])
    assert sorted(r.id for r in first) == ["t1", "t2"]
    assert [(r.id, r.count) for r in again] == [("t3", 3)]  # the first of a repeated id
    assert none == []
    assert [r["id"] for r in await stored(db, things, things.c.id)] == ["t1", "t2", "t3", "t4"]


async def test_insert_all_refuses_a_row_that_exists_and_changes_nothing(twin) -> None:
    _, db = twin
    async with db.session() as session:
        await insert_all(session, things, [row(1)])
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        async with db.session() as session:
            await insert_all(session, things, [row(2), row(1)])
    assert [r["id"] for r in await stored(db, things, things.c.id)] == ["t1"]


async def test_autoincrement_ids_follow_the_order_of_the_rows(twin) -> None:
    """The outbox relay publishes in id order, so a batch's ids must follow its list."""
    _, db = twin
    labels = [f"l{n}" for n in (5, 3, 9, 1, 7, 2, 8, 0, 6, 4)] * 30
    async with db.session() as session:
        await insert_all(session, lines, [{"label": label} for label in labels])
    assert [r["label"] for r in await stored(db, lines, lines.c.n)] == labels


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
async def test_on_postgresql_a_batch_is_one_statement_whatever_its_size(twin) -> None:
    """One array per column: the statement's text is the same for 1 row and for 1,500,
    so one prepared statement serves every batch, and nothing is sent per row. (SQLite
    keeps SQLAlchemy's executemany: it has no round trips to save.)"""
    _, db = twin
    sent: list[tuple[str, Any]] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    async with db.session() as session:
        await insert_all(session, lines, [{"label": "one"}])
        await insert_all(session, lines, [{"label": f"l{n}"} for n in range(1500)])
        await insert_many(session, things, [row(n) for n in range(3)], things.c.id)
        await insert_many(session, things, [row(n) for n in range(3, 900)], things.c.id)
    assert len(sent) == 4
    assert sent[0][0] == sent[1][0] and "unnest(" in sent[0][0]
    assert sent[2][0] == sent[3][0] and "ON CONFLICT DO NOTHING" in sent[2][0]
    assert [len(params[0]) for _, params in sent] == [1, 1500, 3, 897]  # one array a column


stamped = Table(
    "stamped",
    metadata,
    Column("id", String(20), primary_key=True),
    Column("at", UTCDateTime(), nullable=False, default=func.now()),
)


async def test_a_default_the_database_works_out_is_left_to_sqlalchemy(twin) -> None:
    """A missing column whose default is SQL (here `now()`) cannot go in an array:
    such rows take SQLAlchemy's own path, and get the default all the same."""
    _, db = twin
    async with db.session() as session:
        added = await insert_many(session, stamped, [{"id": "a"}, {"id": "b"}], stamped.c.id)
        await insert_all(session, stamped, [{"id": "c"}])
    assert sorted(r.id for r in added) == ["a", "b"]
    rows = await stored(db, stamped, stamped.c.id)
    assert [r["id"] for r in rows] == ["a", "b", "c"] and all(r["at"] for r in rows)


async def test_insert_together_writes_every_table_in_one_statement_on_postgresql(
    db_backend, twin
) -> None:
    """A batch's deferred rows and its outbox: each table's rows as `insert_all` or
    `insert_many` would store them, in one round trip on PostgreSQL (one per table on
    SQLite); a part that cannot go as arrays sends every part on its own."""
    _, db = twin
    sent: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)

    async with db.session() as session:
        await insert_all(session, things, [row(1)])
        sent.clear()
        await insert_together(
            session,
            [
                (things, [row(1, count=99), row(2)], True),  # t1 exists: ignored
                (lines, [], False),  # nothing: no statement
                (lines, [{"label": "a"}, {"label": "b"}], False),
            ],
        )
        together = len(sent)
        sent.clear()
        await insert_together(
            session, [(stamped, [{"id": "s"}], True), (lines, [{"label": "c"}], False)]
        )
        apart = len(sent)
    assert (together, apart) == ((1, 2) if db_backend == "postgresql" else (2, 2))
    got = await stored(db, things, things.c.id)
    assert [(r["id"], r["count"]) for r in got] == [("t1", 1), ("t2", 2)]
    assert [r["label"] for r in await stored(db, lines, lines.c.n)] == ["a", "b", "c"]
    assert [r["id"] for r in await stored(db, stamped, stamped.c.id)] == ["s"]
