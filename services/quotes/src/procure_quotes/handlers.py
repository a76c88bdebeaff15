"""Quotes' Kafka handlers: one thin function per event type. Routing of new charges
(R3/R4) and the charge status ledger; rules live in `domain`, persistence in `ledger`."""

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, Update, select, update

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Address, ChargeSpec, Organization, Product
from procure_contracts.status import SalesOrderStatus
from procure_quotes import ledger
from procure_quotes.domain import (
    AmountTooLarge,
    Ledger,
    ReservationsExceedQuantity,
    Routing,
    TooEarly,
    check_extended,
    extended_cost,
    route_charge,
)
from procure_quotes.models import (
    charges,
    metadata,
    opportunities,
    picked_reservations,
    reservations,
    sales_orders,
)
from procure_runtime import Applying, EventHandlers, Park, Reject, UnitOfWork
from procure_runtime.db import among_param, insert_ignore, insert_many
from procure_runtime.logging import get_logger
from procure_runtime.replica import replicate

log = get_logger("procure.quotes")
handlers = EventHandlers()
replicate(handlers, metadata, "products", "locations")


def topic(name: str):
    return spec_for_topic(name)


CHARGE_READY = topic("charge.ready")
CHARGE_NEED_ORDER = topic("charge.need_order")


# --- reservations inventory reports for quote items ----------------------------------


@handlers.on(topic("stock.reserved"), topic("stock.released"))
async def on_reservation(uow: UnitOfWork, data: ev.StockReservationV1, event: CloudEvent) -> None:
    released = event.type == topic("stock.released").type
    await uow.session.execute(
        insert_ignore(reservations, uow.dialect).values(
            id=data.reservation_id,
            quote_item_id=data.quote_item_id,
            opportunity_id=data.opportunity_id,
            location_id=data.location_id,
            quantity=data.quantity,
            released=released,
        )
    )
    if released:  # also when the release overtook its reservation
        await uow.session.execute(
            update(reservations)
            .where(reservations.c.id == data.reservation_id)
            .values(released=True)
        )


# --- opportunities lost elsewhere ----------------------------------------------------


@handlers.on(topic("opportunity.lost"))
async def on_opportunity_lost(
    uow: UnitOfWork, data: ev.OpportunityLostV1, event: CloudEvent
) -> None:
    """An opportunity lost by another system (a CRM) is Lost here too: no item is added to
    it and it is not won after all. Its own `lose` set it already. One won meanwhile
    stays Won: topics are not ordered with each other, and a won deal has its sales order
    and charges whichever event came first (`_mark_won` sets Won over Lost)."""
    await uow.session.execute(
        update(opportunities)
        .where(opportunities.c.id == data.opportunity_id, opportunities.c.status == "Open")
        .values(status="Lost")
    )


# --- new charges ------------------------------------------------------------------------


# The per-charge handlers' statements, built once per dialect: built per batch, their
# construction and cache key cost more CPU than running them (bench/levers.md, lever 40).
@functools.cache
def _mark_won(dialect: str) -> Update:
    return (
        update(opportunities)
        .where(among_param(opportunities.c.id, "ids", dialect))
        .values(status="Won")
    )


@functools.cache
def _charges_of(dialect: str) -> Select[Any]:
    return select(charges.c.id, charges.c.sales_order_id).where(
        among_param(charges.c.id, "ids", dialect)
    )


