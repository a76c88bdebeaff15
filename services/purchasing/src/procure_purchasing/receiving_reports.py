"""Purchasing's view of a submitted PO follows receiving's reports (R9, R10): received
units leave it for good; a closed line's rest goes back on the queue."""

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import events as ev
from procure_contracts.status import POStatus
from procure_purchasing import fulfillment
from procure_purchasing.domain import reported_status
from procure_purchasing.models import charges, po_lines, purchase_orders
from procure_runtime import Park, Reject, UnitOfWork
from procure_runtime.db import among, update_many


async def _po_following(session: AsyncSession, po_id: str, reported: str) -> None:
    po = (
        await session.execute(
            select(purchase_orders).where(purchase_orders.c.id == po_id).with_for_update()
        )
    ).first()
    if po is None:
        raise Reject(f"purchase order {po_id!r} was never created here")
    if po.status not in (POStatus.SUBMITTED, POStatus.RECEIVED_PARTIAL, POStatus.RECEIVED_FULL):
        raise Reject(f"purchase order {po.number} is {po.status}: nothing can be received")
    await session.execute(
        update(purchase_orders)
        .where(purchase_orders.c.id == po_id)
        .values(status=reported_status(po.status, reported))
    )


async def _line(session: AsyncSession, po_id: str, line_id: str) -> Any:
    line = (
        await session.execute(
            select(po_lines).where(po_lines.c.id == line_id, po_lines.c.po_id == po_id)
        )
    ).first()
    if line is None:
        raise Reject(f"line {line_id!r} is not on purchase order {po_id!r}")
    return line


async def apply_receipt(uow: UnitOfWork, data: ev.UnitsReceivedV1) -> None:
    """Received units leave the PO's open quantity for good (they are Ready now). A
    receipt can hold hundreds of lines: they are read, checked and written in a fixed
    number of statements."""
    session = uow.session
    await _po_following(session, data.po_id, data.po_status)
    received: dict[str, int] = {}
    for r in data.lines:
        received[r.line_id] = received.get(r.line_id, 0) + r.quantity
    lines = {
        row.id: row
        for row in await session.execute(
            select(po_lines).where(
                po_lines.c.po_id == data.po_id, among(po_lines.c.id, received, uow.dialect)
            )
        )
    }
    if missing := [line_id for line_id in received if line_id not in lines]:
        raise Reject(f"line {missing[0]!r} is not on purchase order {data.po_id!r}")
    await update_many(
        session, po_lines, "id", [{"id": i, "received": q} for i, q in received.items()], add=True
    )
    done: dict[str, int] = {}
    for line_id, quantity in received.items():
        if charge_id := lines[line_id].charge_id:
            done[charge_id] = done.get(charge_id, 0) + quantity
    if not done:
        return
    on_order = {  # locked in id order, so concurrent receipts never deadlock
        row.id: row.ordered
        for row in await session.execute(
            select(charges.c.id, charges.c.ordered)
            .where(among(charges.c.id, sorted(done), uow.dialect))
            .order_by(charges.c.id)
            .with_for_update()
        )
    }
    for charge_id, quantity in done.items():
        if on_order.get(charge_id, 0) < quantity:
            raise Park(f"charge {charge_id} has fewer than {quantity} on order")
    moves = [{"id": c, "ordered": -q, "done": q} for c, q in done.items()]
    await update_many(session, charges, "id", moves, add=True)


async def apply_line_closed(uow: UnitOfWork, data: ev.POLineClosedV1) -> None:
    """R9: a closed line counts as complete; its rest goes back on the queue."""
    await _po_following(uow.session, data.po_id, data.po_status)
    line = await _line(uow.session, data.po_id, data.line_id)
    await uow.session.execute(
        update(po_lines)
        .where(po_lines.c.id == line.id)
        .values(closed=True, closed_quantity=po_lines.c.closed_quantity + data.quantity)
    )
    if line.charge_id and not await fulfillment.return_to_queue(
        uow, line.charge_id, "ordered", data.quantity
    ):
        raise Park(f"charge {line.charge_id} has fewer than {data.quantity} on order")
