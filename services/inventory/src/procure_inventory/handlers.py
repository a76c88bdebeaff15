"""Inventory's Kafka handlers: one function per topic. Won and lost opportunities settle
reservations (R2), direct charges pick theirs (R4), pick requests pick (R7), receipts
stock units (R11), deliveries take them out and canceled deliveries put them back (R13,
R15)."""

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import ChargeSpec
from procure_inventory import stock
from procure_inventory.domain import (
    Cause,
    Claim,
    Outcome,
    OutOfOrder,
    ReservationsExceedQuantity,
    check_won_charge,
    in_seq_order,
)
from procure_inventory.picking import (
    close_opportunities,
    first_announced,
    opportunities_holding,
    opportunities_won,
    pick_listed,
    pick_on_request,
    release_listed,
    release_opportunity,
    settle_won_after_loss,
)
from procure_runtime import Applying, EventHandlers, Park, Reject, UnitOfWork
from procure_runtime.logging import get_logger

log = get_logger("procure.inventory")
handlers = EventHandlers()


@handlers.on_batch(spec_for_topic("opportunity.won"))
async def on_opportunity_won(items: list[Applying]) -> None:
    """Exactly the listed reservations become picks; the rest of the opportunity's are
    released, including those listed on charges not subject to procurement (R3). Most
    won opportunities hold no reservation: a run finds those in one query."""
    for item in items:
        for charge in item.data.charges:
            _check_listed(charge)
    session = items[0].uow.session
    opportunity_ids = [i.data.opportunity.id for i in items]
    # An opportunity wins once (R3), as quotes has it: a later won of it (an outside
    # producer's retry under new ids) would only fail its picks, whose units quotes,
    # which ignores that won, would never hear of.
    won_before = await opportunities_won(session, opportunity_ids)
    # As quotes: the first event naming a sales order makes it, and only charges never
    # announced before are routed (neither by a won nor by `charge.created`). An event
    # ignored leaves its opportunity open, as quotes does, to be won or lost after all.
    fresh = [i for i in items if i.data.opportunity.id not in won_before]
    first: dict[str, Applying] = {}
    for item in fresh:
        first.setdefault(item.data.sales_order.id, item)
    new_orders = await first_announced(session, "sales order", first)
    kept = {
        id(i): i
        for i in fresh
        if i.data.sales_order.id in new_orders and first[i.data.sales_order.id] is i
    }
    new_charges = await first_announced(
        session, "charge", (c.id for i in kept.values() for c in i.data.charges)
    )
    await close_opportunities(
        items[0].uow, [i.data.opportunity.id for i in kept.values()], Outcome.WON
    )
    holding, released_on_loss = await opportunities_holding(session, opportunity_ids)
    for item in items:
        data = item.data
        if id(item) not in kept:
            log.info(
                "opportunity won already, or its sales order exists; event ignored",
                opportunity_id=data.opportunity.id,
                sales_order_id=data.sales_order.id,
            )
            continue
        procured = [
            c for c in data.charges if c.product.subject_to_procurement and c.id in new_charges
        ]
        opportunity_id = data.opportunity.id
        lost_first = opportunity_id in released_on_loss  # and the won prevails: `retaken`
        if not any(c.reservations for c in procured) and not (
            opportunity_id in holding or lost_first
        ):
            continue  # nothing reserved: nothing to pick or release
        correlation = data.sales_order.id
        for charge in procured:
            claim = Claim(charge.id, charge.product.id, charge.quote_item_id, opportunity_id)
            await pick_listed(item.uow, claim, charge, correlation, rest_later=True)
        await release_opportunity(item.uow, opportunity_id, correlation)
        if lost_first:
            await settle_won_after_loss(item.uow, opportunity_id)