@handlers.on_batch(topic("opportunity.won"))
async def on_opportunity_won(items: list[Applying]) -> None:
    """New sales orders and their charges, routed (R3/R4). A run of won opportunities is
    stored in a fixed number of statements; the first event naming a sales order wins
    and any later one is ignored, as one at a time."""
    session, dialect = items[0].uow.session, items[0].uow.dialect
    first: dict[str, Applying] = {}
    for item in items:
        first.setdefault(item.data.sales_order.id, item)
    created = {
        row.id
        for row in await insert_many(
            session,
            sales_orders,
            [
                {
                    "id": so_id,
                    "opportunity_id": item.data.opportunity.id,
                    "status": SalesOrderStatus.NEW,
                    "owner": item.data.sales_order.owner,
                    "organization": item.data.organization,
                    "ship_to": item.data.sales_order.ship_to,
                }
                for so_id, item in first.items()
            ],
            sales_orders.c.id,
        )
    }
    won = [
        i for i in items if i.data.sales_order.id in created and first[i.data.sales_order.id] is i
    ]
    kept = {id(i) for i in won}
    for item in items:
        if id(item) not in kept:
            log.info(
                "sales order exists, or its opportunity was won already; event ignored",
                sales_order_id=item.data.sales_order.id,
                opportunity_id=item.data.opportunity.id,
            )
    if not won:
        return
    await session.execute(_mark_won(dialect), {"ids": sorted({i.data.opportunity.id for i in won})})
    planned: list[tuple[Applying, ChargeSpec, Address, Routing]] = []
    for item in won:
        so = item.data.sales_order
        for charge in item.data.charges:
            planned.append((item, charge, charge.ship_to or so.ship_to, _routing(charge)))
    stored = await _store_charges(
        session,
        dialect,
        [
            _charge_values(
                charge,
                item.data.organization,
                destination,
                item.data.sales_order.id,
                item.data.opportunity.id,
                routing,
            )
            for item, charge, destination, routing in planned
        ],
    )
    rows: dict[str, list[Any]] = {i.data.sales_order.id: [] for i in won}
    for item, charge, destination, routing in planned:
        row = stored.pop(charge.id, None)  # popped: a charge id named twice is stored once
        if row is None:
            log.info("charge exists already; ignored", charge_id=charge.id)
            continue
        _announce(item.uow, row, charge, item.data.organization, destination, routing, item.event)
        rows[item.data.sales_order.id].append(row)
    for item in won:
        so = item.data.sales_order
        await ledger.settle_new_sales_order(item.uow, so.id, so.owner, rows[so.id])


@functools.cache
def _orders_of(dialect: str) -> Select[Any]:
    return select(sales_orders.c.id).where(among_param(sales_orders.c.id, "ids", dialect))


@handlers.on_batch(topic("charge.created"))
async def on_charge_created(items: list[Applying]) -> None:
    """Charges made outside a won opportunity (R3/R4), a run in the statements of one:
    each waits for its sales order, is stored once and routed, and its order is
    refreshed as it was after that charge (a charge of a later event of the run is not
    in the order yet)."""
    session, dialect = items[0].uow.session, items[0].uow.dialect
    so_ids = sorted({i.data.sales_order_id for i in items if i.data.sales_order_id})
    if so_ids:
        seen = set((await session.execute(_orders_of(dialect), {"ids": so_ids})).scalars())
        if missing := [so_id for so_id in so_ids if so_id not in seen]:
            # Worded as one at a time words it: a run of one is how an event parks.
            raise Park(f"sales order {', '.join(missing)} not seen yet")
    planned = []
    for item in items:
        data: ev.ChargeCreatedV1 = item.data
        destination = data.charge.ship_to or data.ship_to
        planned.append((item, data, destination, _routing(data.charge)))
    stored = await _store_charges(
        session,
        dialect,
        [
            _charge_values(data.charge, data.organization, dest, data.sales_order_id, None, routing)
            for _, data, dest, routing in planned
        ],
    )
    turns = []
    for item, data, destination, routing in planned:
        row = stored.pop(data.charge.id, None)  # popped: a charge named twice is stored once
        created = {}
        if row is None:
            log.info("charge exists already; ignored", charge_id=data.charge.id)
        else:
            _announce(
                item.uow, row, data.charge, data.organization, destination, routing, item.event
            )
            created[row.id] = ledger.ledger_of(row, ([], []))
        turns.append(ledger.Turn(item.uow, [data.sales_order_id], created))
    await ledger.refresh_in_turn(turns)


def _routing(charge: ChargeSpec) -> Routing:
    try:
        # As a request's charge (a 422 there): its units at their unit cost and price
        # are what `charge.need_order` and `charge.posted` carry, and must be storable.
        check_extended(charge.quantity, charge.product.unit_cost, charge.unit_price)
        return route_charge(
            charge.quantity,
            charge.product.subject_to_procurement,
            [r.quantity for r in charge.reservations],
        )
    except (ReservationsExceedQuantity, AmountTooLarge) as exc:
        raise Reject(f"charge {charge.id}: {exc}") from None


def _charge_values(
    charge: ChargeSpec,
    organization: Organization,
    destination: Address,
    sales_order_id: str | None,
    opportunity_id: str | None,
    routing: Routing,
) -> dict[str, Any]:
    return {
        "id": charge.id,
        "sales_order_id": sales_order_id,
        "opportunity_id": opportunity_id,
        "quote_item_id": charge.quote_item_id,
        "parent": charge.parent,
        "owner": charge.owner,
        "product": charge.product,
        "organization": organization,
        "destination": destination,
        "quantity": charge.quantity,
        "unit_price": charge.unit_price,
        "ready_direct": routing.ready,
        "reserved_at_routing": routing.awaiting_pick,
        "sent_to_procurement": routing.to_procurement,
    }


