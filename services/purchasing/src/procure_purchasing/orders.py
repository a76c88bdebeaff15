"""Purchase orders (R8, R9): lines taken from the queue, numbering, the PO view and the
events a PO publishes. Called by the routes inside one transaction."""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Person, Product, Vendor, plain
from procure_contracts.status import POStatus
from procure_purchasing import fulfillment
from procure_purchasing.domain import (
    NotNew,
    StockLinesNeedLocation,
    drop_ship_address,
    line_open,
    po_number,
    units_to_take,
)
from procure_purchasing.models import charges, counters, metadata, po_lines, purchase_orders
from procure_runtime import NotFound, UnitOfWork, UnknownReference, replica
from procure_runtime.db import among, id_for_new, insert_ignore, lock_order, update_many, utcnow

PO_SUBMITTED = spec_for_topic("po.submitted")
PO_CANCELED = spec_for_topic("po.canceled")


@dataclass(frozen=True)
class Take:
    """Units of one queue item wanted on a PO (quantity None: all it holds)."""

    item_id: str
    quantity: int | None


async def known(session: AsyncSession, kind: str, id_: str, what: str) -> dict[str, Any]:
    doc = await replica.get(session, metadata, kind, id_)
    if doc is None:
        raise UnknownReference(f"unknown {what} {id_!r}", reference=id_)
    return doc


async def queue_items(session: AsyncSession, takes: list[Take]) -> dict[str, Any]:
    """The charges behind the requested items; an item never sent here → 422."""
    found = await fulfillment.charges_by_id(session, [t.item_id for t in takes])
    for take in takes:
        if take.item_id not in found:
            raise UnknownReference(f"unknown queue item {take.item_id!r}", reference=take.item_id)
    return found


async def create(
    uow: UnitOfWork,
    vendor_id: str,
    ship_kind: str,
    location_id: str | None,
    takes: list[Take],
    stock_lines: list[tuple[str, int]],
    by: Person,
    wanted_id: str | None = None,
) -> str:
    """R8: one vendor, one ship-to; every reference is checked (422) before any unit is
    taken from the queue (409), and a refused request changes nothing. `wanted_id` is the
    client's id for the PO (one that exists already is a 409)."""
    session = uow.session
    po_id = await id_for_new(
        session, purchase_orders.c.id, wanted_id, lambda: f"po-{uuid.uuid4().hex[:12]}", "PO"
    )
    vendor = await known(session, "vendors", vendor_id, "vendor")
    if ship_kind == "location":
        assert location_id is not None
        await known(session, "locations", location_id, "location")
    rows = await queue_items(session, takes)
    products = [await known(session, "products", pid, "product") for pid, _ in stock_lines]
    address = drop_ship_address(
        ship_kind, [r.destination for r in rows.values()], bool(stock_lines)
    )
    await session.execute(
        purchase_orders.insert().values(
            id=po_id,
            number=await next_number(uow),
            status=POStatus.NEW,
            vendor=Vendor.model_validate(vendor),
            ship_kind=ship_kind,
            location_id=location_id if ship_kind == "location" else None,
            ship_address=address,
            created_by=by,
            created_at=utcnow(),
        )
    )
    await take_units(uow, po_id, takes)
    for product, (_, quantity) in zip(products, stock_lines, strict=True):
        await add_line(session, po_id, None, product, quantity, product["unit_cost"])
    return po_id


async def add_to(
    uow: UnitOfWork, po_id: str, take: Take | None, stock_line: tuple[str, int] | None
) -> None:
    """Add a queue item's units or a stock line to a New PO, keeping its ship-to rules."""
    po = await locked_po(uow.session, po_id)
    if take is not None:
        row = (await queue_items(uow.session, [take]))[take.item_id]
        if po.ship_kind == "organization":
            # Against the charges still on the PO: once all were removed, any may come.
            on_po = await _destinations(uow.session, po_id)
            address = drop_ship_address("organization", [*on_po, row.destination], False)
            if address != po.ship_address:
                await _set_ship_address(uow.session, po_id, address)
        await take_units(uow, po_id, [take])
    if stock_line is not None:
        if po.ship_kind != "location":
            raise StockLinesNeedLocation("stock lines need a PO shipped to a location")
        product = await known(uow.session, "products", stock_line[0], "product")
        await add_line(uow.session, po_id, None, product, stock_line[1], product["unit_cost"])


