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
from procure_runtime.db import among, dialect_of, lock_order, update_many


async def _po_following(session: AsyncSession, po_id: str, reported: str) -> None:
    await _pos_following(session, [(po_id, reported)])


async def _pos_following(session: AsyncSession, reports: list[tuple[str, str]]) -> None:
    """Each PO's status follows receiving's reports (PO id, status reported), in order:
    the POs are locked once (in id order, so concurrent reports never deadlock) and
    each is written once, as the last report leaves it."""
    ids = sorted({po_id for po_id, _ in reports})
    found = {
        po.id: po
        for po in await session.execute(
            select(purchase_orders.c.id, purchase_orders.c.number, purchase_orders.c.status)
            .where(among(purchase_orders.c.id, ids, dialect_of(session)))
            .order_by(*lock_order(dialect_of(session), purchase_orders.c.id))
            .with_for_update()
        )
    }
    status = {po_id: po.status for po_id, po in found.items()}
    for po_id, reported in reports:
        if po_id not in found:
            raise Reject(f"purchase order {po_id!r} was never created here")
        if status[po_id] not in (
            POStatus.SUBMITTED,
            POStatus.RECEIVED_PARTIAL,
            POStatus.RECEIVED_FULL,
        ):
            number = found[po_id].number
            raise Reject(f"purchase order {number} is {status[po_id]}: nothing can be received")
        status[po_id] = reported_status(status[po_id], reported)
    await update_many(
        session,
        purchase_orders,
        "id",
        [{"id": po_id, "status": st} for po_id, st in status.items() if st != found[po_id].status],
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


async def apply_receipts(uow: UnitOfWork, receipts: list[ev.UnitsReceivedV1]) -> None:
    """Received units leave their PO's open quantity for good (they are Ready now). A
    receipt can hold hundreds of lines, and a run many receipts: they are read, checked
    and written in a fixed number of statements (receiving adds units, so their counts
    add up before they are written)."""
    session = uow.session
    await _pos_following(session, [(data.po_id, data.po_status) for data in receipts])
    received: dict[str, int] = {}
    on_po: dict[str, str] = {}  # line id -> the PO a receipt names it on
    for data in receipts:
        for r in data.lines:
            received[r.line_id] = received.get(r.line_id, 0) + r.quantity
            on_po.setdefault(r.line_id, data.po_id)
    lines = {
        row.id: row
        for row in await session.execute(
            select(po_lines.c.id, po_lines.c.po_id, po_lines.c.charge_id).where(
                among(po_lines.c.id, received, uow.dialect)
            )
        )
    }
    for data in receipts:
        for r in data.lines:
            if r.line_id not in lines or lines[r.line_id].po_id != data.po_id:
                raise Reject(f"line {r.line_id!r} is not on purchase order {data.po_id!r}")
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
            .order_by(*lock_order(uow.dialect, charges.c.id))
            .with_for_update()
        )
    }
    # Units only leave `ordered` here, so the run's total fits if and only if each
    # receipt's fits after the ones before it.
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