@handlers.on(spec_for_topic("charge.created"))
async def on_charge_created(uow: UnitOfWork, data: ev.ChargeCreatedV1, event: CloudEvent) -> None:
    """A direct charge is routed as a won one (R4): quotes counts its listed reservations
    as awaiting their pick, so they become picks (or fail) here. No opportunity was won:
    nothing else is released."""
    charge = data.charge
    if not await first_announced(uow.session, "charge", [charge.id]):
        log.info("charge announced before; event ignored", charge_id=charge.id)
        return  # as quotes: the first description of a charge wins
    if not charge.reservations:
        return
    claim = Claim(charge.id, charge.product.id, charge.quote_item_id, None)
    correlation = data.sales_order_id or charge.id
    if not charge.product.subject_to_procurement:
        # R3: quotes routes these units without a pick; the reservations are released
        await release_listed(uow, claim, charge, correlation)
        return
    _check_listed(charge)
    await pick_listed(uow, claim, charge, correlation, rest_later=False)


def _check_listed(charge: ChargeSpec) -> None:
    if not charge.product.subject_to_procurement:
        return
    try:
        check_won_charge(charge.quantity, [r.quantity for r in charge.reservations])
    except ReservationsExceedQuantity as exc:  # quotes refuses the same event
        raise Reject(f"charge {charge.id}: {exc}") from None


@handlers.on(spec_for_topic("opportunity.lost"))
async def on_opportunity_lost(
    uow: UnitOfWork, data: ev.OpportunityLostV1, event: CloudEvent
) -> None:
    await close_opportunities(uow, [data.opportunity_id], Outcome.LOST)
    await release_opportunity(uow, data.opportunity_id, on_loss=True)


@handlers.on(spec_for_topic("pick.requested"))
async def on_pick_requested(uow: UnitOfWork, data: ev.PickRequestedV1, event: CloudEvent) -> None:
    await pick_on_request(uow, data)


@handlers.on_batch(spec_for_topic("units.received"))
async def on_units_received(items: list[Applying]) -> None:
    """R11: into stock at the line's location, held for its charge; stock lines only raise
    on hand. Drop-ship receipts never touch stock (R12). A run of receipts, of hundreds
    of lines each or of one, costs a fixed number of statements (plus one per line with
    serials): adding units is order-free, so their counts add up before they are written."""
    session = items[0].uow.session
    received: list[tuple[ev.UnitsReceivedV1, ev.ReceivedLine]] = []
    for item in items:
        data: ev.UnitsReceivedV1 = item.data
        if data.drop_ship:
            continue
        for line in data.lines:
            if line.location_id is None:
                log.warning("received line without a location; no stock", line_id=line.line_id)
            else:
                received.append((data, line))
    if not received:
        return
    for data, line in received:  # in order: the first to name a serial holds it
        kept = await stock.receive_serials(
            session, line.product_id, str(line.location_id), line.serials, line.charge_id
        )
        if kept:
            log.warning(
                "received serials already held for a charge; they stay with it",
                receipt_id=data.receipt_id,
                line_id=line.line_id,
                held=dict(kept),
            )
    await stock.receive(
        session,
        [(ln.product_id, str(ln.location_id), ln.charge_id, ln.quantity) for _, ln in received],
    )
    await stock.record_many(
        session,
        [
            stock.movement(
                Cause.RECEIPT,
                line.product_id,
                line.quantity,
                to_location_id=line.location_id,
                charge_id=line.charge_id,
                numbers=line.serials,
                reference=data.receipt_id,
                moved_by=data.received_by,
            )
            for data, line in received
        ],
    )


