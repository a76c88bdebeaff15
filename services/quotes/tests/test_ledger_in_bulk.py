"""A run of ledger events (a PO, a receipt, a delivery, an approval asked for or decided,
a pick, a closed line) is applied in the statements of one event, and leaves what one
event at a time leaves: the same counters, PO lines, approvals, history, sales orders
and emitted events, a charge named by several events of the run included; an event too
early still parks alone."""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from procure_contracts import events as ev
from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import both_ways, counted, fed_directly, record
from procure_quotes.models import approvals, charge_po_lines, charges, history, sales_orders
from procure_runtime.consumer import Record


def po(n: int, charge: Any, line_id: str, quantity: int) -> ev.POSubmittedV1:
    return f.po_submitted(n, f.po_line(charge, line_id, quantity))


def receipt(n: int, po_n: int, charge: Any, line_id: str, quantity: int) -> ev.UnitsReceivedV1:
    line = f.received_line(line_id, charge.product.id, quantity, charge_id=charge.id)
    return f.units_received(n, line, po=po_n, po_status=POStatus.RECEIVED_PARTIAL)


def delivery(n: int, charge: Any, seq: int, quantity: int) -> ev.ShipmentDeliveredV1:
    item = f.delivered_item(f"item-{n}", charge.id, charge.product.id, quantity, seq=seq)
    return f.shipment_delivered(n, item)


def scenario() -> tuple[list[Record], list[list[Record]]]:
    """Two sales orders (SO-1: a charge of 2 and one of 1; SO-2: one of 1), then three
    runs: their POs, their receipts, their deliveries. The events of a run have distinct
    keys (the consumer never puts two of one key in a run)."""
    c1, c2, c3 = (f.charge(f.product(), quantity=q) for q in (2, 1, 1))
    won = [
        record("opportunity.won", f.opportunity_won(c1, c2, sales_order_id="so-1"), 0),
        record("opportunity.won", f.opportunity_won(c3, sales_order_id="so-2"), 1),
    ]
    pos = [
        po(1, c1, "l1", 1),
        po(2, c2, "l2", 1),
        po(3, c3, "l3", 1),
        po(4, c1, "l4", 1),  # the same charge again, in the same run
    ]
    receipts = [
        receipt(1, 1, c1, "l1", 1),
        receipt(2, 4, c1, "l4", 1),  # the same charge again, in the same run
        receipt(3, 2, c2, "l2", 1),
        receipt(4, 3, c3, "l3", 1),
    ]
    deliveries = [
        delivery(1, c1, 1, 2),
        delivery(2, c2, 1, 1),  # SO-1 now can be fulfilled
        delivery(3, c3, 1, 1),  # and SO-2
        delivery(4, c3, 1, 1),  # seq 1 again: already applied, nothing changes
    ]
    runs, offset = [], 2
    for topic, events in (
        ("po.submitted", pos),
        ("units.received", receipts),
        ("shipment.delivered", deliveries),
    ):
        runs.append([record(topic, data, offset + i) for i, data in enumerate(events)])
        offset += len(events)
    return won, runs


def approvals_picks_and_closes() -> tuple[list[Record], list[list[Record]]]:
    """SO-3: c4 (2 units) and c5 (1); SO-4: c6 (1). Approval of c4's units is asked for
    and given, c5's refused; c4's PO line is closed unreceived, and its units are
    picked instead, as c6's are; both orders are then delivered."""
    c4, c5, c6 = (f.charge(f.product(), quantity=q) for q in (2, 1, 1))
    won = [
        record("opportunity.won", f.opportunity_won(c4, c5, sales_order_id="so-3"), 0),
        record("opportunity.won", f.opportunity_won(c6, sales_order_id="so-4"), 1),
    ]
    asked = [f.approval_requested(c, "so-3") for c in (c4, c5)]
    decided = [f.approval_decided(c4, True), f.approval_decided(c5, False)]
    closed = ev.POLineClosedV1(
        po_id="po-5",
        number="PO-5",
        line_id="l5",
        charge_id=c4.id,
        quantity=2,
        po_status="Received Full",
        closed_by=f.person("Rob Receiver"),
    )
    picked = [
        ev.UnitsPickedV1(charge_id=c.id, location_id=loc, quantity=c.quantity)
        for c, loc in ((c6, "loc-1"), (c4, "loc-2"))
    ]
    runs = [
        ("approval.requested", asked),
        ("approval.decided", decided),
        ("po.submitted", [po(5, c4, "l5", 2)]),
        ("po.line_closed", [closed]),
        ("units.picked", picked),
        ("shipment.delivered", [delivery(5, c6, 1, 1), delivery(6, c4, 1, 2)]),
    ]
    out, offset = [], 2
    for topic, events in runs:
        out.append([record(topic, data, offset + i) for i, data in enumerate(events)])
        offset += len(events)
    return won, out


