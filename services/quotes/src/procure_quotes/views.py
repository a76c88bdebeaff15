"""Read models of quotes' HTTP API: charges with their units per status, sales orders
with can_fulfill and a timeline."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from procure_quotes.ledger import Parts, ledger_of, lines_of
from procure_quotes.models import charges, history, metadata, sales_orders
from procure_runtime import replica


def charge_view(row: Any, lines: Parts, hist: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "sales_order_id": row.sales_order_id,
        "parent": row.parent,
        "owner": row.owner,
        "product": row.product,
        "quantity": row.quantity,
        "unit_price": str(row.unit_price),
        "units": {str(status): n for status, n in ledger_of(row, lines).units().items()},
        "posted": row.posted,
        "posted_at": row.posted_at.isoformat() if row.posted_at else None,
        "delivery_canceled_after_post": row.delivery_canceled_after_post,
    }
    if hist is not None:
        view["history"] = hist
    return view


async def _lines(session: AsyncSession, where: Any, *, with_charge: bool) -> list[dict[str, Any]]:
    """History lines in time order, each place named as the locations replica has it now
    (its id until the location's catalog event has come)."""
    hist = (
        await session.execute(select(history).where(where).order_by(history.c.time, history.c.id))
    ).all()
    places = [h.location_id for h in hist if h.location_id]
    names = await replica.get_many(session, metadata, "locations", places)
    out = []
    for h in hist:
        summary = h.summary
        if h.location_id:
            summary += f" at {names.get(h.location_id, {}).get('name') or h.location_id}"
        entry = {
            "time": h.time.isoformat(),
            "type": h.type,
            "event_id": h.event_id,
            "summary": summary,
        }
        if with_charge:
            entry["charge_id"] = h.charge_id
        out.append(entry)
    return out


async def charges_view(session: AsyncSession, rows: list[Any]) -> list[dict[str, Any]]:
    lines = await lines_of(session, [r.id for r in rows])
    return [charge_view(r, lines[r.id]) for r in rows]


async def one_charge(session: AsyncSession, charge_id: str) -> dict[str, Any] | None:
    row = (await session.execute(select(charges).where(charges.c.id == charge_id))).first()
    if row is None:
        return None
    lines = await lines_of(session, [row.id])
    hist = await _lines(session, history.c.charge_id == charge_id, with_charge=False)
    return charge_view(row, lines[row.id], hist)


async def sales_order_view(
    session: AsyncSession, so: Any, *, timeline: bool = True
) -> dict[str, Any]:
    rows = (
        await session.execute(
            select(charges)
            .where(charges.c.sales_order_id == so.id)
            .order_by(charges.c.created_at, charges.c.id)
        )
    ).all()
    view = {
        "id": so.id,
        "status": so.status,
        "owner": so.owner,
        "organization": so.organization,
        "ship_to": so.ship_to,
        "charges": await charges_view(session, list(rows)),
        "can_fulfill": so.can_fulfill,
    }
    if timeline:
        where = history.c.sales_order_id == so.id
        view["timeline"] = await _lines(session, where, with_charge=True)
    return view


async def one_sales_order(session: AsyncSession, so_id: str) -> dict[str, Any] | None:
    so = (await session.execute(select(sales_orders).where(sales_orders.c.id == so_id))).first()
    return None if so is None else await sales_order_view(session, so)