@handlers.on_batch(spec_for_topic("shipment.delivered"))
async def on_shipment_delivered(items: list[Applying]) -> None:
    """Each item with a location leaves stock there; it must be held for its charge
    already, else the receipt or pick that stocks it has not been seen yet: park. A run
    of deliveries, of hundreds of items each or of one, costs a fixed number of
    statements: its items leave stock together, as one delivery's do. Each charge's
    deliveries and cancellations apply in shipping's `seq` order (a gap parks)."""
    session = items[0].uow.session
    deliveries: list[tuple[ev.ShipmentDeliveredV1, list[ev.DeliveredItem]]] = []
    async with _in_seq_order(session, [i for item in items for i in item.data.items]) as new:
        for item in items:  # drop-ship items move no stock, but take their seq
            data: ev.ShipmentDeliveredV1 = item.data
            is_new = new(data.items)
            if not data.drop_ship:
                deliveries.append((data, [i for i, n in zip(data.items, is_new, strict=True) if n]))
    done = await stock.existing_movements(
        session, [i.transfer_id for _, fresh in deliveries for i in fresh if i.transfer_id]
    )
    taken: list[tuple[ev.ShipmentDeliveredV1, ev.DeliveredItem]] = []
    for data, fresh in deliveries:  # a transfer applied already (a charge delivered
        # before seqs were followed), or by an earlier delivery of the run
        mine = [
            i
            for i in fresh
            if i.location_id is not None and not (i.transfer_id and i.transfer_id in done)
        ]
        done.update(i.transfer_id for i in mine if i.transfer_id)
        taken += [(data, i) for i in mine]
    if not taken:
        return  # applied already, or nothing from stock
    moving = [(i.charge_id, i.product_id, str(i.location_id), i.quantity) for _, i in taken]
    try:
        numbers = await stock.deliver(session, moving, [i.serials for _, i in taken])
    except stock.NotHeld as exc:
        raise Park(str(exc)) from None
    await stock.record_many(
        session,
        [
            stock.movement(
                Cause.DELIVERY,
                item.product_id,
                item.quantity,
                transfer_id=item.transfer_id,
                from_location_id=item.location_id,
                charge_id=item.charge_id,
                numbers=serials,
                reference=data.delivery_id,
                moved_by=data.delivered_by,
            )
            for (data, item), serials in zip(taken, numbers, strict=True)
        ],
    )


@handlers.on(spec_for_topic("shipment.canceled"))
async def on_shipment_canceled(
    uow: UnitOfWork, data: ev.ShipmentCanceledV1, event: CloudEvent
) -> None:
    """R15: back into stock at the original location, held for the charge again, in
    the charge's seq order with its deliveries."""
    session = uow.session
    async with _in_seq_order(session, data.items) as new:
        fresh = new(data.items)
    for item, is_new in zip(data.items, fresh, strict=True):
        if item.location_id is None or not is_new:
            continue
        if item.transfer_id and await stock.movement_exists(session, item.transfer_id):
            continue  # applied already
        original = item.original_transfer_id
        if original and not await stock.movement_exists(session, original):
            raise Park(f"delivery transfer {original} not applied yet")
        await stock.change(
            session, item.product_id, item.location_id, on_hand=item.quantity, picked=item.quantity
        )
        await stock.hold(session, item.charge_id, item.product_id, item.location_id, item.quantity)
        await stock.add_serials(
            session, item.product_id, item.location_id, item.serials, item.charge_id, restore=True
        )
        await stock.record(
            session,
            Cause.CANCELLATION,
            item.product_id,
            item.quantity,
            transfer_id=item.transfer_id,
            to_location_id=item.location_id,
            charge_id=item.charge_id,
            numbers=item.serials,
            reason=data.reason,
            reference=data.delivery_id,
            moved_by=data.canceled_by,
        )


@asynccontextmanager
async def _in_seq_order(
    session: AsyncSession, items: Sequence[ev.DeliveredItem | ev.CanceledItem]
) -> AsyncIterator[Callable[[Sequence[ev.DeliveredItem | ev.CanceledItem]], list[bool]]]:
    """Yields a function telling, for one event's items in turn, which are new in their
    charges' seq order (an event out of order parks); then records the seqs taken."""
    last = await stock.last_seqs(session, {i.charge_id for i in items})
    before = dict(last)

    def new(of: Sequence[ev.DeliveredItem | ev.CanceledItem]) -> list[bool]:
        try:
            return in_seq_order(last, [(i.charge_id, i.seq) for i in of])
        except OutOfOrder as exc:
            raise Park(str(exc)) from None

    yield new
    await stock.save_seqs(session, before, last)
