"""A run of `units.received` follows its POs and takes its units off their charges in the
statements of one receipt, and leaves what one receipt at a time leaves: PO statuses
moved forward, lines' received units, charges' ordered units done; a run whose units
are not all on order yet still parks the receipt that is too early, and only it."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import both_ways, counted, fed_directly, record
from procure_purchasing.models import charges, po_lines, purchase_orders

PRODUCT = f.product()


async def two_pos(runtime: Any) -> None:
    """PO-1: 2 units for ch-1 and 5 for stock; PO-2: 1 for ch-1 and 1 for ch-2."""
    doc = PRODUCT.model_dump(mode="json")
    async with runtime.db.session() as session:
        await session.execute(
            insert(charges),
            [
                {
                    "id": cid,
                    "product": doc,
                    "organization": f.organization().model_dump(mode="json"),
                    "destination": f.address().model_dump(mode="json"),
                    "sent": n,
                    "ordered": n,
                }
                for cid, n in (("ch-1", 3), ("ch-2", 1))
            ],
        )
        await session.execute(
            insert(purchase_orders),
            [
                {
                    "id": f"po-{n}",
                    "number": f"PO-{n}",
                    "status": POStatus.SUBMITTED,
                    "vendor": doc["vendor"],
                    "ship_kind": "location",
                    "location_id": "loc-1",
                    "created_by": f.person().model_dump(mode="json"),
                }
                for n in (1, 2)
            ],
        )
        await session.execute(
            insert(po_lines),
            [
                {
                    "id": line_id,
                    "po_id": po_id,
                    "position": i,
                    "charge_id": charge_id,
                    "product": doc,
                    "quantity": units,
                    "unit_cost": "100.00",
                }
                for i, (line_id, po_id, charge_id, units) in enumerate(
                    [
                        ("l1", "po-1", "ch-1", 2),
                        ("l2", "po-1", None, 5),
                        ("l3", "po-2", "ch-1", 1),
                        ("l4", "po-2", "ch-2", 1),
                    ]
                )
            ],
        )


def receipt(n: int, po: int, status: str, *lines: tuple[str, str | None, int]):
    received = (f.received_line(ln, PRODUCT.id, units, charge_id=c) for ln, c, units in lines)
    return f.units_received(n, *received, po=po, po_status=status)


async def end_state(runtime: Any) -> dict[str, Any]:
    async with runtime.db.session() as session:
        return {
            "pos": sorted(
                tuple(r)
                for r in await session.execute(
                    select(purchase_orders.c.id, purchase_orders.c.status)
                )
            ),
            "lines": sorted(
                tuple(r) for r in await session.execute(select(po_lines.c.id, po_lines.c.received))
            ),
            "charges": sorted(
                tuple(r)
                for r in await session.execute(
                    select(charges.c.id, charges.c.ordered, charges.c.done)
                )
            ),
        }


async def test_a_run_of_receipts_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runs = [
        [  # ch-1 in both receipts of the run (receipts of one PO are never in one run)
            record(
                "units.received", receipt(1, 1, POStatus.RECEIVED_PARTIAL, ("l1", "ch-1", 1)), 0
            ),
            record(
                "units.received",
                receipt(2, 2, POStatus.RECEIVED_FULL, ("l3", "ch-1", 1), ("l4", "ch-2", 1)),
                1,
            ),
        ],
        [
            record(
                "units.received",
                receipt(3, 1, POStatus.RECEIVED_FULL, ("l1", "ch-1", 1), ("l2", None, 5)),
                2,
            )
        ],
    ]
    together, ran, ran_each = await both_ways(
        "purchasing", database_url, tmp_path, [], runs, end_state, setup=two_pos
    )
    assert together == {
        "pos": [("po-1", "Received Full"), ("po-2", "Received Full")],
        "lines": [("l1", 2), ("l2", 5), ("l3", 1), ("l4", 1)],
        "charges": [("ch-1", 0, 3), ("ch-2", 0, 1)],
    }

    # The first run read (and locked) its POs once and its charges once, where each
    # receipt did.
    reads = [counted(r[0], "SELECT", "purchase_orders", "charges") for r in (ran, ran_each)]
    assert reads == [2, 4]


async def test_a_receipt_too_early_in_a_run_parks_alone(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runtime = await fed_directly("purchasing", database_url("early"), tmp_path)
    try:
        await two_pos(runtime)
        run = [
            record(
                "units.received", receipt(1, 1, POStatus.RECEIVED_PARTIAL, ("l1", "ch-1", 2)), 0
            ),
            # ch-2 has 1 unit on order, not 2: too early (its next PO is not seen yet)
            record("units.received", receipt(2, 2, POStatus.RECEIVED_FULL, ("l4", "ch-2", 2)), 1),
        ]
        await runtime.consumer.process_batch(run)
        assert await runtime.consumer.parked_count() == 1
        state = await end_state(runtime)
    finally:
        await runtime.db.engine.dispose()
    assert state["charges"] == [("ch-1", 1, 2), ("ch-2", 1, 0)]
    assert state["pos"] == [("po-1", "Received Partial"), ("po-2", "Submitted")]