async def _store_charges(
    session: Any, dialect: str, values: list[dict[str, Any]]
) -> dict[str, Any]:
    """Insert the charges that do not exist yet, in one statement: the new rows by id,
    their `ledger.LEDGER_COLUMNS` only (the caller has the documents it stored; reading
    them back cost a decode each)."""
    unique = list({v["id"]: v for v in reversed(values)}.values())  # the first of each id
    stored = await insert_many(session, charges, unique, *ledger.LEDGER_COLUMNS)
    return {row.id: row for row in stored}


def _announce(
    uow: UnitOfWork,
    row: Any,
    charge: ChargeSpec,
    organization: Organization,
    destination: Address,
    routing: Routing,
    event: CloudEvent,
) -> None:
    """A new charge's history line and routing events (R3/R4)."""
    summary = (
        f"created: {routing.ready} ready, {routing.awaiting_pick} awaiting pick, "
        f"{routing.to_procurement} to procurement"
    )
    ledger.record(uow, row, event, summary)
    correlation = row.sales_order_id or charge.id
    if routing.ready:
        uow.emit(
            CHARGE_READY,
            ev.ChargeReadyV1(
                charge_id=charge.id,
                sales_order_id=row.sales_order_id,
                product=charge.product,
                quantity=routing.ready,
                destination=destination,
            ),
            correlationid=correlation,
        )
    if routing.to_procurement:
        uow.emit(
            CHARGE_NEED_ORDER,
            _need_order(
                charge.id,
                row.sales_order_id,
                charge.product,
                organization,
                destination,
                routing.to_procurement,
            ),
            correlationid=correlation,
        )


def _need_order(
    charge_id: str,
    sales_order_id: str | None,
    product: Product,
    organization: Organization,
    destination: Address,
    units: int,
    reservation_id: str | None = None,
) -> ev.ChargeNeedOrderV1:
    return ev.ChargeNeedOrderV1(
        charge_id=charge_id,
        sales_order_id=sales_order_id,
        product=product,
        quantity=units,
        extended_cost=extended_cost(units, product.unit_cost),
        organization=organization,
        destination=destination,
        reservation_id=reservation_id,
    )


def _need_order_of(row: Any, units: int, reservation_id: str | None) -> ev.ChargeNeedOrderV1:
    """`_need_order` for a charge read back whole (its documents as stored)."""
    return _need_order(
        row.id,
        row.sales_order_id,
        Product.model_validate(row.product),
        Organization.model_validate(row.organization),
        Address.model_validate(row.destination),
        units,
        reservation_id,
    )


# --- the ledger ---------------------------------------------------------------------------

Step = Callable[[Ledger], Ledger]


@dataclass
class Change:
    """One event's ledger steps: charge id -> its steps with their history lines."""

    uow: UnitOfWork
    event: CloudEvent
    steps: dict[str, list[tuple[Step, str]]]
    extra: dict[str, dict[str, object]] | None = None  # charge id -> more columns to set
    location_id: str | None = None
    # The PO lines the event submits (`charge_po_lines` rows but for their units), stored
    # once the steps have ordered them: inserted as the run leaves them, never updated.
    new_lines: list[dict[str, Any]] = field(default_factory=list)


async def apply(
    uow: UnitOfWork,
    event: CloudEvent,
    steps: dict[str, list[tuple[Step, str]]],
    extra: dict[str, dict[str, object]] | None = None,
    *,
    location_id: str | None = None,
) -> None:
    """Apply ledger steps to several charges at once; park the whole event when a charge
    is unknown or a step arrives too early (the savepoint undoes any partial work)."""
    await apply_each([Change(uow, event, steps, extra, location_id)])


