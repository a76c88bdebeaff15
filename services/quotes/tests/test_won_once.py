"""Winning creates one sales order (R3). An outside producer that wins an opportunity
again under new sales order and charge ids (a retry that made its ids afresh) is
ignored, like a sales order id seen before: before, quotes stored a second sales order
and sent every unit of it to procurement again."""

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_quotes.models import charges, sales_orders


async def test_an_opportunity_won_twice_keeps_its_first_sales_order(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    first, again = (f.charge(f.product(), quantity=2) for _ in range(2))
    won = f.opportunity_won(first, opportunity_id="opp-1", sales_order_id="so-1")
    retried = f.opportunity_won(again, opportunity_id="opp-1", sales_order_id="so-2")
    other = f.opportunity_won(f.charge(f.product(), 1), sales_order_id="so-3")
    runtime = await fed_directly("quotes", database_url("won_once"), tmp_path)
    outbox = runtime.metadata.tables["outbox"]
    try:
        for n, data in enumerate([won, retried, other]):
            await runtime.consumer.process_batch([record("opportunity.won", data, n)])
        async with runtime.db.session() as session:
            orders = sorted(await session.scalars(select(sales_orders.c.id)))
            stored = set(await session.scalars(select(charges.c.id)))
            sent = [
                (r.topic, r.key)
                for r in await session.execute(select(outbox.c.topic, outbox.c.key))
                if r.topic.endswith("charge.need_order")
            ]
    finally:
        await runtime.db.engine.dispose()
    assert orders == ["so-1", "so-3"]
    assert again.id not in stored and first.id in stored
    assert sorted(key for _, key in sent) == sorted([first.id, other.charges[0].id])
