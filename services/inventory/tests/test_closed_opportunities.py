"""R2 under concurrency: a reservation and its opportunity's close (won or lost) lock the
same row, so the close never misses a reservation made while it is being applied, and
a reservation made while the close is being applied is refused."""

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_inventory import stock
from procure_inventory.domain import OpportunityClosed, Outcome, ReservationStatus
from procure_inventory.models import reservations
from procure_inventory.picking import close_opportunities, lock_open_opportunity


async def test_a_reservation_made_while_its_opportunity_closes_is_refused(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runtime = await fed_directly("inventory", database_url("closing"), tmp_path)
    try:
        async with runtime.transaction() as closing:
            await close_opportunities(closing, ["opp-1"], Outcome.WON)

            async def reserve() -> None:
                async with runtime.transaction() as uow:
                    await lock_open_opportunity(uow, "opp-1")

            reserving = asyncio.create_task(reserve())
            await asyncio.sleep(0.5)
            assert not reserving.done()  # waits for the close to commit
        with pytest.raises(OpportunityClosed):
            await reserving
    finally:
        await runtime.db.engine.dispose()


async def test_a_close_applied_while_a_reservation_is_made_releases_it(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runtime = await fed_directly("inventory", database_url("reserving"), tmp_path)
    try:
        async with runtime.transaction() as uow:
            assert await stock.change(uow.session, "p-1", "loc-1", on_hand=1)
        async with runtime.transaction() as reserving:
            await lock_open_opportunity(reserving, "opp-2")
            assert await stock.change(reserving.session, "p-1", "loc-1", reserved=1)
            await reserving.session.execute(
                reservations.insert().values(
                    id="r-1",
                    opportunity_id="opp-2",
                    quote_item_id="qi-1",
                    product_id="p-1",
                    location_id="loc-1",
                    quantity=1,
                    status=ReservationStatus.ACTIVE,
                )
            )
            won = f.opportunity_won(f.charge(f.product()), opportunity_id="opp-2")
            closing = asyncio.create_task(
                runtime.consumer.process(record("opportunity.won", won, 0))
            )
            await asyncio.sleep(0.5)
            assert not closing.done()  # waits for the reservation to commit
        await closing
        async with runtime.db.session() as session:
            status = await session.scalar(
                select(reservations.c.status).where(reservations.c.id == "r-1")
            )
            level = await stock.level(session, "p-1", "loc-1")
        assert status == ReservationStatus.RELEASED
        assert (level.on_hand, level.reserved) == (1, 0)
    finally:
        await runtime.db.engine.dispose()
