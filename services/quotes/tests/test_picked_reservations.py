"""A reservation a direct charge picked whole (`charge.created` listing it) is no longer
held for its quote item; no `stock.released` says so, only the `units.picked` naming it.
Quotes kept showing it on the open opportunity, and the wizard listed it again: the won
then failed its pick and ordered those units, or was refused (409) once a replacement
reservation made the item look over-reserved."""

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import insert

from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_quotes.api import _items
from procure_quotes.models import opportunities, quote_items


async def _open_quote(runtime) -> None:
    """Open opportunity opp-1 with quote item qi-1 (3 units)."""
    async with runtime.db.session() as session:
        await session.execute(
            insert(opportunities).values(
                id="opp-1", name="Fit-out", owner={}, organization={}, status="Open"
            )
        )
        await session.execute(
            insert(quote_items).values(
                id="qi-1", opportunity_id="opp-1", product={}, quantity=3, unit_price=1
            )
        )


@pytest.mark.parametrize("picked_first", [False, True])
async def test_a_reservation_picked_for_a_charge_leaves_its_quote_item(
    database_url: Callable[[str], str], tmp_path: Path, picked_first: bool
) -> None:
    product = f.product(inventory=True)
    charge = f.charge(product, 2, reservations=[("res-1", "loc-1", 2)])
    reserved = ev.StockReservationV1(
        reservation_id="res-1",
        opportunity_id="opp-1",
        quote_item_id="qi-1",
        product_id=product.id,
        location_id="loc-1",
        quantity=2,
    )
    other = reserved.model_copy(update={"reservation_id": "res-2", "quantity": 1})
    picked = ev.UnitsPickedV1(
        charge_id=charge.id, location_id="loc-1", quantity=2, reservation_id="res-1"
    )
    events = [
        record("charge.created", f.charge_created(charge), 0),
        record("stock.reserved", reserved, 1),
        record("stock.reserved", other, 2),
        record("units.picked", picked, 3),
    ]
    if picked_first:  # topics are not ordered with each other
        events = [events[0], events[3], events[1], events[2]]
    runtime = await fed_directly("quotes", database_url("picked_res"), tmp_path)
    try:
        await _open_quote(runtime)
        for r in events:
            await runtime.consumer.process(r)
        assert await runtime.consumer.parked_count() == 0
        async with runtime.db.session() as session:
            [item] = await _items(session, "opp-1")
    finally:
        await runtime.db.engine.dispose()
    assert item["reservations"] == [{"id": "res-2", "location_id": "loc-1", "quantity": 1}]


async def test_a_quote_items_reservations_are_listed_in_id_order(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """What the wizard lists and a won carries, the same on both databases (the order
    rows happened to come in differed between them)."""
    reserved = [
        ev.StockReservationV1(
            reservation_id=rid,
            opportunity_id="opp-1",
            quote_item_id="qi-1",
            product_id="p-1",
            location_id="loc-1",
            quantity=1,
        )
        for rid in ("r_b", "R-c", "r-a")  # a collation would put them otherwise
    ]
    runtime = await fed_directly("quotes", database_url("res_order"), tmp_path)
    try:
        await _open_quote(runtime)
        for n, data in enumerate(reserved):
            await runtime.consumer.process(record("stock.reserved", data, n))
        async with runtime.db.session() as session:
            [item] = await _items(session, "opp-1")
    finally:
        await runtime.db.engine.dispose()
    assert [r["id"] for r in item["reservations"]] == ["R-c", "r-a", "r_b"]
