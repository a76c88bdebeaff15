"""Upgrading inventory to follow shipping's per-charge seqs (migration 0005): which seqs a
charge already known here used cannot be told from its database (drop-ship deliveries and
items with no location left no trace), so such a charge keeps applying its deliveries as
they come; any other starts at seq 1."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import column, insert, select, table

import procure_inventory
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_inventory.models import (
    announced,
    conversions,
    delivery_order,
    holds,
    opportunities,
    reservations,
    stock,
)
from procure_runtime import migrate
from procure_runtime.db import Database, UTCDateTime

MIGRATIONS = Path(procure_inventory.__file__).parent / "migrations"


async def test_charges_known_before_the_upgrade_apply_deliveries_as_they_come(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    url = database_url("seq_upgrade")
    db = Database(url)
    try:
        await migrate.upgrade(db, MIGRATIONS, "0004")
        async with db.engine.begin() as conn:  # ch-old: 2 units received, held for it
            await conn.execute(
                insert(stock).values(product_id="p-1", location_id="loc-1", on_hand=2, picked=2)
            )
            await conn.execute(
                insert(holds).values(
                    charge_id="ch-old", product_id="p-1", location_id="loc-1", quantity=2
                )
            )
        await migrate.upgrade(db, MIGRATIONS)
    finally:
        await db.dispose()

    runtime = await fed_directly("inventory", url, tmp_path)
    try:
        old = f.delivered_item("it-1", "ch-old", "p-1", 1, seq=5, transfer_id="tr-1")
        new = f.delivered_item("it-2", "ch-new", "p-1", 1, seq=2, transfer_id="tr-2")
        for n, item in enumerate([old, new]):
            await runtime.consumer.process(
                record("shipment.delivered", f.shipment_delivered(n, item), n)
            )
        async with runtime.db.session() as session:
            order = {c: s for c, s in await session.execute(select(delivery_order))}
            level = (await session.execute(select(stock.c.on_hand, stock.c.picked))).one()
        assert order == {"ch-old": None}  # ch-new's row went with its parked transaction
        assert tuple(level) == (1, 1)  # ch-old's delivery applied
        assert await runtime.consumer.parked_count() == 1  # ch-new's waits for seq 1
    finally:
        await runtime.db.engine.dispose()


async def test_charges_acted_for_before_the_upgrade_are_routed_once(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Migration 0006 records the charges inventory has acted for (a listed reservation
    converted, units held): announced again afterwards, they pick nothing."""
    url = database_url("announced_upgrade")
    db = Database(url)
    try:
        await migrate.upgrade(db, MIGRATIONS, "0005")
        async with db.engine.begin() as conn:
            await conn.execute(insert(conversions).values(charge_id="ch-1", reservation_id="r-1"))
            await conn.execute(
                insert(holds).values(
                    charge_id="ch-2", product_id="p-1", location_id="loc-1", quantity=1
                )
            )
        await migrate.upgrade(db, MIGRATIONS)
        async with db.engine.connect() as conn:
            found = set(await conn.execute(select(announced.c.kind, announced.c.id)))
        assert found == {("charge", "ch-1"), ("charge", "ch-2")}
    finally:
        await db.dispose()

    runtime = await fed_directly("inventory", url, tmp_path)
    try:  # announced again: a direct charge and a won, each listing a reservation
        product = f.product(id="p-1", inventory=True)
        again = [
            ("charge.created", f.charge_created(f.charge(product, 1, id="ch-1", **_listing))),
            ("opportunity.won", f.opportunity_won(f.charge(product, 1, id="ch-2", **_listing))),
        ]
        for n, (topic, data) in enumerate(again):
            await runtime.consumer.process(record(topic, data, n))
        outbox = runtime.metadata.tables["outbox"]
        async with runtime.db.session() as session:
            sent = (await session.execute(select(outbox.c.topic))).scalars().all()
        assert sent == []  # no pick, no pick.failed (r-1 no longer exists)
    finally:
        await runtime.db.engine.dispose()


_listing = {"reservations": [("r-1", "loc-1", 1)]}