async def end_state(runtime: Any) -> dict[str, Any]:
    outbox = runtime.metadata.tables["outbox"]
    async with runtime.db.session() as session:

        async def rows(query: Any) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in (await session.execute(query)).all()]

        sent = await rows(
            select(outbox.c.topic, outbox.c.key, outbox.c.value).order_by(outbox.c.id)
        )
        return {
            "charges": await rows(
                select(
                    charges.c.id,
                    charges.c.ready_direct,
                    charges.c.picked,
                    charges.c.delivered,
                    charges.c.delivery_canceled,
                    charges.c.last_seq,
                ).order_by(charges.c.id)
            ),
            "lines": await rows(select(charge_po_lines).order_by(charge_po_lines.c.line_id)),
            "approvals": sorted(
                await rows(select(approvals.c.requested, approvals.c.decided, approvals.c.approved))
            ),
            "orders": sorted(
                await rows(
                    select(sales_orders.c.id, sales_orders.c.status, sales_orders.c.can_fulfill)
                )
            ),
            "history": sorted(
                await rows(select(history.c.charge_id, history.c.type, history.c.summary))
            ),
            # What each emitted event says (their ids and times are new each time).
            "emitted": [
                (topic, key, json.loads(value)["type"], json.loads(value)["data"])
                for topic, key, value in sent
            ],
        }


def reads(ran: list[str]) -> int:
    """The reads of quotes' charges among statements."""
    return counted(ran, "SELECT", "charges")


async def test_a_run_of_ledger_events_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    won, runs = scenario()
    together, ran, ran_each = await both_ways(
        "quotes", database_url, tmp_path, won, runs, end_state
    )
    # The runs did what they say: both orders fulfillable, each announced once.
    assert sorted(together["orders"]) == [
        ("so-1", "In Progress", True),
        ("so-2", "In Progress", True),
    ]
    ready = [e for e in together["emitted"] if e[2].startswith("procurement.salesorder.ready")]
    assert sorted(e[3]["sales_order_id"] for e in ready) == ["so-1", "so-2"]
    assert sorted(c[3] for c in together["charges"]) == [1, 1, 2]  # every unit delivered
    # Each run read its charges once (the ledgers, locked), and the deliveries their
    # orders' charges once, where one event at a time read them once an event. An order
    # or a receipt leaves all a sales order reads of a charge as it was: its orders are
    # neither read nor locked.
    assert [reads(r) for r in ran] == [1, 1, 2]
    assert [reads(r) for r in ran_each] == [4, 4, 9]


async def test_approvals_picks_and_closed_lines_leave_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    won, runs = approvals_picks_and_closes()
    together, ran, _ = await both_ways("quotes", database_url, tmp_path, won, runs, end_state)
    assert sorted(together["orders"]) == [
        ("so-3", "In Progress", True),
        ("so-4", "In Progress", True),
    ]
    assert sorted(together["approvals"]) == [(True, True, False), (True, True, True)]
    runs_of_two = [r for r, run in zip(ran, runs, strict=True) if len(run) == 2]
    # Each run of two read its charges once. Those that change what a sales order reads
    # of a charge (c5's refusal cancels its unit; the deliveries) read their orders'
    # charges once too, the deliveries also c5, the one charge of their orders they do
    # not change. An approval asked for, or a pick, leaves the orders unread.
    assert [reads(r) for r in runs_of_two] == [1, 2, 1, 3]


