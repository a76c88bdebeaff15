"""Reservations for quote items and picks for charges (R2, R4, R7): how reserved or
available units become held for a charge, and the events that say so."""

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_, select, update

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import ChargeSpec
from procure_inventory import stock
from procure_inventory.domain import (
    Claim,
    Outcome,
    ReservationStatus,
    check_open,
    convert,
    per_reservation,
    why_not_usable,
)
from procure_inventory.models import announced, conversions, opportunities, reservations
from procure_runtime import UnitOfWork
from procure_runtime.db import (
    insert_ignore,
    insert_many,
    insert_rows,
    rows_affected,
    upsert_insert,
    utcnow,
)

RESERVED = spec_for_topic("stock.reserved")
RELEASED = spec_for_topic("stock.released")
PICKED = spec_for_topic("units.picked")
PICK_FAILED = spec_for_topic("pick.failed")


def reservation_event(row: Any, quantity: int) -> ev.StockReservationV1:
    return ev.StockReservationV1(
        reservation_id=row.id,
        opportunity_id=row.opportunity_id,
        quote_item_id=row.quote_item_id,
        product_id=row.product_id,
        location_id=row.location_id,
        quantity=quantity,
    )


async def locked_reservation(uow: UnitOfWork, reservation_id: str) -> Any:
    """The reservation row, locked against concurrent release / pick."""
    query = select(reservations).where(reservations.c.id == reservation_id).with_for_update()
    return (await uow.session.execute(query)).first()


async def release(
    uow: UnitOfWork, row: Any, correlation: str | None = None, *, on_loss: bool = False
) -> None:
    """Give back everything an active reservation still holds. One that charges of the
    won being settled picked from already (`pick_listed` with `rest_later`) is closed as
    picked, the rest released (`on_loss`: because its opportunity was lost)."""
    held = row.quantity - row.picked
    if not await stock.change(uow.session, row.product_id, row.location_id, reserved=-held):
        raise RuntimeError(f"stock of reservation {row.id} holds less than it reserved")
    status = ReservationStatus.PICKED if row.picked else ReservationStatus.RELEASED
    await uow.session.execute(
        update(reservations)
        .where(reservations.c.id == row.id)
        .values(status=status, closed_at=utcnow(), released_on_loss=on_loss)
    )
    if held:
        uow.emit(RELEASED, reservation_event(row, held), correlationid=correlation)


@functools.cache
def _close(dialect: str) -> Any:
    insert = upsert_insert(opportunities, dialect)
    # The first outcome seen stays, but a won prevails over a loss applied before it, as
    # in quotes (topics are not ordered): its listed reservations are taken back.
    outcome = case(
        (insert.excluded.outcome == Outcome.WON, insert.excluded.outcome),
        else_=func.coalesce(opportunities.c.outcome, insert.excluded.outcome),
    )
    return insert.on_conflict_do_update(
        index_elements=[opportunities.c.id],
        set_={
            "outcome": outcome,
            "closed_at": func.coalesce(opportunities.c.closed_at, insert.excluded.closed_at),
        },
    )


async def close_opportunities(
    uow: UnitOfWork, opportunity_ids: list[str], outcome: Outcome
) -> None:
    """Record opportunities as won or lost, before their reservations are settled. Each
    row stays locked till commit, as `lock_open_opportunity` locks it: a reservation made
    meanwhile waits and is refused, one made before is committed and the settling that
    follows sees it (R2)."""
    now = utcnow()
    rows = [{"id": i, "outcome": outcome, "closed_at": now} for i in sorted(set(opportunity_ids))]
    await insert_rows(uow.session, _close(uow.dialect), rows)


async def lock_open_opportunity(uow: UnitOfWork, opportunity_id: str) -> None:
    """Lock the opportunity for a new reservation; 409 if it was won or lost already."""
    await uow.session.execute(insert_ignore(opportunities, uow.dialect).values(id=opportunity_id))
    outcome = await uow.session.scalar(
        select(opportunities.c.outcome)
        .where(opportunities.c.id == opportunity_id)
        .with_for_update()
    )
    check_open(opportunity_id, outcome)


async def first_announced(session: Any, kind: str, ids: Iterable[str]) -> set[str]:
    """Those of `ids` (charges or sales orders) never announced before, recorded now."""
    rows = [{"kind": kind, "id": i} for i in dict.fromkeys(ids)]
    return {row.id for row in await insert_many(session, announced, rows, announced.c.id)}


async def opportunities_won(session: Any, opportunity_ids: list[str]) -> set[str]:
    """Those of the opportunities recorded as won already."""
    rows = await session.scalars(
        select(opportunities.c.id).where(
            opportunities.c.id.in_(set(opportunity_ids)), opportunities.c.outcome == Outcome.WON
        )
    )
    return set(rows)


