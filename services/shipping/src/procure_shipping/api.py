"""Shipping's HTTP routes: the Delivery & Shipping page's two tabs, Deliver/Ship (R13)
and cancel delivery (R15)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import events as ev
from procure_contracts.shapes import Address, Id, Quantity, Serial
from procure_runtime import Conflict, Invalid, NotFound, UnknownReference
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import CLIENT_ID_DOC, ClientId, id_for_new, update_many
from procure_runtime.http import SeqPage
from procure_shipping.domain import one_destination, take, without
from procure_shipping.handlers import SHIPMENT_CANCELED, SHIPMENT_DELIVERED
from procure_shipping.models import cancellations, delivered_items, deliveries, ready_items
from procure_shipping.store import (
    delivered_tab,
    lock_charges,
    new_id,
    next_seq,
    next_seqs,
    ready_tab,
    units,
)

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]
Shipper = Annotated[Principal, Depends(require("shipping"))]


class ItemIn(BaseModel):
    item_id: Id
    quantity: Quantity | None = None
    serials: list[Serial] | None = None


# At most as many items as a pick or packing list takes: the items are looked up in one
# statement, whose parameters a list of tens of thousands would overflow (a 503).
MAX_ITEMS = 1000


class DeliveryIn(BaseModel):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("delivery"))
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)


class CancelIn(BaseModel):
    items: list[ItemIn] | None = Field(default=None, min_length=1, max_length=MAX_ITEMS)
    reason: str | None = Field(default=None, max_length=2000)


@router.get("/delivery/ready")
async def ready(request: Request, _user: Reader, page: SeqPage = Depends()) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        rows = await ready_tab(session, page.after, page.limit)
    return _page(page, rows)


@router.get("/delivery/delivered")
async def delivered(request: Request, _user: Reader, page: SeqPage = Depends()) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        rows = await delivered_tab(session, page.after, page.limit)
    return _page(page, rows)


def _page(page: SeqPage, rows: list[Any]) -> dict[str, Any]:
    return page.answer(rows, key=lambda row: row[0], view=lambda row: row[1])


def _no_repeats(items: list[ItemIn]) -> None:
    ids = [i.item_id for i in items]
    if len(set(ids)) != len(ids):
        raise Invalid("an item appears more than once in this request")


@router.post("/deliveries", status_code=201)
async def deliver(body: DeliveryIn, request: Request, user: Shipper) -> dict[str, Any]:
    """R13: selected Ready items (any quantity up to what is ready) become delivered."""
    _no_repeats(body.items)
    ids = [i.item_id for i in body.items]
    async with request.app.state.runtime.transaction() as uow:
        s = uow.session
        delivery_id = await id_for_new(
            s, deliveries.c.id, body.id, lambda: new_id("dl"), "delivery"
        )
        found = await _rows(s, ready_items, ids)
        if missing := [i for i in ids if i not in found]:
            raise UnknownReference(f"no Ready item {', '.join(map(repr, missing))}")
        charge_rows = await lock_charges(s, {r.charge_id for r in found.values()})
        found = await _rows(s, ready_items, ids)  # again, now under the charges' locks
        plan = [
            (found[i.item_id], *take(units(found[i.item_id]), i.quantity, i.serials))
            for i in body.items
        ]
        destination = one_destination([charge_rows[r.charge_id].destination for r, _, _ in plan])
        await s.execute(
            deliveries.insert().values(
                id=delivery_id,
                drop_ship=False,
                destination=destination,
                delivered_by=user.person,
            )
        )
        seqs = await next_seqs(s, charge_rows, [row.charge_id for row, _, _ in plan])
        items = []
        for (row, quantity, serials), seq in zip(plan, seqs, strict=True):
            charge = charge_rows[row.charge_id]
            items.append(
                ev.DeliveredItem(
                    item_id=new_id("di"),
                    charge_id=row.charge_id,
                    seq=seq,
                    sales_order_id=charge.sales_order_id,
                    product_id=charge.product["id"],
                    quantity=quantity,
                    location_id=row.location_id,
                    serials=serials,
                    transfer_id=new_id("tr") if row.location_id else None,
                )
            )
        # Rows read under the charges' locks, each item named once: set, not add.
        await update_many(
            s,
            ready_items,
            "item_id",
            [
                {
                    "item_id": row.item_id,
                    "quantity": row.quantity - quantity,
                    "serials": without(row.serials, serials),
                }
                for row, quantity, serials in plan
            ],
        )
        await s.execute(
            delivered_items.insert(),
            [
                {
                    "item_id": item.item_id,
                    "delivery_id": delivery_id,
                    "charge_id": item.charge_id,
                    "location_id": item.location_id,
                    "ready_item_id": row.item_id,
                    "delivered": item.quantity,
                    "quantity": item.quantity,
                    "serials": item.serials,
                    "transfer_id": item.transfer_id,
                }
                for item, (row, _, _) in zip(items, plan, strict=True)
            ],
        )
        uow.emit(
            SHIPMENT_DELIVERED,
            ev.ShipmentDeliveredV1(
                delivery_id=delivery_id,
                drop_ship=False,
                destination=Address.model_validate(destination),
                delivered_by=user.person,
                items=items,
            ),
            correlationid=items[0].sales_order_id or items[0].charge_id,
        )
    return {
        "id": delivery_id,
        "destination": destination,
        "items": [
            item.model_dump(mode="json") | {"ready_item_id": row.item_id}
            for item, (row, _, _) in zip(items, plan, strict=True)
        ],
    }


@router.post("/deliveries/{delivery_id:id}/cancel")
async def cancel(
    delivery_id: str, request: Request, user: Shipper, body: CancelIn | None = None
) -> dict[str, Any]:
    """R15: delivered units go back to their Ready item; stock movements are reversed. No
    body cancels every unit still delivered, as `{}` does. An item id that is not an item
    of this delivery (whether it exists on another or not at all) is an unknown reference."""
    body = body or CancelIn()
    async with request.app.state.runtime.transaction() as uow:
        s = uow.session
        delivery = (
            await s.execute(select(deliveries).where(deliveries.c.id == delivery_id))
        ).first()
        if delivery is None:
            raise NotFound(f"delivery {delivery_id!r} does not exist")
        if delivery.drop_ship:
            raise Conflict(f"delivery {delivery_id!r} was drop-shipped: it cannot be canceled")
        in_delivery = select(delivered_items.c.item_id).where(
            delivered_items.c.delivery_id == delivery_id
        )
        ids = list((await s.scalars(in_delivery)).all())
        rows = await _rows(s, delivered_items, ids)
        charge_rows = await lock_charges(s, {r.charge_id for r in rows.values()})
        rows = await _rows(s, delivered_items, ids)  # again, now under the charges' locks
        wanted = body.items or [ItemIn(item_id=r.item_id) for r in rows.values() if r.quantity]
        if not wanted:
            raise Conflict(f"delivery {delivery_id!r} is canceled already")
        _no_repeats(wanted)
        if strangers := [i.item_id for i in wanted if i.item_id not in rows]:
            raise UnknownReference(
                f"no item {', '.join(map(repr, strangers))} on delivery {delivery_id!r}"
            )
        items = []
        for want in wanted:
            row = rows[want.item_id]
            quantity, serials = take(units(row), want.quantity, want.serials)
            await s.execute(
                update(delivered_items)
                .where(delivered_items.c.item_id == row.item_id)
                .values(
                    quantity=delivered_items.c.quantity - quantity,
                    serials=without(row.serials, serials),
                )
            )
            await _back_to_ready(s, row.ready_item_id, quantity, serials)
            items.append(
                ev.CanceledItem(
                    item_id=row.item_id,
                    charge_id=row.charge_id,
                    seq=await next_seq(s, row.charge_id),
                    product_id=charge_rows[row.charge_id].product["id"],
                    quantity=quantity,
                    location_id=row.location_id,
                    serials=serials,
                    transfer_id=new_id("tr") if row.location_id else None,
                    original_transfer_id=row.transfer_id,
                )
            )
        cancellation_id = new_id("cx")
        await s.execute(
            cancellations.insert().values(
                id=cancellation_id,
                delivery_id=delivery_id,
                reason=body.reason,
                canceled_by=user.person,
                items=items,
            )
        )
        first = charge_rows[items[0].charge_id]
        uow.emit(
            SHIPMENT_CANCELED,
            ev.ShipmentCanceledV1(
                delivery_id=delivery_id, reason=body.reason, canceled_by=user.person, items=items
            ),
            correlationid=first.sales_order_id or first.id,
        )
    return {
        "id": cancellation_id,
        "delivery_id": delivery_id,
        "items": [item.model_dump(mode="json") for item in items],
    }


async def _rows(s: AsyncSession, table: Any, ids: list[str]) -> dict[str, Row[Any]]:
    rows = (await s.execute(select(table).where(table.c.item_id.in_(ids)))).all()
    return {row.item_id: row for row in rows}


async def _back_to_ready(s: AsyncSession, item_id: str, quantity: int, serials: list[str]) -> None:
    held = await s.scalar(select(ready_items.c.serials).where(ready_items.c.item_id == item_id))
    await s.execute(
        update(ready_items)
        .where(ready_items.c.item_id == item_id)
        .values(quantity=ready_items.c.quantity + quantity, serials=[*(held or []), *serials])
    )