async def test_an_event_too_early_in_a_run_parks_alone(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    won, runs = scenario()
    pos, receipts = runs[0], runs[1]
    runtime = await fed_directly("quotes", database_url("early"), tmp_path)
    try:
        await runtime.consumer.process_batch(won)
        await runtime.consumer.process(pos[0])  # only PO-1 (c1's line l1)
        # Receipts for l1 and for l2, whose PO is not seen yet: that one is too early.
        await runtime.consumer.process_batch([receipts[0], receipts[2]])
        assert await runtime.consumer.parked_count() == 1
        async with runtime.db.session() as session:
            lines = {r.line_id: r.received for r in await session.execute(select(charge_po_lines))}
        assert lines == {"l1": 1}
        await runtime.consumer.process(pos[1])  # PO-2 arrives: the receipt applies
        assert await runtime.consumer.sweep_parked()
        async with runtime.db.session() as session:
            lines = {r.line_id: r.received for r in await session.execute(select(charge_po_lines))}
        assert lines == {"l1": 1, "l2": 1}
        assert await runtime.consumer.parked_count() == 0
    finally:
        await runtime.db.engine.dispose()


async def test_a_run_of_created_charges_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """SO-7's one charge (no procurement: ready at once) is delivered, so SO-7 can be
    fulfilled; then a run of `charge.created`: two more for SO-7, one without a sales
    order, and SO-7's first charge again (ignored)."""
    c7 = f.charge(f.product(procurement=False), quantity=1)
    before = [
        record("opportunity.won", f.opportunity_won(c7, sales_order_id="so-7"), 0),
        record("shipment.delivered", delivery(7, c7, 1, 1), 1),
    ]
    created = [
        f.charge_created(f.charge(f.product(), quantity=2), sales_order_id="so-7"),
        f.charge_created(f.charge(f.product(procurement=False), quantity=1)),
        f.charge_created(f.charge(f.product(procurement=False), quantity=3), sales_order_id="so-7"),
        f.charge_created(c7, sales_order_id="so-7"),
    ]
    run = [record("charge.created", data, 2 + i) for i, data in enumerate(created)]
    together, [ran], [ran_each] = await both_ways(
        "quotes", database_url, tmp_path, before, [run], end_state
    )
    assert together["orders"] == [("so-7", "In Progress", False)]
    assert len(together["charges"]) == 4
    emitted = [e[2].split(".")[1:3] for e in together["emitted"]]
    assert emitted.count(["salesorder", "ready_to_fulfill"]) == 1  # after the delivery only
    assert emitted.count(["charge", "need_order"]) == 1 and emitted.count(["charge", "ready"]) == 3

    assert [counted(ran, "INSERT", "charges"), counted(ran_each, "INSERT", "charges")] == [1, 4]


async def test_a_po_line_id_named_for_two_charges_in_a_run_is_stored_for_one(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Line ids are unique to a charge; an outside producer reusing one for another
    charge in the same run gets one row, whose charge and units belong together (the
    other is ignored, as a line id stored already is)."""
    late, early = (f.charge(f.product(), quantity=2, id=i) for i in ("ch-b-9", "ch-a-9"))
    won = record("opportunity.won", f.opportunity_won(late, early, sales_order_id="so-9"), 0)
    runtime = await fed_directly("quotes", database_url("line_twice"), tmp_path)
    try:
        await runtime.consumer.process_batch([won])
        await runtime.consumer.process_batch(
            [
                record("po.submitted", po(91, late, "l-9", 1), 1),  # ch-b-9 names it first
                record("po.submitted", po(92, early, "l-9", 2), 2),
            ]
        )
        async with runtime.db.session() as session:
            rows = (await session.execute(select(charge_po_lines))).all()
    finally:
        await runtime.db.engine.dispose()
    assert [(r.line_id, r.charge_id, r.ordered) for r in rows] in (
        [("l-9", "ch-b-9", 1)],
        [("l-9", "ch-a-9", 2)],
    )
