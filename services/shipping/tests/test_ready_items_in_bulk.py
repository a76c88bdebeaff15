"""A receipt's lines join the Ready tab in one statement (`add_ready_many`) with what
one line at a time gives: one item per charge and location, quantities added, serials
kept in order, an existing item's id kept."""

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select

from procure_runtime.db import Database
from procure_shipping.models import metadata, ready_items
from procure_shipping.store import add_ready, add_ready_many


async def test_lines_merge_into_one_item_per_charge_and_location(
    database_url: Callable[[str], str],
) -> None:
    url = database_url("readyitems")
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    try:
        async with db.session() as session:
            first = await add_ready(session, db.dialect, "c1", "loc-a", 1, ["S1"])
        event.listen(db.engine.sync_engine, "before_cursor_execute", record)
        async with db.session() as session:
            ids = await add_ready_many(
                session,
                db.dialect,
                [
                    ("c1", "loc-a", 2, ["S2", "S3"]),
                    ("c2", None, 4, []),
                    ("c1", "loc-a", 1, ["S4"]),
                    ("c1", "loc-b", 5, []),
                ],
            )
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        async with db.session() as session:
            # Serials joining items that hold none, and none joining items that hold some.
            again = await add_ready_many(
                session, db.dialect, [("c1", "loc-b", 1, ["S9"]), ("c1", "loc-a", 1, [])]
            )
        async with db.session() as session:
            rows = (await session.execute(select(ready_items).order_by(ready_items.c.n))).all()
    finally:
        await db.engine.dispose()
    by_key = {(r.charge_id, r.location_id): r for r in rows}
    assert len(rows) == 3
    assert by_key["c1", "loc-a"].item_id == first
    assert (by_key["c1", "loc-a"].quantity, by_key["c1", "loc-a"].serials) == (
        5,
        ["S1", "S2", "S3", "S4"],
    )
    assert (by_key["c1", "loc-b"].quantity, by_key["c1", "loc-b"].serials) == (6, ["S9"])
    assert (by_key["c2", None].quantity, by_key["c2", None].serials) == (4, [])
    assert ids == [first, by_key["c2", None].item_id, first, by_key["c1", "loc-b"].item_id]
    assert again == [by_key["c1", "loc-b"].item_id, first]
    # One upsert (no read of the charges' items, no update per item): the read went by a
    # column no unique index leads and was a sequential scan under a stale cached plan.
    dml = [s for s in statements if not s.lstrip().upper().startswith(("BEGIN", "COMMIT"))]
    assert len(dml) == 1 and "ON CONFLICT" in dml[0], dml
