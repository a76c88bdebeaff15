"""A run of `units.received` is stocked, and a run of `shipment.delivered` leaves stock,
in the statements of one event, and leaves what one event at a time leaves: the same
stock levels, holds, serials and movements (a transfer applied once, serials taken
oldest first); a serial received twice in a run is still refused."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import both_ways, counted, fed_directly, record
from procure_inventory.models import holds, movements, serials, stock


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


async def test_a_serial_received_twice_in_a_run_is_refused(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    again = receipt(7, ("ch-4", "p-2", "loc-1", 1, ["S1"]))
    run = [record("units.received", data, i) for i, data in enumerate([RECEIPTS[1], again])]
    runtime = await fed_directly("inventory", database_url("twice"), tmp_path)
    dead: list[tuple[bytes, str]] = []

    async def dead_letter(value: bytes, topic: str, **kw: Any) -> None:
        dead.append((value, kw["headers"]["x-error-type"]))

    runtime.consumer.publish = dead_letter  # the dead-letter topic's publisher
    try:
        await runtime.consumer.process_batch(run)
        state = await end_state(runtime)
    finally:
        await runtime.db.engine.dispose()
    assert dead == [(run[1].value, "rejected")]
    assert [m[6] for m in state["movements"]] == ["rc-2", "rc-2"]  # the first receipt only
    assert [s[:2] for s in state["serials"]] == [("p-2", "S1"), ("p-2", "S2")]


def delivery(n: int, *items: tuple[str, str, str, int, list[str], str | None], **kw: Any):
    """Items as (charge id, product id, location id, units, serials, transfer id)."""
    return f.shipment_delivered(
        n,
        *(
            f.delivered_item(
                f"it-{n}-{i}", c, p, units, location_id=loc, serials=s, transfer_id=transfer
            )
            for i, (c, p, loc, units, s, transfer) in enumerate(items)
        ),
        drop_ship=kw.get("drop_ship", False),
    )


async def test_a_run_of_deliveries_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    stocked = [record("units.received", data, i) for i, data in enumerate(RECEIPTS[:4])]
    deliveries = [
        delivery(1, ("ch-1", "p-1", "loc-1", 1, [], "tr-1")),
        delivery(2, ("ch-2", "p-2", "loc-1", 1, [], "tr-2")),  # the oldest held serial
        delivery(3, ("ch-1", "p-1", "loc-1", 1, [], "tr-3"), ("ch-2", "p-1", "loc-1", 1, [], None)),
        delivery(4, ("ch-1", "p-1", "loc-1", 1, [], "tr-1")),  # tr-1 again: applied already
        delivery(5, ("ch-2", "p-2", "loc-1", 1, [], "tr-5")),  # the next serial
        delivery(6, ("ch-1", "p-1", "loc-2", 1, [], None), drop_ship=True),  # not from stock
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
