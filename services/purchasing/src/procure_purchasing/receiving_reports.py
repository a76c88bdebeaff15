"""Purchasing's view of a submitted PO follows receiving's reports (R9, R10): received
units leave it for good; a closed line's rest goes back on the queue."""

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import events as ev
from procure_contracts.status import POStatus
from procure_purchasing import fulfillment
from procure_purchasing.domain import reported_status
from procure_purchasing.models import po_lines, purchase_orders
from procure_runtime import Park, Reject, UnitOfWork


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
    """Received units leave the PO's open quantity for good (they are Ready now)."""
    await _po_following(uow.session, data.po_id, data.po_status)
    for received in data.lines:
        line = await _line(uow.session, data.po_id, received.line_id)
        await uow.session.execute(
            update(po_lines)
            .where(po_lines.c.id == line.id)
            .values(received=po_lines.c.received + received.quantity)
        )
        if line.charge_id and not await fulfillment.move(
            uow.session, line.charge_id, "ordered", "done", received.quantity
        ):
            raise Park(f"charge {line.charge_id} has fewer than {received.quantity} on order")


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
