"""Shipping's Kafka handlers: the charge replica, units joining the Ready tab, and
drop-shipped units delivered at once (R12)."""

from typing import Any

from sqlalchemy import bindparam, func, update

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Address, ChargeSpec
from procure_runtime import Applying, EventHandlers, Park, UnitOfWork
from procure_runtime.db import insert_ignore, insert_many
from procure_runtime.replica import replicate
from procure_shipping.models import charges, delivered_items, deliveries, metadata
from procure_shipping.store import add_ready_many, lock_charges, new_id, next_seq

handlers = EventHandlers()
replicate(handlers, metadata, "locations")

SHIPMENT_DELIVERED = spec_for_topic("shipment.delivered")
SHIPMENT_CANCELED = spec_for_topic("shipment.canceled")


@handlers.on_batch(spec_for_topic("opportunity.won"))
async def on_opportunity_won(items: list[Applying]) -> None:
    uow = items[0].uow
    await remember_charges(
        uow,
        [
            (charge, charge.ship_to or i.data.sales_order.ship_to, i.data.sales_order.id)
            for i in items
            for charge in i.data.charges
        ],
    )


@handlers.on_batch(spec_for_topic("charge.created"))
async def on_charge_created(items: list[Applying]) -> None:
    await remember_charges(
        items[0].uow,
        [
            (i.data.charge, i.data.charge.ship_to or i.data.ship_to, i.data.sales_order_id)
            for i in items
        ],
    )


async def remember_charges(
    uow: UnitOfWork, described: list[tuple[ChargeSpec, Address, str | None]]
) -> None:
    """Store each charge's description. The first one of a charge id wins, as in quotes
    and the notifier: a charge id announced again (by another producer, say) changes
    nothing. One known only from `charge.ready` (no parent) is completed; that event
    came from quotes with the first description's destination and product."""
    values: dict[str, dict[str, Any]] = {}
    for charge, destination, sales_order_id in described:
        values.setdefault(
            charge.id,
            {
                "id": charge.id,
                "sales_order_id": sales_order_id,
                "product": charge.product,
                "destination": destination,
                "parent": charge.parent,
            },
        )
    if not values:
        return
    rows = [{**v, "next_seq": 1} for v in values.values()]
    new = {row.id for row in await insert_many(uow.session, charges, rows, charges.c.id)}
    known = [
        {"k_id": k, "v_parent": v["parent"], "v_so": v["sales_order_id"]}
        for k, v in values.items()
        if k not in new
    ]
    if known:
        await uow.session.execute(_COMPLETE, known)


_COMPLETE = (
    update(charges)
    .where(charges.c.id == bindparam("k_id"), charges.c.parent.is_(None))
    .values(
        parent=bindparam("v_parent", type_=charges.c.parent.type),
        sales_order_id=func.coalesce(charges.c.sales_order_id, bindparam("v_so")),
    )
)


@handlers.on_batch(spec_for_topic("charge.ready"))
async def on_charge_ready(items: list[Applying]) -> None:
    """Units ready without procurement join the Ready tab. The event carries all the tab
    shows, so it never waits for the charge's origin. A run stores its new charges in
    one statement, locks them once and adds its units in one."""
    session, dialect = items[0].uow.session, items[0].uow.dialect
    ready: list[ev.ChargeReadyV1] = [item.data for item in items]
    await session.execute(
        insert_ignore(charges, dialect),
        [
            {
                "id": data.charge_id,
                "sales_order_id": data.sales_order_id,
                "product": data.product,
                "destination": data.destination,
                "next_seq": 1,
            }
            for data in ready
        ],
    )
    await lock_charges(session, {data.charge_id for data in ready})
    await add_ready_many(
        session, dialect, [(data.charge_id, None, data.quantity, []) for data in ready]
    )


@handlers.on_batch(spec_for_topic("units.picked"))
async def on_units_picked(items: list[Applying]) -> None:
    """Picked units join their charge's Ready item at the location; a charge not seen yet
    parks the run (one at a time, only the event naming it parks). A run locks its
    charges once and adds its units in one go."""
    session, dialect = items[0].uow.session, items[0].uow.dialect
    picked: list[ev.UnitsPickedV1] = [item.data for item in items]
    locked = await lock_charges(session, {data.charge_id for data in picked})
    if missing := sorted({data.charge_id for data in picked} - locked.keys()):
        raise Park(f"charge {', '.join(missing)} not seen yet")
    await add_ready_many(
        session,
        dialect,
        [(data.charge_id, data.location_id, data.quantity, data.serials) for data in picked],
    )


@handlers.on_batch(spec_for_topic("units.received"))
async def on_units_received(items: list[Applying]) -> None:
    """Received units join the Ready tab; drop-shipped ones are delivered at once (R12).
    A run of receipts locks its charges once and adds its Ready units in one go."""
    session, dialect = items[0].uow.session, items[0].uow.dialect
    receipts = []
    for item in items:
        lines = [line for line in item.data.lines if line.charge_id]  # stock lines never ship
        if lines:
            receipts.append((item, lines))
    if not receipts:
        return
    wanted = {str(line.charge_id) for _, lines in receipts for line in lines}
    known = await lock_charges(session, wanted)
    if missing := sorted(wanted - known.keys()):
        raise Park(f"charges {', '.join(missing)} not seen yet")
    adding = []
    for item, lines in receipts:
        if item.data.drop_ship:  # deliveries and Ready items touch different rows
            await deliver_drop_ship(item.uow, item.data, lines, known)
        else:
            adding += [(str(ln.charge_id), ln.location_id, ln.quantity, ln.serials) for ln in lines]
    if adding:
        await add_ready_many(session, dialect, adding)


async def deliver_drop_ship(
    uow: UnitOfWork, data: ev.UnitsReceivedV1, lines: list[ev.ReceivedLine], known: dict[str, Any]
) -> None:
    """R12: the vendor shipped to the customer: delivered at once, one item per charge."""
    per_charge: dict[str, list[ev.ReceivedLine]] = {}
    for line in lines:
        per_charge.setdefault(str(line.charge_id), []).append(line)
    delivery_id = new_id("dl")
    destination = known[str(lines[0].charge_id)].destination
    await uow.session.execute(
        deliveries.insert().values(
            id=delivery_id,
            drop_ship=True,
            po_number=data.number,
            destination=destination,
            delivered_by=data.received_by,
        )
    )
    items = []
    for charge_id, received in per_charge.items():
        quantity = sum(line.quantity for line in received)
        serials = [s for line in received for s in line.serials]
        item_id = new_id("di")
        await uow.session.execute(
            delivered_items.insert().values(
                item_id=item_id,
                delivery_id=delivery_id,
                charge_id=charge_id,
                location_id=None,
                ready_item_id=None,
                delivered=quantity,
                quantity=quantity,
                serials=serials,
                transfer_id=None,
            )
        )
        items.append(
            ev.DeliveredItem(
                item_id=item_id,
                charge_id=charge_id,
                seq=await next_seq(uow.session, charge_id),
                sales_order_id=known[charge_id].sales_order_id,
                product_id=received[0].product_id,
                quantity=quantity,
                serials=serials,
            )
        )
    uow.emit(
        SHIPMENT_DELIVERED,
        ev.ShipmentDeliveredV1(
            delivery_id=delivery_id,
            drop_ship=True,
            po_number=data.number,
            destination=destination,
            delivered_by=data.received_by,
            items=items,
        ),
        correlationid=known[items[0].charge_id].sales_order_id or items[0].charge_id,
    )
