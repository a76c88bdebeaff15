"""An opportunity's won and lost come on different topics, which are not ordered with
each other. Quotes lets the won prevail whichever comes first; so does inventory: a won
applied after the loss takes back the units its listed reservations held (the loss
released them), and the end state is the one the won applied first leaves."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_inventory import stock
from procure_inventory.domain import ReservationStatus
from procure_inventory.models import holds, opportunities, reservations
from procure_inventory.models import stock as stock_table
from procure_inventory.picking import (
    lock_open_opportunity,
    locked_reservation,
    release,
)
from procure_runtime.service import ServiceRuntime

P, LOC, OPP = "p-1", "loc-1", "opp-1"


async def _reserve(runtime: ServiceRuntime, reservation_id: str, units: int) -> None:
    async with runtime.transaction() as uow:
        await lock_open_opportunity(uow, OPP)
        assert await stock.change(uow.session, P, LOC, reserved=units)
        await uow.session.execute(
            reservations.insert().values(
                id=reservation_id,
                opportunity_id=OPP,
                quote_item_id=f"qi-{reservation_id}",
                product_id=P,
                location_id=LOC,
                quantity=units,
                status=ReservationStatus.ACTIVE,
            )
        )


async def _stocked(runtime: ServiceRuntime) -> None:
    """6 on hand: r-1 holds 3 (2 listed on the won), r-2 holds 2 (not listed), r-3 held
    1 and a person deleted it before the opportunity closed (listed: it fails)."""
    async with runtime.transaction() as uow:
        assert await stock.change(uow.session, P, LOC, on_hand=6)
    for reservation_id, units in (("r-1", 3), ("r-2", 2), ("r-3", 1)):
        await _reserve(runtime, reservation_id, units)
    async with runtime.transaction() as uow:
        await release(uow, await locked_reservation(uow, "r-3"))


def _events() -> tuple[Any, Any, Any]:
    product = f.product(id=P, inventory=True)
    listed = f.charge(product, 3, id="ch-1", reservations=[("r-1", LOC, 2), ("r-3", LOC, 1)])
    won = f.opportunity_won(listed, opportunity_id=OPP, sales_order_id="so-1")
    retry = f.opportunity_won(  # an outside producer's retry under new ids
        f.charge(product, 3, id="ch-9", reservations=[("r-1", LOC, 2)]),
        opportunity_id=OPP,
        sales_order_id="so-9",
    )
    return won, ev.OpportunityLostV1(opportunity_id=OPP), retry


async def _state(runtime: ServiceRuntime) -> dict[str, Any]:
    """What inventory holds, and the picks and failures it announced."""
    outbox = runtime.metadata.tables["outbox"]
    async with runtime.db.session() as session:
        sent = [
            CloudEvent.model_validate_json(v)
            for t, v in (await session.execute(select(outbox.c.topic, outbox.c.value))).all()
            if t in ("units.picked", "pick.failed")
        ]
        return {
            "stock": (await session.execute(select(stock_table))).all(),
            "holds": (await session.execute(select(holds))).all(),
            "reservations": (
                await session.execute(
                    select(
                        reservations.c.id,
                        reservations.c.status,
                        reservations.c.picked,
                        reservations.c.charge_id,
                    ).order_by(reservations.c.id)
                )
            ).all(),
            "outcome": (await session.execute(select(opportunities.c.outcome))).scalars().all(),
            "announced": sorted(
                (e.type, e.data["charge_id"], e.data["quantity"], e.data.get("reservation_id"))
                for e in sent
            ),
        }


async def _applied(
    database_url: Callable[[str], str], tmp_path: Path, name: str, order: list[tuple[str, Any]]
) -> dict[str, Any]:
    runtime = await fed_directly("inventory", database_url(name), tmp_path / name)
    try:
        await _stocked(runtime)
        for offset, (topic, data) in enumerate(order):
            await runtime.consumer.process(record(topic, data, offset))
        assert await runtime.consumer.parked_count() == 0
        return await _state(runtime)
    finally:
        await runtime.db.engine.dispose()


async def test_a_won_after_its_loss_leaves_what_a_won_before_it_leaves(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    won, lost, retry = _events()
    won_first = await _applied(
        database_url, tmp_path, "won_first", [("opportunity.won", won), ("opportunity.lost", lost)]
    )
    lost_first = await _applied(
        database_url,
        tmp_path,
        "lost_first",
        [("opportunity.lost", lost), ("opportunity.won", won), ("opportunity.won", retry)],
    )
    assert lost_first == won_first
    assert won_first["announced"] == [
        ("procurement.pick.failed.v1", "ch-1", 1, "r-3"),  # deleted before: fails either way
        ("procurement.units.picked.v1", "ch-1", 2, "r-1"),
    ]
    [(_, _, on_hand, reserved, picked)] = won_first["stock"]
    assert (on_hand, reserved, picked) == (6, 0, 2)
    assert won_first["outcome"] == ["won"]
    assert [tuple(r) for r in won_first["reservations"]] == [
        ("r-1", "picked", 2, "ch-1"),
        ("r-2", "released", 0, None),
        ("r-3", "released", 0, None),
    ]


async def test_a_won_after_its_loss_fails_the_units_no_longer_available(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """What the loss gave back may be gone by the time the won comes: those listed units
    fail (`pick.failed`) and go to procurement, as for any reservation that holds less."""
    won, lost, _ = _events()
    runtime = await fed_directly("inventory", database_url("taken"), tmp_path)
    try:
        await _stocked(runtime)
        await runtime.consumer.process(record("opportunity.lost", lost, 0))
        async with runtime.transaction() as uow:  # someone else's pick takes 5 of the 6
            assert await stock.change(uow.session, P, LOC, picked=5)
        await runtime.consumer.process(record("opportunity.won", won, 1))
        state = await _state(runtime)
    finally:
        await runtime.db.engine.dispose()
    assert state["announced"] == [
        ("procurement.pick.failed.v1", "ch-1", 1, "r-3"),
        ("procurement.pick.failed.v1", "ch-1", 2, "r-1"),
    ]
    [(_, _, on_hand, reserved, picked)] = state["stock"]
    assert (on_hand, reserved, picked) == (6, 0, 5)
    assert state["holds"] == []
    assert ("r-1", "released", 0, None) in [tuple(r) for r in state["reservations"]]


def _direct(procured: bool) -> ev.ChargeCreatedV1:
    """A charge added directly to a ticket (no opportunity) listing the opportunity's
    reservations r-1 (2 of its 3) and r-3 (deleted before)."""
    product = f.product(id=P, inventory=True, procurement=procured)
    listed = f.charge(product, 3, id="ch-1", reservations=[("r-1", LOC, 2), ("r-3", LOC, 1)])
    return f.charge_created(listed)


async def _both_orders(
    database_url: Callable[[str], str], tmp_path: Path, *, procured: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The end state of the direct charge applied before the loss, and after it."""
    created, lost = _direct(procured), ev.OpportunityLostV1(opportunity_id=OPP)
    return (
        await _applied(
            database_url,
            tmp_path,
            f"charge_first_{int(procured)}",
            [("charge.created", created), ("opportunity.lost", lost)],
        ),
        await _applied(
            database_url,
            tmp_path,
            f"lost_first_{int(procured)}",
            [("opportunity.lost", lost), ("charge.created", created)],
        ),
    )


