"""A run of `units.received` is stocked, and a run of `shipment.delivered` leaves stock,
in the statements of one event, and leaves what one event at a time leaves: the same
stock levels, holds, serials and movements (a transfer applied once, serials taken
oldest first); a serial received twice in a run refuses neither receipt."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from procure_contracts import events as ev
from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import both_ways, counted, fed_directly, record
from procure_inventory.models import holds, movements, serials, stock
from procure_inventory.stock import add_serials, move_serials, take_serials
from procure_runtime.consumer import Record


def receipt(n: int, *lines: tuple[str | None, str, str | None, int, list[str]], **kw: Any):
    """Lines as (charge id, product id, location id, units, serials)."""
    return f.units_received(
        n,
        *(
            f.received_line(f"ln-{n}-{i}", p, units, charge_id=c, location_id=loc, serials=s)
            for i, (c, p, loc, units, s) in enumerate(lines)
        ),
        po_status=POStatus.RECEIVED_PARTIAL,
        drop_ship=kw.get("drop_ship", False),
    )


RECEIPTS = [
    receipt(1, ("ch-1", "p-1", "loc-1", 2, [])),
    receipt(2, ("ch-2", "p-1", "loc-1", 1, []), ("ch-2", "p-2", "loc-1", 2, ["S1", "S2"])),
    receipt(3, (None, "p-1", "loc-1", 5, [])),  # stock, held for no charge
    receipt(4, ("ch-1", "p-1", "loc-2", 1, [])),  # the same charge again, elsewhere
    receipt(5, ("ch-3", "p-1", "loc-1", 4, []), drop_ship=True),  # never stocked (R12)
    receipt(6, ("ch-3", "p-1", None, 4, [])),  # no location: no stock
]


async def end_state(runtime: Any) -> dict[str, Any]:
    async with runtime.db.session() as session:

        async def rows(query: Any) -> list[tuple[Any, ...]]:
            return sorted(tuple(r) for r in (await session.execute(query)).all())

        return {
            "stock": await rows(select(stock)),
            "holds": await rows(select(holds)),
            "serials": await rows(select(serials)),
            "movements": [  # in the order recorded; ids and times are new each time
                tuple(r)
                for r in await session.execute(
                    select(
                        movements.c.cause,
                        movements.c.product_id,
                        movements.c.charge_id,
                        movements.c.to_location_id,
                        movements.c.quantity,
                        movements.c.serials,
                        movements.c.reference,
                    ).order_by(movements.c.seq)
                )
            ],
        }


async def test_a_run_of_receipts_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    run = [record("units.received", data, i) for i, data in enumerate(RECEIPTS)]
    together, [ran], [ran_each] = await both_ways(
        "inventory", database_url, tmp_path, [], [run], end_state
    )
    assert [s[2:] for s in together["stock"] if s[0] == "p-1"] == [(8, 0, 3), (1, 0, 1)]
    assert [m[4] for m in together["movements"]] == [2, 1, 2, 5, 1]

    def writes(ran: list[str], table: str) -> int:
        return counted(ran, "INSERT", table) + counted(ran, "UPDATE", table)

    # One write of each kind for the run, where each receipt made its own.
    assert (writes(ran, "movements"), writes(ran, "stock")) == (1, 2)
    assert (writes(ran_each, "movements"), writes(ran_each, "stock")) == (4, 8)


async def test_a_receipt_naming_a_serial_held_for_a_charge_still_stocks_its_units(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """R11: every received unit enters stock, held for its charge. Every other service
    has counted the receipt, so a serial another charge holds refuses nothing: the
    serial stays with its first holder and the units are stocked (it was dead-lettered,
    and inventory's stock drifted from what the rest of the flow reports)."""
    again = receipt(7, ("ch-4", "p-2", "loc-1", 1, ["S1"]), ("ch-4", "p-1", "loc-1", 2, []))
    run = [record("units.received", data, i) for i, data in enumerate([RECEIPTS[1], again])]
    runtime = await fed_directly("inventory", database_url("twice"), tmp_path)
    dead: list[bytes] = []

    async def dead_letter(value: bytes, topic: str, **kw: Any) -> None:
        dead.append(value)

    runtime.consumer.publish = dead_letter  # the dead-letter topic's publisher
    try:
        await runtime.consumer.process_batch(run)
        state = await end_state(runtime)
    finally:
        await runtime.db.engine.dispose()
    assert dead == []
    assert [m[6] for m in state["movements"]] == ["rc-2", "rc-2", "rc-7", "rc-7"]
    assert [s[:2] + s[3:] for s in state["serials"]] == [
        ("p-2", "S1", "ch-2"),
        ("p-2", "S2", "ch-2"),
    ]
    assert ("ch-4", "p-2", "loc-1", 1) in state["holds"]
    assert ("ch-4", "p-1", "loc-1", 2) in state["holds"]


def delivery(
    n: int, *items: tuple[str, int, str, str | None, int, list[str], str | None], **kw: Any
):
    """Items as (charge id, seq, product id, location id, units, serials, transfer id)."""
    return f.shipment_delivered(
        n,
        *(
            f.delivered_item(
                f"it-{n}-{i}",
                c,
                p,
                units,
                seq=seq,
                location_id=loc,
                serials=s,
                transfer_id=transfer,
            )
            for i, (c, seq, p, loc, units, s, transfer) in enumerate(items)
        ),
        drop_ship=kw.get("drop_ship", False),
    )


async def test_a_run_of_deliveries_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    stocked = [record("units.received", data, i) for i, data in enumerate(RECEIPTS[:4])]
    deliveries = [
        delivery(1, ("ch-1", 1, "p-1", "loc-1", 1, [], "tr-1")),
        delivery(2, ("ch-2", 1, "p-2", "loc-1", 1, [], "tr-2")),  # the oldest held serial
        delivery(
            3, ("ch-1", 2, "p-1", "loc-1", 1, [], "tr-3"), ("ch-2", 2, "p-1", "loc-1", 1, [], None)
        ),
        delivery(4, ("ch-1", 1, "p-1", "loc-1", 1, [], "tr-1")),  # seq 1 again: applied already
        delivery(5, ("ch-2", 3, "p-2", "loc-1", 1, [], "tr-5")),  # the next serial
        delivery(6, ("ch-1", 3, "p-1", "loc-2", 1, [], None), drop_ship=True),  # not from stock
    ]
    run = [record("shipment.delivered", d, 10 + i) for i, d in enumerate(deliveries)]
    together, [_, ran], [_, ran_each] = await both_ways(
        "inventory", database_url, tmp_path, [], [stocked, run], end_state
    )
    delivered = [m for m in together["movements"] if m[0] == "delivery"]
    assert [(m[2], m[5]) for m in delivered] == [
        ("ch-1", []),
        ("ch-2", ["S1"]),
        ("ch-1", []),
        ("ch-2", []),
        ("ch-2", ["S2"]),
    ]
    assert together["serials"] == []

    assert [counted(ran, "INSERT", "movements"), counted(ran_each, "INSERT", "movements")] == [1, 4]


def cancellation(
    n: int, of: ev.ShipmentDeliveredV1, *seqs: int, reversal: str
) -> ev.ShipmentCanceledV1:
    """Delivery `of` canceled, its items taking `seqs` in turn."""
    return f.shipment_canceled(
        of.delivery_id,
        *(
            f.canceled_item(
                f"it-c{n}-{i}",
                item.charge_id,
                item.product_id,
                item.quantity,
                seq=seq,
                location_id=item.location_id,
                serials=item.serials,
                transfer_id=f"{reversal}-{i}" if item.location_id else None,
                original_transfer_id=item.transfer_id,
            )
            for i, (item, seq) in enumerate(zip(of.items, seqs, strict=True))
        ),
        reason="refused at the door",
    )


async def test_a_charges_deliveries_and_cancellations_apply_in_seq_order_whatever_comes_first(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Shipping's history of two charges: ch-1's drop-ship and location-less deliveries
    move no stock but take seqs 1-2 before a delivery from stock (seq 3); ch-2's serial S1
    is delivered, the delivery canceled, then S1 and S2 delivered (seqs 1-3). Fed with
    each charge's history backwards, every event first parks on the seq it waits for;
    the end state is the one of shipping's order, and nothing stays parked. Without the
    order, ch-2's last delivery took S1 first: its first delivery and the cancellation
    that needs it waited for ever."""
    stocked = [record("units.received", data, i) for i, data in enumerate(RECEIPTS[:2])]
    first = delivery(1, ("ch-2", 1, "p-2", "loc-1", 1, ["S1"], "tr-1"))
    history = [
        delivery(2, ("ch-1", 1, "p-1", None, 3, [], None), drop_ship=True),
        delivery(3, ("ch-1", 2, "p-1", None, 1, [], None)),
        delivery(4, ("ch-1", 3, "p-1", "loc-1", 2, [], "tr-4")),
        first,
        cancellation(1, first, 2, reversal="tr-back"),
        delivery(5, ("ch-2", 3, "p-2", "loc-1", 2, ["S1", "S2"], "tr-5")),
    ]
    topic = {
        ev.ShipmentDeliveredV1: "shipment.delivered",
        ev.ShipmentCanceledV1: "shipment.canceled",
    }
    records = [record(topic[type(e)], e, 10 + i) for i, e in enumerate(history)]

    async def fed(order: list[Record], name: str) -> tuple[dict[str, Any], list[int]]:
        runtime = await fed_directly("inventory", database_url(name), tmp_path / name)
        try:
            await runtime.consumer.process_batch(stocked)
            parked = []
            for r in order:
                await runtime.consumer.process(r)
                while await runtime.consumer.sweep_parked():
                    pass  # what the parking loop does after an event applies
                parked.append(await runtime.consumer.parked_count())
            return await end_state(runtime), parked
        finally:
            await runtime.db.engine.dispose()

    natural, parked = await fed(records, "natural")
    assert parked == [0] * 6
    backwards, parked = await fed(records[:3][::-1] + records[3:][::-1], "backwards")
    assert parked == [1, 2, 0, 1, 2, 0]  # each charge's first applies, then the rest
    for state in (natural, backwards):
        assert state["holds"] == [
            ("ch-1", "p-1", "loc-1", 0),
            ("ch-2", "p-1", "loc-1", 1),
            ("ch-2", "p-2", "loc-1", 0),
        ]
        assert state["serials"] == []
    by_charge = {
        c: [m for m in state["movements"] if m[2] == c]
        for state in (natural,)
        for c in ("ch-1", "ch-2")
    }
    for c, moves in by_charge.items():
        assert [m for m in backwards["movements"] if m[2] == c] == moves
    assert [(m[0], m[5]) for m in by_charge["ch-2"] if m[1] == "p-2"] == [
        ("receipt", ["S1", "S2"]),
        ("delivery", ["S1"]),
        ("cancellation", ["S1"]),
        ("delivery", ["S1", "S2"]),
    ]


async def test_tens_of_thousands_of_serials_come_in_go_out_and_come_back(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A line of 33,000 serialized units: more serials than a statement may have
    parameters (32,767 for asyncpg, 32,766 variables for SQLite). Each serial went into
    an IN list of its own parameter; the driver's refusal was taken for an outage and the
    event retried without end, stalling the consumer."""
    numbers = [f"SN{i:06d}" for i in range(33_000)]
    received = receipt(1, ("ch-1", "p-9", "loc-1", len(numbers), numbers))
    out = delivery(1, ("ch-1", 1, "p-9", "loc-1", len(numbers), numbers, "tr-1"))
    runtime = await fed_directly("inventory", database_url("many_serials"), tmp_path)
    try:
        await runtime.consumer.process(record("units.received", received, 1))
        await runtime.consumer.process(record("shipment.delivered", out, 2))
        state = await end_state(runtime)
        assert [m[0] for m in state["movements"]] == ["receipt", "delivery"]
        assert state["serials"] == [] and state["holds"] == [("ch-1", "p-9", "loc-1", 0)]
        assert state["movements"][1][5] == numbers

        back = cancellation(1, out, 2, reversal="tr-back")
        await runtime.consumer.process(record("shipment.canceled", back, 3))
        state = await end_state(runtime)
        assert len(state["serials"]) == len(numbers)
        assert state["holds"] == [("ch-1", "p-9", "loc-1", len(numbers))]
        assert await runtime.consumer.parked_count() == 0
    finally:
        await runtime.db.engine.dispose()


async def test_a_receipt_does_not_take_a_serial_a_pick_holds_meanwhile(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A free serial a receipt names, picked for a charge while the receipt is applied:
    the receipt waits for the pick and leaves the serial with its charge. It read the
    serial as free and then moved it to its own charge, over the pick's commit, so the
    picked charge held a unit whose serial was another's (PostgreSQL)."""
    runtime = await fed_directly("inventory", database_url("race"), tmp_path)
    try:
        async with runtime.transaction() as uow:
            await add_serials(uow.session, "p-2", "loc-1", ["S9"])
        async with runtime.transaction() as picking:
            assert await take_serials(picking.session, "p-2", "loc-1", 1, None) == ["S9"]
            received = receipt(8, ("ch-9", "p-2", "loc-1", 1, ["S9"]))
            receiving = asyncio.create_task(
                runtime.consumer.process(record("units.received", received, 0))
            )
            await asyncio.sleep(0.5)
            assert not receiving.done()  # waits for the pick's lock
            assert await move_serials(
                picking.session,
                "p-2",
                ["S9"],
                at="loc-1",
                held_for=None,
                to="loc-1",
                charge_id="ch-picked",
            )
        await receiving
        state = await end_state(runtime)
    finally:
        await runtime.db.engine.dispose()
    assert [s[:2] + s[3:] for s in state["serials"]] == [("p-2", "S9", "ch-picked")]
    assert ("ch-9", "p-2", "loc-1", 1) in state["holds"]  # its unit is stocked all the same
