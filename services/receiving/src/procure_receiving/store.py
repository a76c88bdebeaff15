"""Reading receiving's tables: a PO as the domain sees it, and the JSON views of the
Receiving page and a PO's receiving history."""

from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts.status import POStatus
from procure_receiving.domain import Line, PurchaseOrder
from procure_receiving.models import metadata, po_lines, purchase_orders, receipt_lines, receipts
from procure_runtime import NotFound
from procure_runtime.replica import get_many as replica_get_many


async def load_po(
    session: AsyncSession, po_id: str, *, lock: bool = False
) -> tuple[PurchaseOrder, Row[Any], list[Row[Any]]]:
    """The PO and its lines; `lock` holds the PO row (FOR UPDATE) so that receipts and
    closes of one PO apply one at a time across instances."""
    query = select(purchase_orders).where(purchase_orders.c.id == po_id)
    if lock:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"PO {po_id!r} is not on the Receiving page (unknown or not submitted)")
    lines = list(
        (
            await session.execute(
                select(po_lines).where(po_lines.c.po_id == po_id).order_by(po_lines.c.position)
            )
        ).all()
    )
    po = PurchaseOrder(row.id, row.number, row.drop_ship, POStatus(row.status))
    products = await replica_get_many(
        session, metadata, "products", (ln.product["id"] for ln in lines)
    )
    for line in lines:
        product = products.get(line.product["id"])
        po.lines[line.line_id] = Line(
            line_id=line.line_id,
            charge_id=line.charge_id,
            product_id=line.product["id"],
            serialized=bool((product or line.product).get("serialized")),
            ordered=line.ordered,
            received=line.received,
            closed=line.closed,
            correlation_id=line.correlation_id,
        )
    return po, row, lines


def line_view(line: Row[Any]) -> dict[str, Any]:
    open_ = 0 if line.closed else line.ordered - line.received
    return {
        "line_id": line.line_id,
        "charge_id": line.charge_id,
        "product": line.product,
        "ordered": line.ordered,
        "received": line.received,
        "open": open_,
        "closed": line.closed,
    }


def receiving_item(po: Row[Any], lines: list[Row[Any]]) -> dict[str, Any]:
    """One PO on the Receiving page: only its open lines."""
    return {
        "po_id": po.id,
        "number": po.number,
        "vendor": po.vendor,
        "status": po.status,
        "drop_ship": po.drop_ship,
        "lines": [v for v in map(line_view, lines) if v["open"] > 0],
    }


async def po_history(session: AsyncSession, po_id: str) -> dict[str, Any]:
    _, po, lines = await load_po(session, po_id)
    rows = (
        await session.execute(
            select(receipts).where(receipts.c.po_id == po_id).order_by(receipts.c.n)
        )
    ).all()
    received = (
        await session.execute(
            select(receipt_lines).where(receipt_lines.c.receipt_id.in_([r.id for r in rows]))
        )
    ).all()
    position = {line.line_id: line.position for line in lines}
    received = sorted(received, key=lambda rl: position.get(rl.line_id, 0))
    by_receipt: dict[str, list[dict[str, Any]]] = {}
    for rl in received:
        by_receipt.setdefault(rl.receipt_id, []).append(
            {
                "line_id": rl.line_id,
                "quantity": rl.quantity,
                "location_id": rl.location_id,
                "serials": rl.serials,
                "open_after": rl.open_after,
            }
        )
    return {
        "id": po.id,
        "number": po.number,
        "status": po.status,
        "vendor": po.vendor,
        "ship_to": po.ship_to,
        "drop_ship": po.drop_ship,
        "submitted_by": po.submitted_by,
        "submitted_at": po.submitted_at.isoformat(),
        "lines": [
            {
                **line_view(line),
                "closed_quantity": line.closed_quantity,
                "close_reason": line.close_reason,
                "closed_by": line.closed_by,
                "closed_at": line.closed_at and line.closed_at.isoformat(),
            }
            for line in lines
        ],
        "receipts": [
            {
                "id": r.id,
                "received_by": r.received_by,
                "received_at": r.received_at.isoformat(),
                "vendor_invoice": r.vendor_invoice,
                "po_status": r.po_status,
                "lines": by_receipt.get(r.id, []),
            }
            for r in rows
        ],
    }