async def apply_each(changes: list[Change]) -> None:
    """`apply` for a run of events in the statements of one: their charges are loaded
    (and locked) together, each event's steps go in turn on the ledgers the events
    before it left, and each charge and sales order is written once, as the run leaves
    it. An unknown charge or a step too early parks the run (the consumer then applies
    it one event at a time, and only that event parks)."""
    session, dialect = changes[0].uow.session, changes[0].uow.dialect
    loaded = await ledger.load(session, [cid for c in changes for cid in c.steps])
    if missing := sorted({cid for c in changes for cid in c.steps} - set(loaded)):
        raise Park(f"charges not seen yet: {', '.join(missing)}")
    first = {cid: led for cid, (_, led) in loaded.items()}
    now = dict(first)
    extra: dict[str, dict[str, object]] = {}
    turns = []
    for change in changes:
        touched, after_this = set(), {}
        for charge_id, charge_steps in change.steps.items():
            row, before = loaded[charge_id][0], now[charge_id]
            after = before
            try:
                for step, _ in charge_steps:
                    after = step(after)
            except TooEarly as exc:
                raise Park(f"charge {charge_id}: {exc}") from None
            said = "; ".join(summary for _, summary in charge_steps)
            ledger.record(change.uow, row, change.event, said, location_id=change.location_id)
            if after != before:
                now[charge_id] = after
                if after.order_view != before.order_view:  # all its sales order reads of it
                    touched.add(row.sales_order_id)
                    after_this[charge_id] = after
            extra.setdefault(charge_id, {}).update((change.extra or {}).get(charge_id, {}))
        turns.append(ledger.Turn(change.uow, touched, after_this))
    submitted = {
        (row["charge_id"], row["line_id"]): row for c in reversed(changes) for row in c.new_lines
    }
    await ledger.save(
        session,
        dialect,
        [(cid, first[cid], now[cid], extra.get(cid, {})) for cid in now],
        submitted,
    )
    await ledger.refresh_in_turn(turns, known=first)


async def _ledger_run(
    items: list[Applying], change_of: Callable[[Applying], Change | None]
) -> None:
    """A run of ledger events of one type: each one's `Change`, applied together."""
    changes = [change for item in items if (change := change_of(item)) is not None]
    if changes:
        await apply_each(changes)


@handlers.on_batch(topic("units.picked"))
async def on_units_picked(items: list[Applying]) -> None:
    await _ledger_run(items, _picked)
    taken = sorted({i.data.reservation_id for i in items if i.data.reservation_id})
    if taken:  # their quote items no longer hold them (the opportunity's page, the wizard)
        session = items[0].uow.session
        await insert_many(session, picked_reservations, [{"id": r} for r in taken])


def _picked(item: Applying) -> Change:
    data: ev.UnitsPickedV1 = item.data
    step = (lambda led: led.pick(data.quantity), f"{data.quantity} picked")
    return Change(item.uow, item.event, {data.charge_id: [step]}, location_id=data.location_id)


@handlers.on(topic("pick.failed"))
async def on_pick_failed(uow: UnitOfWork, data: ev.PickFailedV1, event: CloudEvent) -> None:
    loaded = await ledger.load(uow.session, [data.charge_id], whole=True)
    if data.charge_id not in loaded:
        raise Park(f"charge {data.charge_id} not seen yet")
    row, _ = loaded[data.charge_id]
    if data.quantity > row.quantity:  # no pick fails for units the charge does not have
        raise Reject(f"pick of {data.quantity} failed for charge {row.id} of {row.quantity}")
    if data.reservation_id:  # R2: the units the reservation could not cover go to procurement
        correlation = row.sales_order_id or row.id
        uow.emit(
            CHARGE_NEED_ORDER,
            _need_order_of(row, data.quantity, data.reservation_id),
            correlationid=correlation,
        )
        ledger.record(
            uow, row, event, f"pick of {data.quantity} failed ({data.reason}); sent to procurement"
        )
    else:
        ledger.record(
            uow, row, event, f"pick of {data.quantity} failed ({data.reason}); back on the queue"
        )


@handlers.on_batch(topic("approval.requested"))
async def on_approval_requested(items: list[Applying]) -> None:
    await _ledger_run(items, _approval_requested)


def _approval_requested(item: Applying) -> Change:
    data: ev.ApprovalRequestedV1 = item.data
    step = (
        lambda led: led.request_approval(data.approval_id, data.quantity),
        f"{data.quantity} wait for approval ({data.extended_cost} >= {data.threshold})",
    )
    return Change(item.uow, item.event, {data.charge_id: [step]})


@handlers.on_batch(topic("approval.decided"))
async def on_approval_decided(items: list[Applying]) -> None:
    await _ledger_run(items, _approval_decided)


def _approval_decided(item: Applying) -> Change:
    data: ev.ApprovalDecidedV1 = item.data
    verdict = "approved" if data.approved else f"rejected ({data.note or 'no note'})"
    step = (
        lambda led: led.decide(data.approval_id, data.quantity, data.approved),
        f"{data.quantity} {verdict} by {data.decided_by.name}",
    )
    return Change(item.uow, item.event, {data.charge_id: [step]})