async def test_a_direct_charge_after_the_loss_leaves_what_it_leaves_before_it(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Before the loss, the direct charge's listed units of r-1 became its pick, and the
    loss found nothing of them to release. After the loss, which released them, it takes
    them back from what is available, as a won of the lost opportunity does: the same end
    state either way (before, it failed them and quotes sent them to procurement)."""
    charge_first, lost_first = await _both_orders(database_url, tmp_path, procured=True)
    assert lost_first == charge_first
    assert charge_first["announced"] == [
        ("procurement.pick.failed.v1", "ch-1", 1, "r-3"),
        ("procurement.units.picked.v1", "ch-1", 2, "r-1"),
    ]
    [(_, _, on_hand, reserved, picked)] = charge_first["stock"]
    assert (on_hand, reserved, picked) == (6, 0, 2)
    assert [tuple(r) for r in charge_first["reservations"]] == [
        ("r-1", "picked", 2, "ch-1"),
        ("r-2", "released", 0, None),
        ("r-3", "released", 0, None),
    ]


async def test_a_direct_charge_not_procured_after_the_loss_releases_nothing_twice(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A direct charge not subject to procurement releases its listed reservations (R3):
    after the loss released them, there is nothing left to release, and nothing fails."""
    charge_first, lost_first = await _both_orders(database_url, tmp_path, procured=False)
    assert charge_first["announced"] == lost_first["announced"] == []
    assert charge_first["stock"] == lost_first["stock"]
    [(_, _, on_hand, reserved, picked)] = lost_first["stock"]
    assert (on_hand, reserved, picked) == (6, 0, 0)
    assert [tuple(r) for r in lost_first["reservations"]] == [
        ("r-1", "released", 0, None),
        ("r-2", "released", 0, None),
        ("r-3", "released", 0, None),
    ]


def _second_direct() -> ev.ChargeCreatedV1:
    """Another direct charge, applied after the first claim, listing r-1's last unit."""
    product = f.product(id=P, inventory=True)
    return f.charge_created(f.charge(product, 1, id="ch-2", reservations=[("r-1", LOC, 1)]))


async def _in_every_place_of_the_loss(
    database_url: Callable[[str], str], tmp_path: Path, name: str, claims: list[tuple[str, Any]]
) -> list[dict[str, Any]]:
    """The end states of `claims` applied in their order, with the loss before, between
    and after them (it comes on its own topic)."""
    lost = ("opportunity.lost", ev.OpportunityLostV1(opportunity_id=OPP))
    return [
        await _applied(database_url, tmp_path, f"{name}_{at}", [*claims[:at], lost, *claims[at:]])
        for at in range(len(claims) + 1)
    ]


async def test_a_reservation_a_direct_charge_took_back_after_the_loss_is_not_taken_twice(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Before the loss, the first direct charge's pick closes r-1 and releases the unit it
    did not list, so a second charge listing it fails. After the loss, the first takes
    back its units, and r-1 is closed the same: the second fails as well."""
    states = await _in_every_place_of_the_loss(
        database_url,
        tmp_path,
        "directs",
        [("charge.created", _direct(True)), ("charge.created", _second_direct())],
    )
    assert states[1:] == states[:-1]
    assert states[0]["announced"] == [
        ("procurement.pick.failed.v1", "ch-1", 1, "r-3"),
        ("procurement.pick.failed.v1", "ch-2", 1, "r-1"),
        ("procurement.units.picked.v1", "ch-1", 2, "r-1"),
    ]
    [(_, _, on_hand, reserved, picked)] = states[0]["stock"]
    assert (on_hand, reserved, picked) == (6, 0, 2)


async def test_a_won_settled_after_its_loss_leaves_nothing_to_take_back_after_it(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A won releases what its charges did not pick; after its loss, it prevails and takes
    back what they listed. Either way nothing of the opportunity's reservations is left
    for a direct charge that lists one later."""
    won, _, _ = _events()
    states = await _in_every_place_of_the_loss(
        database_url,
        tmp_path,
        "won",
        [("opportunity.won", won), ("charge.created", _second_direct())],
    )
    assert states[1:] == states[:-1]
    assert ("procurement.pick.failed.v1", "ch-2", 1, "r-1") in states[0]["announced"]
    [(_, _, on_hand, reserved, picked)] = states[0]["stock"]
    assert (on_hand, reserved, picked) == (6, 0, 2)


async def test_a_reservation_a_direct_charge_released_is_not_taken_after_the_loss(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A direct charge not subject to procurement releases r-1 (R3); one that lists it
    later fails. After the loss, which released r-1 first, the same: the release closed
    it for good."""
    states = await _in_every_place_of_the_loss(
        database_url,
        tmp_path,
        "released",
        [("charge.created", _direct(False)), ("charge.created", _second_direct())],
    )
    assert states[1:] == states[:-1]
    assert states[0]["announced"] == [("procurement.pick.failed.v1", "ch-2", 1, "r-1")]
    [(_, _, on_hand, reserved, picked)] = states[0]["stock"]
    assert (on_hand, reserved, picked) == (6, 0, 0)