async def remove_line(uow: UnitOfWork, po_id: str, line_id: str) -> None:
    """Take a line off a New PO; its units go back on the queue."""
    po = await locked_po(uow.session, po_id)
    line = (
        await uow.session.execute(
            select(po_lines).where(po_lines.c.id == line_id, po_lines.c.po_id == po_id)
        )
    ).first()
    if line is None:
        raise NotFound(f"line {line_id!r} is not on purchase order {po_id!r}")
    await uow.session.execute(delete(po_lines).where(po_lines.c.id == line_id))
    if po.ship_kind == "organization" and not await _destinations(uow.session, po_id):
        await _set_ship_address(uow.session, po_id, None)  # the next charge added sets it
    if line.charge_id:
        await fulfillment.return_to_queue(uow, line.charge_id, "ordered", line.quantity)


async def _destinations(session: AsyncSession, po_id: str) -> list[dict[str, Any]]:
    """The destinations of the charges on a PO's lines: a drop-ship PO's address."""
    query = (
        select(charges.c.destination)
        .join_from(po_lines, charges, po_lines.c.charge_id == charges.c.id)
        .where(po_lines.c.po_id == po_id)
    )
    return list((await session.scalars(query)).all())


async def _set_ship_address(session: AsyncSession, po_id: str, address: Any) -> None:
    await session.execute(
        update(purchase_orders).where(purchase_orders.c.id == po_id).values(ship_address=address)
    )


async def take_units(uow: UnitOfWork, po_id: str, takes: list[Take]) -> None:
    """Move units from the queue onto the PO's lines (one line per charge, in the order
    asked). Queue rows are locked in id order so concurrent POs lock them alike; a PO of
    hundreds of items costs a fixed number of statements."""
    session = uow.session
    ids = sorted({t.item_id for t in takes})
    rows = {
        row.id: row
        for row in await session.execute(
            select(charges)
            .where(among(charges.c.id, ids, uow.dialect))
            .order_by(*lock_order(uow.dialect, charges.c.id))
            .with_for_update()
        )
    }
    queued = {charge_id: row.queued for charge_id, row in rows.items()}
    units: dict[int, int] = {}
    for index, take in sorted(enumerate(takes), key=lambda t: t[1].item_id):
        units[index] = units_to_take(take.quantity, queued[take.item_id], take.item_id)
        queued[take.item_id] -= units[index]
    moved: dict[str, int] = {}
    for index, take in enumerate(takes):
        moved[take.item_id] = moved.get(take.item_id, 0) + units[index]
    await update_many(
        session,
        charges,
        "id",
        [{"id": c, "queued": -n, "ordered": n} for c, n in moved.items()],
        add=True,
    )
    lines = {
        line.charge_id: line.id
        for line in await session.execute(
            select(po_lines.c.id, po_lines.c.charge_id).where(
                po_lines.c.po_id == po_id, among(po_lines.c.charge_id, ids, uow.dialect)
            )
        )
    }
    position = await _last_position(session, po_id)
    new_lines: list[dict[str, Any]] = []
    merged: dict[str, int] = {}
    for index, take in enumerate(takes):
        row = rows[take.item_id]
        if row.id in lines:
            merged[lines[row.id]] = merged.get(lines[row.id], 0) + units[index]
            continue
        position += 1
        line = _line(po_id, position, row.id, row.product, units[index])
        line["unit_cost"] = plain(Product.model_validate(row.product).unit_cost)
        lines[row.id] = line["id"]
        new_lines.append(line)
    if new_lines:
        await session.execute(po_lines.insert(), new_lines)
    await update_many(
        session, po_lines, "id", [{"id": i, "quantity": n} for i, n in merged.items()], add=True
    )


def _line(
    po_id: str, position: int, charge_id: str | None, product: dict[str, Any], quantity: int
) -> dict[str, Any]:
    return {
        "id": f"pol-{uuid.uuid4().hex[:12]}",
        "po_id": po_id,
        "position": position,
        "charge_id": charge_id,
        "product": product,
        "quantity": quantity,
        "received": 0,
        "closed": False,
        "closed_quantity": 0,
    }


async def _last_position(session: AsyncSession, po_id: str) -> int:
    query = select(func.coalesce(func.max(po_lines.c.position), 0)).where(po_lines.c.po_id == po_id)
    return int(await session.scalar(query) or 0)


async def add_line(
    session: AsyncSession,
    po_id: str,
    charge_id: str | None,
    product: dict[str, Any],
    quantity: int,
    unit_cost: Any,
) -> None:
    line = _line(po_id, await _last_position(session, po_id) + 1, charge_id, product, quantity)
    await session.execute(po_lines.insert().values(**line, unit_cost=str(unit_cost)))


async def next_number(uow: UnitOfWork) -> str:
    """Sequential, gap-free PO numbers: the counter row's lock serializes creators."""
    await uow.session.execute(insert_ignore(counters, uow.dialect).values(name="po", value=0))
    value = await uow.session.scalar(
        update(counters)
        .where(counters.c.name == "po")
        .values(value=counters.c.value + 1)
        .returning(counters.c.value)
    )
    return po_number(int(value))