@handlers.on_batch(topic("charge.forwarded"), topic("pick.requested"))
async def on_queue_change(items: list[Applying]) -> None:
    """Queue membership only: a history line, no ledger change (so no lock, no ledger
    load, no sales order refresh); a run finds its charges in one query."""
    wanted = {i.data.charge_id for i in items}
    rows = {
        row.id: row
        for row in await items[0].uow.session.execute(
            _charges_of(items[0].uow.dialect), {"ids": sorted(wanted)}
        )
    }
    if missing := sorted(wanted - rows.keys()):
        raise Park(f"charges not seen yet: {', '.join(missing)}")
    for item in items:
        data = item.data
        if isinstance(data, ev.PickRequestedV1):
            summary, location_id = f"pick of {data.quantity} requested", data.location_id
        else:
            summary, location_id = f"{data.quantity} forwarded to Purchasing & Fulfillment", None
        ledger.record(item.uow, rows[data.charge_id], item.event, summary, location_id=location_id)


@handlers.on_batch(topic("po.submitted"))
async def on_po_submitted(items: list[Applying]) -> None:
    changes = []
    for item in items:
        data: ev.POSubmittedV1 = item.data
        steps: dict[str, list[tuple[Step, str]]] = {}
        new_lines: list[dict[str, Any]] = []
        for line in data.lines:
            if line.charge_id is None:
                continue
            new_lines.append(
                {
                    "line_id": line.line_id,
                    "charge_id": line.charge_id,
                    "po_id": data.po.id,
                    "po_number": data.po.number,
                }
            )
            steps.setdefault(line.charge_id, []).append(
                (
                    _order(line.line_id, line.quantity),
                    f"{line.quantity} on order ({data.po.number})",
                )
            )
        if steps:
            changes.append(Change(item.uow, item.event, steps, new_lines=new_lines))
    if changes:
        await apply_each(changes)


def _order(line_id: str, units: int) -> Step:
    return lambda led: led.order(line_id, units)


@handlers.on_batch(topic("units.received"))
async def on_units_received(items: list[Applying]) -> None:
    await _ledger_run(items, _received)


def _received(item: Applying) -> Change | None:
    data: ev.UnitsReceivedV1 = item.data
    steps: dict[str, list[tuple[Step, str]]] = {}
    for line in data.lines:
        if line.charge_id is not None:
            steps.setdefault(line.charge_id, []).append(
                (_receive(line.line_id, line.quantity), f"{line.quantity} received ({data.number})")
            )
    return Change(item.uow, item.event, steps) if steps else None


def _receive(line_id: str, units: int) -> Step:
    return lambda led: led.receive(line_id, units)


@handlers.on_batch(topic("po.line_closed"))
async def on_po_line_closed(items: list[Applying]) -> None:
    await _ledger_run(items, _line_closed)


def _line_closed(item: Applying) -> Change | None:
    data: ev.POLineClosedV1 = item.data
    if data.charge_id is None:
        return None
    step = (
        lambda led: led.close_line(data.line_id),
        f"line closed on {data.number}: {data.quantity} back to the queue",
    )
    return Change(item.uow, item.event, {data.charge_id: [step]})


@handlers.on_batch(topic("shipment.delivered"))
async def on_shipment_delivered(items: list[Applying]) -> None:
    await _ledger_run(items, _delivered)


def _delivered(item: Applying) -> Change:
    data: ev.ShipmentDeliveredV1 = item.data
    steps: dict[str, list[tuple[Step, str]]] = {}
    how = "drop-shipped" if data.drop_ship else "delivered"
    for line in data.items:
        steps.setdefault(line.charge_id, []).append(
            (_seq(line.seq, line.quantity, True), f"{line.quantity} {how}")
        )
    return Change(item.uow, item.event, steps)


@handlers.on(topic("shipment.canceled"))
async def on_shipment_canceled(
    uow: UnitOfWork, data: ev.ShipmentCanceledV1, event: CloudEvent
) -> None:
    steps: dict[str, list[tuple[Step, str]]] = {}
    for item in data.items:
        steps.setdefault(item.charge_id, []).append(
            (_seq(item.seq, item.quantity, False), f"delivery of {item.quantity} canceled")
        )
    await apply(uow, event, steps)
    # R15, after `apply` locked the charges: a post committed before that is seen here.
    await uow.session.execute(
        update(charges)
        .where(charges.c.id.in_(list(steps)), charges.c.posted)
        .values(delivery_canceled_after_post=True)
    )


def _seq(seq: int, units: int, delivered: bool) -> Step:
    def step(led: Ledger) -> Ledger:
        if led.already_applied(seq):
            return led
        return led.deliver(seq, units) if delivered else led.cancel_delivery(seq, units)

    return step