async def test_reservations_lost_before_the_upgrade_are_taken_back_by_a_later_won(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Migration 0008 marks the reservations their opportunity's loss released (in the
    loss's transaction: at or after its close), not one a person deleted before it."""
    url = database_url("loss_upgrade")
    db = Database(url)
    lost_at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    before = table(  # as the table was at 0007
        "reservations",
        *(column(c) for c in ("id", "opportunity_id", "quote_item_id", "product_id")),
        *(column(c) for c in ("location_id", "quantity", "status", "picked")),
        column("created_at", UTCDateTime()),
        column("closed_at", UTCDateTime()),
    )
    try:
        await migrate.upgrade(db, MIGRATIONS, "0007")
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(stock).values(product_id="p-1", location_id="loc-1", on_hand=2)
            )
            await conn.execute(
                insert(opportunities).values(id="opp-1", outcome="lost", closed_at=lost_at)
            )
            for rid, closed in (("r-lost", lost_at), ("r-deleted", lost_at - timedelta(hours=1))):
                await conn.execute(
                    insert(before).values(
                        id=rid,
                        opportunity_id="opp-1",
                        quote_item_id=f"qi-{rid}",
                        product_id="p-1",
                        location_id="loc-1",
                        quantity=1,
                        status="released",
                        picked=0,
                        created_at=lost_at - timedelta(days=1),
                        closed_at=closed,
                    )
                )
        await migrate.upgrade(db, MIGRATIONS)
        async with db.engine.connect() as conn:
            rows = await conn.execute(select(reservations.c.id, reservations.c.released_on_loss))
            marked = {rid: flag for rid, flag in rows}
        assert marked == {"r-lost": True, "r-deleted": False}
    finally:
        await db.dispose()

    runtime = await fed_directly("inventory", url, tmp_path)
    try:
        product = f.product(id="p-1", inventory=True)
        listed = [("r-lost", "loc-1", 1), ("r-deleted", "loc-1", 1)]
        won = f.opportunity_won(
            f.charge(product, 2, id="ch-1", reservations=listed), opportunity_id="opp-1"
        )
        await runtime.consumer.process(record("opportunity.won", won, 0))
        async with runtime.db.session() as session:
            picked = await session.scalar(select(stock.c.picked))
        assert picked == 1  # r-lost's unit taken back; r-deleted's fails
    finally:
        await runtime.db.engine.dispose()


async def test_reservations_taken_back_before_the_upgrade_are_not_taken_again(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Migration 0012: a reservation a claim took back after the loss (picked), and every
    reservation of an opportunity won after its loss, is settled: a charge that lists one
    after the upgrade fails, as it would have had the loss come last. One a loss released
    and nothing claimed yet is still taken back."""
    url = database_url("retaken_upgrade")
    db = Database(url)
    rows = [  # (id, opportunity, status, picked)
        ("r-retaken", "opp-lost", "picked", 1),
        ("r-open", "opp-lost", "released", 0),
        ("r-won", "opp-won", "released", 0),
    ]
    try:
        await migrate.upgrade(db, MIGRATIONS, "0011")
        async with db.engine.begin() as conn:
            await conn.execute(
                insert(stock).values(product_id="p-1", location_id="loc-1", on_hand=9, picked=1)
            )
            for opp, outcome in (("opp-lost", "lost"), ("opp-won", "won")):
                await conn.execute(insert(opportunities).values(id=opp, outcome=outcome))
            for rid, opp, status, picked in rows:
                await conn.execute(
                    insert(reservations).values(
                        id=rid,
                        opportunity_id=opp,
                        quote_item_id=f"qi-{rid}",
                        product_id="p-1",
                        location_id="loc-1",
                        quantity=2,
                        status=status,
                        picked=picked,
                        released_on_loss=True,
                    )
                )
        await migrate.upgrade(db, MIGRATIONS)
        async with db.engine.connect() as conn:
            marks = await conn.execute(select(reservations.c.id, reservations.c.released_on_loss))
            assert dict(marks.all()) == {"r-retaken": False, "r-open": True, "r-won": False}
    finally:
        await db.dispose()

    runtime = await fed_directly("inventory", url, tmp_path)
    try:
        product = f.product(id="p-1", inventory=True)
        for n, (rid, _, _, _) in enumerate(rows):
            listed = f.charge(product, 1, id=f"ch-{rid}", reservations=[(rid, "loc-1", 1)])
            await runtime.consumer.process(record("charge.created", f.charge_created(listed), n))
        async with runtime.db.session() as session:
            held = dict((await session.execute(select(holds.c.charge_id, holds.c.quantity))).all())
        assert held == {"ch-r-open": 1}  # only r-open was still to take back
    finally:
        await runtime.db.engine.dispose()