async def locked_po(session: AsyncSession, po_id: str, *, new_only: bool = True) -> Any:
    po = (
        await session.execute(
            select(purchase_orders).where(purchase_orders.c.id == po_id).with_for_update()
        )
    ).first()
    if po is None:
        raise NotFound(f"purchase order {po_id!r} does not exist")
    if new_only and po.status != POStatus.NEW:
        raise NotNew(f"purchase order {po.number} is {po.status}; only a New PO can change")
    return po


async def lines_of(session: AsyncSession, po_id: str) -> list[Any]:
    query = select(po_lines).where(po_lines.c.po_id == po_id).order_by(po_lines.c.position)
    return list((await session.execute(query)).all())


async def cancel(uow: UnitOfWork, po_id: str) -> None:
    po = await locked_po(uow.session, po_id)
    await uow.session.execute(
        update(purchase_orders)
        .where(purchase_orders.c.id == po_id)
        .values(status=POStatus.CANCELED, canceled_at=utcnow())
    )
    lines = await lines_of(uow.session, po_id)
    returned: dict[str, int] = {}
    for line in lines:
        if line.charge_id:
            returned[line.charge_id] = returned.get(line.charge_id, 0) + line.quantity
    await fulfillment.return_many_to_queue(uow, "ordered", returned)
    uow.emit(
        PO_CANCELED,
        ev.POCanceledV1(po_id=po.id, number=po.number),
        correlationid=await _correlation(uow.session, lines, po.id),
    )


async def submit(uow: UnitOfWork, po_id: str, by: Person) -> None:
    po = await locked_po(uow.session, po_id)
    lines = await lines_of(uow.session, po_id)
    if not lines:
        raise NotNew(f"purchase order {po.number} has no lines to submit")
    await uow.session.execute(
        update(purchase_orders)
        .where(purchase_orders.c.id == po_id)
        .values(
            status=POStatus.SUBMITTED,
            submitted_by=by,
            submitted_at=utcnow(),
        )
    )
    charged = await fulfillment.charges_by_id(
        uow.session, [line.charge_id for line in lines if line.charge_id]
    )
    uow.emit(
        PO_SUBMITTED,
        ev.POSubmittedV1(
            po=ev.PORef(
                id=po.id,
                number=po.number,
                vendor=Vendor.model_validate(po.vendor),
                ship_to=ev.POShipTo(
                    kind=po.ship_kind, location_id=po.location_id, address=po.ship_address
                ),
            ),
            lines=[
                ev.POLine(
                    line_id=line.id,
                    charge_id=line.charge_id,
                    sales_order_id=(
                        charged[line.charge_id].sales_order_id
                        if line.charge_id in charged
                        else None
                    ),
                    product=Product.model_validate(line.product),
                    quantity=line.quantity,
                    unit_cost=line.unit_cost,
                )
                for line in lines
            ],
            submitted_by=by,
        ),
        correlationid=await _correlation(uow.session, lines, po.id),
    )


async def _correlation(session: AsyncSession, lines: list[Any], po_id: str) -> str:
    """A PO may span sales orders: it correlates with its first charge's flow."""
    for line in lines:
        if line.charge_id:
            return fulfillment.correlation(await fulfillment.charge(session, line.charge_id))
    return po_id


async def view(session: AsyncSession, po_id: str) -> dict[str, Any]:
    po = (
        await session.execute(select(purchase_orders).where(purchase_orders.c.id == po_id))
    ).first()
    if po is None:
        raise NotFound(f"purchase order {po_id!r} does not exist")
    return po_view(po, await lines_of(session, po_id))


def po_view(po: Any, lines: list[Any]) -> dict[str, Any]:
    return {
        "id": po.id,
        "number": po.number,
        "status": po.status,
        "vendor": po.vendor,
        "ship_to": {
            "kind": po.ship_kind,
            "location_id": po.location_id,
            "address": po.ship_address,
        },
        "lines": [
            {
                "line_id": line.id,
                "charge_id": line.charge_id,
                "product": line.product,
                "quantity": line.quantity,
                "unit_cost": line.unit_cost,
                "received": line.received,
                "open": line_open(po.status, line.quantity, line.received, line.closed_quantity),
                "closed": line.closed,
            }
            for line in lines
        ],
        "created_by": po.created_by,
        "created_at": po.created_at.isoformat(),
        "submitted_by": po.submitted_by,
        "submitted_at": po.submitted_at.isoformat() if po.submitted_at else None,
    }
