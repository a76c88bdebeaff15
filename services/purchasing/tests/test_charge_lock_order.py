"""Every writer of charges locks their rows in id order, so two transactions on the same
charges never deadlock on PostgreSQL (one would be aborted: a 503 and a retry). Canceling
a PO whose lines are in the reverse order of their charges' ids takes the locks in id
order too, not in the lines' order; in code point order, the order of Python's `sorted`
by which writers list the rows of an upsert, whatever the database's collation."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import eventually, fed_directly
from procure_purchasing import orders
from procure_purchasing.models import charges, po_lines, purchase_orders

PRODUCT = f.product().model_dump(mode="json")


async def new_po_in_reverse_id_order(runtime: Any, first: str, second: str) -> None:
    """po-1 (New): line 1 for `second`, line 2 for `first`, each charge's units on it."""
    async with runtime.db.session() as session:
        await session.execute(
            insert(charges),
            [
                {
                    "id": charge_id,
                    "product": PRODUCT,
                    "organization": f.organization().model_dump(mode="json"),
                    "destination": f.address().model_dump(mode="json"),
                    "sent": 2,
                    "ordered": 2,
                }
                for charge_id in (first, second)
            ],
        )
        await session.execute(
            insert(purchase_orders).values(
                id="po-1",
                number="PO-000001",
                status=POStatus.NEW,
                vendor=PRODUCT["vendor"],
                ship_kind="location",
                location_id="loc-1",
                created_by=f.person().model_dump(mode="json"),
            )
        )
        await session.execute(
            insert(po_lines),
            [
                {
                    "id": f"l{position}",
                    "po_id": "po-1",
                    "position": position,
                    "charge_id": charge_id,
                    "product": PRODUCT,
                    "quantity": 2,
                    "unit_cost": "10.00",
                }
                for position, charge_id in ((1, second), (2, first))
            ],
        )


# (ids in Python's order, the charges' id column collation: None keeps the database's)
CASES = [
    (("ch-1", "ch-2"), None),
    # en-US (as most databases not made with the C collation) puts ch-a before ch-B.
    (("ch-B", "ch-a"), "en-x-icu"),
]


@pytest.mark.parametrize(("ids", "collation"), CASES, ids=["database", "en-US"])
async def test_cancel_locks_its_charges_in_id_order(
    postgres_url: Callable[[str], str],
    tmp_path: Path,
    ids: tuple[str, str],
    collation: str | None,
) -> None:
    first, second = ids
    assert sorted(ids) == [first, second]
    runtime = await fed_directly("purchasing", postgres_url("lockorder"), tmp_path)
    try:
        if collation:
            async with runtime.db.session() as session:
                await session.execute(
                    text(
                        f'ALTER TABLE charges ALTER COLUMN id TYPE varchar(200) COLLATE "{collation}"'
                    )
                )
                assert await session.scalar(
                    text(f'SELECT :a > :b COLLATE "{collation}"'), {"a": first, "b": second}
                ), "the collation orders these ids unlike Python"
        await new_po_in_reverse_id_order(runtime, first, second)

        async def cancel() -> None:
            async with runtime.transaction() as uow:
                await orders.cancel(uow, "po-1")

        async def cancel_waits_for_a_lock() -> bool:
            async with runtime.db.autocommit() as conn:
                waiting = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            return bool(waiting)

        # Another PO's work on both charges, locking them in id order as every writer does
        # (an upsert of rows sorted in Python takes them in that order).
        async with runtime.db.engine.connect() as other:
            await other.execute(select(charges.c.id).where(charges.c.id == first).with_for_update())
            canceling = asyncio.create_task(cancel())
            await eventually(cancel_waits_for_a_lock)
            # In id order the cancel waits for `first` holding no charge, so `second` is
            # free; in its lines' order, or the collation's, it would hold `second`
            # already: a deadlock, one of the two aborted.
            await other.execute(
                select(charges.c.id).where(charges.c.id == second).with_for_update()
            )
            await other.commit()
        await asyncio.wait_for(canceling, 30)

        async with runtime.db.session() as session:
            rows = (
                await session.execute(select(charges.c.id, charges.c.ordered, charges.c.queued))
            ).all()
            status = await session.scalar(select(purchase_orders.c.status))
    finally:
        await runtime.db.engine.dispose()
    assert sorted(tuple(r) for r in rows) == [(first, 0, 2), (second, 0, 2)]
    assert status == POStatus.CANCELED
