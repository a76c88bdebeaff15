"""Reads that lock rows order text keys by code point, the order in which writers list
the rows they upsert (Python's `sorted`), whatever the database's collation: two writers
locking the same rows in two orders could deadlock. Every locking read of the services
takes its ORDER BY from `lock_order`."""

import ast
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text

from procure_runtime.db import Database, lock_order

IDS = ["ch-B", "ch-a", "ch-b", "ch-A", "ch-é", "ch-10", "ch-9"]


async def test_lock_order_is_pythons_on_a_database_of_another_collation(database_url) -> None:
    db = Database(database_url("lock_order"))
    metadata = MetaData()
    table = Table("keys", metadata, Column("id", String(20), primary_key=True))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.drop_all)
            await conn.run_sync(metadata.create_all)
            if db.dialect == "postgresql":  # as a database made with en-US would order them
                await conn.execute(
                    text('ALTER TABLE keys ALTER COLUMN id TYPE varchar(20) COLLATE "en-x-icu"')
                )
            await conn.execute(insert(table), [{"id": i} for i in IDS])
        async with db.session() as session:
            plain = (await session.scalars(select(table.c.id).order_by(table.c.id))).all()
            locked = (
                await session.scalars(
                    select(table.c.id)
                    .order_by(*lock_order(db.dialect, table.c.id))
                    .with_for_update()
                )
            ).all()
    finally:
        await db.dispose()
    assert locked == sorted(IDS)
    if db.dialect == "postgresql":
        assert plain != sorted(IDS), "the collation orders these ids as Python does"


def test_lock_order_leaves_other_columns_and_sqlite_as_they_are() -> None:
    table = Table("t", MetaData(), Column("id", String(20)), Column("n", Integer))
    assert lock_order("sqlite", table.c.id, table.c.n) == [table.c.id, table.c.n]
    pg = lock_order("postgresql", table.c.id, table.c.n)
    assert [str(c) for c in pg] == ['t.id COLLATE "C"', "t.n"]


SERVICES = Path(__file__).resolve().parents[3] / "services"


def _chain(call: ast.Call) -> list[ast.Call]:
    """The calls of a method chain below `call`: `select(…).where(…).order_by(…)`."""
    calls = []
    node: ast.AST = call.func
    while isinstance(node, ast.Attribute) and isinstance(node.value, ast.Call):
        calls.append(node.value)
        node = node.value.func
    return calls


def test_every_locking_read_of_the_services_orders_by_lock_order() -> None:
    checked, wrong = 0, []
    for path in sorted(SERVICES.glob("*/src/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "with_for_update"
            ):
                continue
            if any(k.arg == "skip_locked" for k in node.keywords):
                continue  # never waits for a lock, so never deadlocks
            for call in _chain(node):
                if isinstance(call.func, ast.Attribute) and call.func.attr == "order_by":
                    checked += 1
                    if not all(
                        isinstance(a, ast.Starred)
                        and isinstance(a.value, ast.Call)
                        and getattr(a.value.func, "id", None) == "lock_order"
                        for a in call.args
                    ):
                        wrong.append(f"{path.relative_to(SERVICES)}:{call.lineno}")
    assert checked >= 8  # purchasing, quotes, shipping and inventory lock several rows
    assert wrong == []