async def opportunities_holding(
    session: Any, opportunity_ids: list[str]
) -> tuple[set[str], set[str]]:
    """Those of the opportunities that still have an active reservation, and those with
    one their loss released that a claim may still take back (`retaken`)."""
    rows = await session.execute(
        select(reservations.c.opportunity_id, reservations.c.released_on_loss)
        .where(
            reservations.c.opportunity_id.in_(set(opportunity_ids)),
            or_(
                reservations.c.status == ReservationStatus.ACTIVE,
                reservations.c.released_on_loss.is_(True),
            ),
        )
        .distinct()
    )
    active: set[str] = set()
    released_on_loss: set[str] = set()
    for opportunity_id, on_loss in rows:
        (released_on_loss if on_loss else active).add(opportunity_id)
    return active, released_on_loss


async def _settle_loss_releases(uow: UnitOfWork, which: ColumnElement[bool]) -> None:
    """What a loss released (of the reservations `which` selects) is no longer for anyone
    to take back (`retaken`): the claim that settles it came. Had that claim come before
    the loss, it would have closed the reservation (a direct charge's pick, an R3
    release) or released what the won's charges left (`release_opportunity`), leaving
    nothing for a later claim."""
    await uow.session.execute(
        update(reservations)
        .where(which, reservations.c.released_on_loss.is_(True))
        .values(released_on_loss=False)
    )


async def settle_won_after_loss(uow: UnitOfWork, opportunity_id: str) -> None:
    """A won applied after its opportunity's loss is settled (its charges took back what
    they listed): the rest of what the loss released stays released for good."""
    await _settle_loss_releases(uow, reservations.c.opportunity_id == opportunity_id)


async def release_opportunity(
    uow: UnitOfWork, opportunity_id: str, correlation: str | None = None, *, on_loss: bool = False
) -> None:
    """Release every reservation the opportunity still has active (`on_loss`: it was
    lost)."""
    ids = (
        await uow.session.scalars(
            select(reservations.c.id)
            .where(
                reservations.c.opportunity_id == opportunity_id,
                reservations.c.status == ReservationStatus.ACTIVE,
            )
            .order_by(reservations.c.created_at, reservations.c.id)
        )
    ).all()
    for reservation_id in ids:
        row = await locked_reservation(uow, reservation_id)
        if row.status == ReservationStatus.ACTIVE:
            await release(uow, row, correlation=correlation, on_loss=on_loss)


async def pick_listed(
    uow: UnitOfWork, claim: Claim, charge: ChargeSpec, correlation: str, *, rest_later: bool
) -> None:
    """Convert the reservations listed on a won or direct charge into picks for it. With
    `rest_later` (a won opportunity, whose other charges may list the same reservation,
    and whose settling ends with `release_opportunity`), what a reservation holds beyond
    the listed units stays reserved for them instead of being released at once."""
    listed = [(ref.id, ref.quantity) for ref in charge.reservations]
    for reservation_id, units in per_reservation(listed):
        await pick_reservation(uow, claim, reservation_id, units, correlation, rest_later)


async def release_listed(
    uow: UnitOfWork, claim: Claim, charge: ChargeSpec, correlation: str
) -> None:
    """R3: the reservations listed on a direct charge whose product is not subject to
    procurement are released (a won's go with the rest of its opportunity's). Only those
    the charge could have picked: a listing that names another product's or quote item's
    reservation releases nothing of it."""
    for reservation_id, _ in per_reservation([(r.id, r.quantity) for r in charge.reservations]):
        row = await locked_reservation(uow, reservation_id)
        if why_not_usable(row, claim) is not None:
            continue
        if row.status == ReservationStatus.ACTIVE:
            await release(uow, row, correlation=correlation)
        else:  # `retaken`: the loss released it first; nothing is left to release
            await _settle_loss_releases(uow, reservations.c.id == row.id)


