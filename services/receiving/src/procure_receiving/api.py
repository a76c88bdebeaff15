"""Receiving's HTTP routes: the Receiving page, receipts (R10), closing a line (R9) and a
PO's receiving history."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import and_, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import events as ev
from procure_contracts.shapes import Id, Quantity, Serial
from procure_receiving.domain import (
    NotReceivable,
    PurchaseOrder,
    ReceiptLine,
    SerialsReceivedBefore,
    apply_receipt,
    check_receipt,
    close_line,
)
from procure_receiving.handlers import PO_LINE_CLOSED, UNITS_RECEIVED
from procure_receiving.models import (
    metadata,
    po_lines,
    purchase_orders,
    receipt_lines,
    receipts,
    received_serials,
)
from procure_receiving.store import load_po, po_history, receiving_item
from procure_runtime import UnknownReference
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import (
    CLIENT_ID_DOC,
    ClientId,
    among,
    dialect_of,
    id_for_new,
    rows_affected,
    update_many,
    utcnow,
)
from procure_runtime.http import SeqPage
from procure_runtime.replica import get_many as replica_get_many

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]
Receiver = Annotated[Principal, Depends(require("receiving"))]


class ReceiptLineIn(BaseModel):
    line_id: Id
    quantity: Quantity
    location_id: Id | None = None
    serials: list[Serial] = Field(default_factory=list)


class ReceiptIn(BaseModel):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("receipt"))
    # A PO has at most 2,000 lines (1,000 items and 1,000 stock lines, purchasing's limits).
    lines: list[ReceiptLineIn] = Field(min_length=1, max_length=2000)
    vendor_invoice: str | None = Field(default=None, max_length=200)


class CloseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=2000)


_OPEN_LINE = and_(
    po_lines.c.po_id == purchase_orders.c.id,
    po_lines.c.closed.is_(False),
    po_lines.c.received < po_lines.c.ordered,
)


@router.get("/receiving")
async def receiving_page(request: Request, _user: Reader, page: SeqPage = Depends()) -> Any:
    """POs with open lines, in the order they were submitted; open lines only."""
    query = select(purchase_orders).where(exists().where(_OPEN_LINE)).order_by(purchase_orders.c.n)
    if page.after is not None:
        query = query.where(purchase_orders.c.n > page.after)
    async with request.app.state.runtime.db.session() as session:
        pos = (await session.execute(query.limit(page.limit + 1))).all()
        ids = [po.id for po in pos]
        lines = (
            await session.execute(
                select(po_lines).where(po_lines.c.po_id.in_(ids)).order_by(po_lines.c.position)
            )
        ).all()
    items = [(po.n, receiving_item(po, [ln for ln in lines if ln.po_id == po.id])) for po in pos]
    return page.answer(items, key=lambda item: item[0], view=lambda item: item[1])


@router.get("/purchase-orders/{po_id:id}")
async def get_purchase_order(po_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        return await po_history(session, po_id)


def _new_id() -> str:
    return str(uuid.uuid4())


@router.post("/purchase-orders/{po_id:id}/receipts", status_code=201)
async def receive(po_id: str, body: ReceiptIn, request: Request, user: Receiver) -> dict[str, Any]:
    wanted = [
        ReceiptLine(r.line_id, r.quantity, r.location_id, tuple(r.serials)) for r in body.lines
    ]
    async with request.app.state.runtime.transaction() as uow:
        session = uow.session
        po, row, _ = await load_po(session, po_id, lock=True)
        receipt_id = await id_for_new(session, receipts.c.id, body.id, _new_id, "receipt")
        check_receipt(po, wanted)
        await _check_references(session, po, wanted)
        status = apply_receipt(po, wanted)
        await session.execute(
            receipts.insert().values(
                id=receipt_id,
                po_id=po_id,
                received_by=user.person,
                vendor_invoice=body.vendor_invoice,
                po_status=status,
            )
        )
        # The PO row is locked and `check_receipt` checked every line's open quantity.
        received: dict[str, int] = {}
        for r in wanted:
            received[r.line_id] = received.get(r.line_id, 0) + r.quantity
        await update_many(
            session,
            po_lines,
            ("po_id", "line_id"),
            [{"po_id": po_id, "line_id": i, "received": n} for i, n in received.items()],
            add=True,
        )
        out = [
            ev.ReceivedLine(
                line_id=r.line_id,
                charge_id=po.lines[r.line_id].charge_id,
                product_id=po.lines[r.line_id].product_id,
                quantity=r.quantity,
                location_id=r.location_id,
                serials=list(r.serials),
                open_after=po.lines[r.line_id].open,
            )
            for r in wanted
        ]
        await session.execute(
            receipt_lines.insert(),
            [
                {
                    "receipt_id": receipt_id,
                    "line_id": line.line_id,
                    "quantity": line.quantity,
                    "location_id": line.location_id,
                    "serials": line.serials,
                    "open_after": line.open_after,
                }
                for line in out
            ],
        )
        for r in wanted:
            await _record_serials(session, po.lines[r.line_id].product_id, r, receipt_id)
        await session.execute(
            update(purchase_orders).where(purchase_orders.c.id == po_id).values(status=status)
        )
        uow.emit(
            UNITS_RECEIVED,
            ev.UnitsReceivedV1(
                receipt_id=receipt_id,
                po_id=po_id,
                number=po.number,
                drop_ship=po.drop_ship,
                po_status=status,
                received_by=user.person,
                lines=out,
            ),
            # A receipt may span sales orders: its first line's flow.
            correlationid=po.lines[wanted[0].line_id].correlation_id or row.correlation_id or po_id,
        )
    return {
        "receipt_id": receipt_id,
        "po_id": po_id,
        "po_status": status,
        "vendor_invoice": body.vendor_invoice,
        "lines": [line.model_dump(mode="json") for line in out],
    }


async def _check_references(
    session: AsyncSession, po: PurchaseOrder, wanted: list[ReceiptLine]
) -> None:
    """What the pure rules cannot see: locations known here, serials never received."""
    wanted_locations = {r.location_id for r in wanted if r.location_id}
    known = await replica_get_many(session, metadata, "locations", wanted_locations)
    for r in wanted:
        if r.location_id and r.location_id not in known:
            raise UnknownReference(f"location {r.location_id!r} is unknown")
        if r.serials:
            product_id = po.lines[r.line_id].product_id
            seen = await session.scalars(
                select(received_serials.c.serial).where(
                    received_serials.c.product_id == product_id,
                    among(received_serials.c.serial, r.serials, dialect_of(session)),
                )
            )
            if again := sorted(seen.all()):
                raise SerialsReceivedBefore(f"serial numbers received before: {', '.join(again)}")


async def _record_serials(
    session: AsyncSession, product_id: str, r: ReceiptLine, receipt_id: str
) -> None:
    if not r.serials:
        return
    try:
        await session.execute(
            received_serials.insert(),
            [{"product_id": product_id, "serial": s, "receipt_id": receipt_id} for s in r.serials],
        )
    except IntegrityError:
        raise SerialsReceivedBefore(
            "a serial number of this receipt was just received elsewhere"
        ) from None


@router.post("/purchase-orders/{po_id:id}/lines/{line_id:id}/close")
async def close(
    po_id: str, line_id: str, body: CloseIn, request: Request, user: Receiver
) -> dict[str, Any]:
    """R9: the vendor cannot deliver the rest; it goes back to the queue."""
    async with request.app.state.runtime.transaction() as uow:
        po, row, _ = await load_po(uow.session, po_id, lock=True)
        rest = close_line(po, line_id)
        done = await uow.session.execute(
            update(po_lines)
            .where(
                po_lines.c.po_id == po_id,
                po_lines.c.line_id == line_id,
                po_lines.c.closed.is_(False),
                po_lines.c.ordered - po_lines.c.received == rest,
            )
            .values(
                closed=True,
                closed_quantity=rest,
                close_reason=body.reason,
                closed_by=user.person,
                closed_at=utcnow(),
            )
        )
        if rows_affected(done) != 1:
            raise NotReceivable(f"line {line_id!r} changed meanwhile; try again")
        await uow.session.execute(
            update(purchase_orders).where(purchase_orders.c.id == po_id).values(status=po.status)
        )
        uow.emit(
            PO_LINE_CLOSED,
            ev.POLineClosedV1(
                po_id=po_id,
                number=po.number,
                line_id=line_id,
                charge_id=po.lines[line_id].charge_id,
                quantity=rest,
                po_status=po.status,
                closed_by=user.person,
            ),
            correlationid=po.lines[line_id].correlation_id or row.correlation_id or po_id,
        )
    return {"po_id": po_id, "line_id": line_id, "quantity": rest, "po_status": po.status}
