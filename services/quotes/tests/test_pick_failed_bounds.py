"""A `pick.failed` for more units than its charge has is refused (`rejected`): quotes
sent them to procurement, and their cost could pass what an amount may be, so making
`charge.need_order` failed in the handler, retried until dead-lettered as a handler
error. Found by the event fuzz (tests/integration/test_fuzz_events.py)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_runtime.consumer import Outcome


async def test_a_pick_failed_for_more_units_than_its_charge_has_is_rejected(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    dear = f.product(unit_cost="9000000000000000.00", unit_price="9000000000000000.00")
    charge = f.charge(dear, 1, reservations=[("rs-1", "loc-1", 1)])
    runtime = await fed_directly("quotes", database_url("quotes"), tmp_path, handler_max_attempts=1)
    letters: list[dict[str, bytes]] = []

    async def dead_letter(value: bytes, topic: str, **kw: Any) -> None:
        letters.append(dict(kw["headers"]))

    runtime.consumer.publish = dead_letter  # the dead-letter topic's publisher

    def failed(n: int, units: int) -> Any:
        data = ev.PickFailedV1(
            charge_id=charge.id, quantity=units, reason="short", reservation_id="rs-1"
        )
        return record("pick.failed", data, n)

    try:
        won = record("opportunity.won", f.opportunity_won(charge), 0)
        assert await runtime.consumer.process(won) is Outcome.APPLIED
        outcomes = [await runtime.consumer.process(failed(n, n)) for n in (2, 1)]
    finally:
        await runtime.db.engine.dispose()
    assert outcomes == [Outcome.DEAD_LETTERED, Outcome.APPLIED]
    [letter] = letters
    assert letter["x-error-type"] == b"rejected"
    assert b"pick of 2 failed for charge" in letter["x-error-message"]
