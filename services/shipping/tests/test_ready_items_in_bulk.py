"""A receipt's lines join the Ready tab in a fixed number of statements
(`add_ready_many`) with what one line at a time gives: one item per charge and location,
quantities added, serials kept in order, an existing item's id kept."""

from pathlib import Path

from sqlalchemy import select

from procure_runtime.db import Database
from procure_shipping.models import metadata, ready_items
from procure_shipping.store import add_ready, add_ready_many


async def test_lines_merge_into_one_item_per_charge_and_location(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'shipping.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    try:
        async with db.session() as session:
            first = await add_ready(session, db.dialect, "c1", "loc-a", 1, ["S1"])
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
        async with db.session() as session:
            rows = (await session.execute(select(ready_items).order_by(ready_items.c.n))).all()
    finally:
        await db.engine.dispose()
    by_key = {(r.charge_id, r.location_id): r for r in rows}
    assert len(rows) == 3
    assert by_key["c1", "loc-a"].item_id == first
    assert (by_key["c1", "loc-a"].quantity, by_key["c1", "loc-a"].serials) == (
        4,
        ["S1", "S2", "S3", "S4"],
    )
    assert (by_key["c2", None].quantity, by_key["c1", "loc-b"].quantity) == (4, 5)
    assert ids == [first, by_key["c2", None].item_id, first, by_key["c1", "loc-b"].item_id]