async def pick_reservation(
    uow: UnitOfWork,
    claim: Claim,
    reservation_id: str,
    listed: int,
    correlation: str,
    rest_later: bool = False,
) -> None:
    """Convert a reservation listed on a charge into a pick for it; what it no longer
    holds fails (`pick.failed`), what it holds beyond the listed quantity is released
    (with `rest_later`, left reserved for the won's other charges: `pick_listed`)."""
    row = await locked_reservation(uow, reservation_id)
    if row and row.status == ReservationStatus.PICKED and row.charge_id == claim.charge_id:
        return  # this charge was converted already (the same win published twice)
    first = await uow.session.execute(
        insert_ignore(conversions, uow.dialect).values(
            charge_id=claim.charge_id, reservation_id=reservation_id, converted_at=utcnow()
        )
    )
    if not rows_affected(first):
        # The same charge announced again under a new event id (the inbox sees a new
        # event): its listing was settled already, and a failed one left no picked row to
        # tell. A second pick.failed would have quotes order those units twice.
        return
    refused = why_not_usable(row, claim)
    if refused is None and row.status != ReservationStatus.ACTIVE:  # `retaken`
        await _retake(uow, claim, row, listed, correlation)
        if not rest_later:  # its pick would have closed it, as below
            await _settle_loss_releases(uow, reservations.c.id == row.id)
        return
    plan = convert(listed, None if refused else row.quantity - row.picked)
    if plan.pick:
        moved = await stock.change(
            uow.session, row.product_id, row.location_id, reserved=-plan.pick, picked=plan.pick
        )
        if not moved:
            raise RuntimeError(f"stock of reservation {row.id} holds less than it reserved")
        await _hold_and_announce(
            uow,
            claim.charge_id,
            row.product_id,
            row.location_id,
            plan.pick,
            correlation,
            reservation_id=row.id,
        )
        done = not (rest_later and plan.release)  # else still reserved: `release` closes it
        await uow.session.execute(
            update(reservations)
            .where(reservations.c.id == row.id)
            .values(
                status=ReservationStatus.PICKED if done else ReservationStatus.ACTIVE,
                charge_id=func.coalesce(reservations.c.charge_id, claim.charge_id),
                picked=reservations.c.picked + plan.pick,
                closed_at=utcnow() if done else None,
            )
        )
        if plan.release and not rest_later:
            await stock.change(uow.session, row.product_id, row.location_id, reserved=-plan.release)
            uow.emit(RELEASED, reservation_event(row, plan.release), correlationid=correlation)
    if plan.shortfall:
        uow.emit(
            PICK_FAILED,
            ev.PickFailedV1(
                charge_id=claim.charge_id,
                quantity=plan.shortfall,
                reason=refused or f"the reservation holds only {plan.pick} units",
                reservation_id=reservation_id,
            ),
            correlationid=correlation,
        )


async def _retake(uow: UnitOfWork, claim: Claim, row: Any, listed: int, correlation: str) -> None:
    """A won or a direct charge applied after the opportunity's loss (`retaken`): the
    listed units its reservation held are picked again from what is available at its
    location, all or nothing (R7's rule for a pick from stock); what cannot be fails as
    any shortfall."""
    want = min(listed, row.quantity - row.picked)
    took = await stock.change(uow.session, row.product_id, row.location_id, picked=want)
    if took:
        await _hold_and_announce(
            uow,
            claim.charge_id,
            row.product_id,
            row.location_id,
            want,
            correlation,
            reservation_id=row.id,
        )
        await uow.session.execute(
            update(reservations)
            .where(reservations.c.id == row.id)
            .values(
                status=ReservationStatus.PICKED,
                charge_id=func.coalesce(reservations.c.charge_id, claim.charge_id),
                picked=reservations.c.picked + want,
            )
        )
    shortfall = listed - want if took else listed
    if shortfall:
        reason = (
            f"the reservation holds only {want} units"
            if took
            else f"released when its opportunity was lost; {want} units are no longer "
            f"available at location {row.location_id}"
        )
        uow.emit(
            PICK_FAILED,
            ev.PickFailedV1(
                charge_id=claim.charge_id,
                quantity=shortfall,
                reason=reason,
                reservation_id=row.id,
            ),
            correlationid=correlation,
        )


async def pick_on_request(uow: UnitOfWork, data: ev.PickRequestedV1) -> None:
    """R7: all or nothing from what is available at the location."""
    if await stock.change(uow.session, data.product_id, data.location_id, picked=data.quantity):
        await _hold_and_announce(
            uow,
            data.charge_id,
            data.product_id,
            data.location_id,
            data.quantity,
            None,
            pick_request_id=data.request_id,
        )
        return
    have = await stock.level(uow.session, data.product_id, data.location_id)
    uow.emit(
        PICK_FAILED,
        ev.PickFailedV1(
            charge_id=data.charge_id,
            quantity=data.quantity,
            reason=f"only {have.available} available at location {data.location_id}",
            pick_request_id=data.request_id,
        ),
    )


async def _hold_and_announce(
    uow: UnitOfWork,
    charge_id: str,
    product_id: str,
    location_id: str,
    quantity: int,
    correlation: str | None,
    **ref: str,
) -> None:
    await stock.hold(uow.session, charge_id, product_id, location_id, quantity)
    numbers = await stock.pick_serials(uow.session, product_id, location_id, quantity, charge_id)
    uow.emit(
        PICKED,
        ev.UnitsPickedV1(
            charge_id=charge_id,
            product_id=product_id,
            location_id=location_id,
            quantity=quantity,
            serials=numbers,
            **ref,
        ),
        correlationid=correlation,
    )
