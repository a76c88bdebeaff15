"""A run of `charge.ready` joins the Ready tab, and a run of `charge.created` is described,
in the statements of one event, and leaves what one event at a time leaves: a charge
first seen by `charge.ready` is stored and completed by its description later, one known
already keeps its description, and each charge's units join its Ready item. A run of
`units.picked` adds its units to the Ready tab in one statement; a pick of a charge not
seen yet parks alone."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import both_ways, counted, fed_directly, record
from procure_shipping.models import charges, ready_items


async def end_state(runtime: Any) -> dict[str, Any]:
    async with runtime.db.session() as session:
        return {
            "charges": sorted(
                (r.id, r.sales_order_id, r.product["id"], r.next_seq)
                for r in await session.execute(select(charges))
            ),
            "ready": sorted(
                (r.charge_id, r.location_key, r.quantity, tuple(r.serials))
                for r in await session.execute(select(ready_items))
            ),
        }


async def test_a_run_of_ready_charges_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    known = f.charge(f.product(), quantity=3)  # described by its won opportunity first
    won = f.opportunity_won(known, sales_order_id="so-won")
    new = [f.charge(f.product(), quantity=q) for q in (2, 1)]
    ready = [
        ev.ChargeReadyV1(
            charge_id=c.id,
            sales_order_id=so,
            product=c.product,
            quantity=c.quantity,
            destination=f.address(),
        )
        for c, so in ((new[0], "so-1"), (known, "so-other"), (new[1], None))
    ]
    before = [record("opportunity.won", won, 0)]
    run = [record("charge.ready", data, 1 + i) for i, data in enumerate(ready)]
    together, [ran], [ran_each] = await both_ways(
        "shipping", database_url, tmp_path, before, [run], end_state
    )
    by_id = {c[0]: c for c in together["charges"]}
    assert by_id[known.id][1] == "so-won"  # the won opportunity's description stays
    assert by_id[new[0].id][1:] == ("so-1", new[0].product.id, 1)
    assert sorted((r[0], r[2]) for r in together["ready"]) == sorted(
        [(new[0].id, 2), (known.id, 3), (new[1].id, 1)]
    )

    # One insert of each for the run, where each event made its own.
    for statements, n in ((ran, 1), (ran_each, 3)):
        assert (
            counted(statements, "INSERT", "charges"),
            counted(statements, "INSERT", "ready_items"),
        ) == (n, n)


async def test_a_run_of_created_charges_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Charges made outside a won opportunity are described in one statement a run; one
    known only from `charge.ready` is completed."""
    early = f.charge(f.product(), quantity=1)
    ready = ev.ChargeReadyV1(
        charge_id=early.id, product=early.product, quantity=1, destination=f.address()
    )
    created = [
        f.charge_created(early, sales_order_id="so-1"),
        f.charge_created(f.charge(f.product(), quantity=2), sales_order_id="so-1"),
        f.charge_created(f.charge(f.product(), quantity=1)),
    ]
    before = [record("charge.ready", ready, 0)]
    run = [record("charge.created", data, 1 + i) for i, data in enumerate(created)]
    together, [ran], [ran_each] = await both_ways(
        "shipping", database_url, tmp_path, before, [run], end_state
    )
    assert {c[0]: c[1] for c in together["charges"]}[early.id] == "so-1"  # completed

    assert [counted(ran, "INSERT", "charges"), counted(ran_each, "INSERT", "charges")] == [1, 3]


async def test_a_run_of_picks_leaves_what_one_at_a_time_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    c1, c2 = (f.charge(f.product(procurement=False), quantity=2) for _ in range(2))
    before = [record("opportunity.won", f.opportunity_won(c1, c2), 0)]
    picks = [
        ev.UnitsPickedV1(charge_id=c1.id, location_id="loc-1", quantity=1, serials=["S1"]),
        ev.UnitsPickedV1(charge_id=c2.id, location_id="loc-1", quantity=2),
    ]
    again = ev.UnitsPickedV1(charge_id=c1.id, location_id="loc-1", quantity=1, serials=["S2"])
    runs = [
        [record("units.picked", data, 1 + i) for i, data in enumerate(picks)],
        [record("units.picked", again, 3)],
    ]
    together, ran, ran_each = await both_ways(
        "shipping", database_url, tmp_path, before, runs, end_state
    )
    assert sorted(r[1:] for r in together["ready"]) == [
        ("loc-1", 2, ()),
        ("loc-1", 2, ("S1", "S2")),
    ]

    inserts = [counted(r[0], "INSERT", "ready_items") for r in (ran, ran_each)]
    assert inserts == [1, 2]


async def test_a_pick_of_an_unknown_charge_parks_alone(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    known = f.charge(f.product(procurement=False), quantity=1)
    run = [
        record("units.picked", ev.UnitsPickedV1(charge_id=c, location_id="loc-1", quantity=1), i)
        for i, c in enumerate([known.id, "ch-unknown"])
    ]
    runtime = await fed_directly("shipping", database_url("early"), tmp_path)
    try:
        await runtime.consumer.process_batch(
            [record("opportunity.won", f.opportunity_won(known), 9)]
        )
        await runtime.consumer.process_batch(run)
        assert await runtime.consumer.parked_count() == 1
        state = await end_state(runtime)
    finally:
        await runtime.db.engine.dispose()
    assert [(r[0], r[2]) for r in state["ready"]] == [(known.id, 1)]


async def test_a_charge_described_twice_keeps_its_first_description(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Another producer announcing a known charge id again (a `charge.created` with
    another ship-to and no sales order) changes nothing, as in quotes and the notifier:
    it took the charge off its sales order and moved its Ready item and packing list to
    the other address."""
    ch = f.charge(f.product(), quantity=1)
    won = f.opportunity_won(ch, sales_order_id="so-first")
    again = f.charge_created(ch, ship_to=f.address("Elsewhere", city="Shelbyville"))
    runs = [
        [record("opportunity.won", won, 0)],
        [record("charge.created", again, 1), record("charge.created", again, 2)],
    ]

    async def described(runtime: Any) -> list[tuple[Any, ...]]:
        async with runtime.db.session() as session:
            rows = await session.execute(select(charges))
            return [(r.id, r.sales_order_id, r.destination["city"]) for r in rows]

    together, _, _ = await both_ways("shipping", database_url, tmp_path, [], runs, described)
    assert together == [(ch.id, "so-first", "Springfield")]
