"""R15: a delivery canceled after its charge was posted flags the charge, also when the
post commits while the cancellation is being applied (before it locks the charge)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_quotes import ledger
from procure_quotes.models import charges


async def test_a_post_committed_before_the_cancellation_locks_the_charge_is_flagged(
    database_url: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    charge = f.charge(f.product(procurement=False), 2)
    delivered = f.delivered_item("it-1", charge.id, charge.product.id, 2, transfer_id="tr-1")
    item = f.canceled_item(
        "it-2", charge.id, charge.product.id, 2, transfer_id="tr-2", original_transfer_id="tr-1"
    )
    canceled = f.shipment_canceled(1, item)
    runtime = await fed_directly("quotes", database_url("cancel"), tmp_path)
    try:
        await runtime.consumer.process_batch(
            [
                record("opportunity.won", f.opportunity_won(charge), 0),
                record("shipment.delivered", f.shipment_delivered(1, delivered), 1),
            ]
        )
        locking = ledger.load

        async def posted_meanwhile(session: Any, charge_ids: list[str], **kw: Any) -> Any:
            # What `POST /charges/{id}/post` committing just before the lock leaves.
            await session.execute(
                update(charges).where(charges.c.id == charge.id).values(posted=True)
            )
            return await locking(session, charge_ids, **kw)

        monkeypatch.setattr(ledger, "load", posted_meanwhile)
        await runtime.consumer.process(record("shipment.canceled", canceled, 2))
        monkeypatch.undo()

        assert await runtime.consumer.parked_count() == 0
        async with runtime.db.session() as session:
            row = (
                await session.execute(
                    select(
                        charges.c.delivery_canceled,
                        charges.c.posted,
                        charges.c.delivery_canceled_after_post,
                    ).where(charges.c.id == charge.id)
                )
            ).one()
        assert tuple(row) == (2, True, True)
    finally:
        await runtime.db.engine.dispose()
