"""Purchasing's HTTP routes for purchase orders (R8, R9): create from queue items, edit
lines while New, cancel, submit, and read them."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from procure_contracts.shapes import Id, Quantity
from procure_contracts.status import POStatus
from procure_purchasing import orders
from procure_purchasing.models import po_lines, purchase_orders
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import CLIENT_ID_DOC, ClientId
from procure_runtime.http import Page

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]
Orderer = Annotated[Principal, Depends(require("purchasing.order"))]


class ShipToIn(BaseModel):
    kind: Literal["location", "organization"]
    location_id: Id | None = None

    @model_validator(mode="after")
    def _location_named(self) -> "ShipToIn":
        if self.kind == "location" and not self.location_id:
            raise ValueError("a PO shipped to a location needs `location_id`")
        return self


class ItemIn(BaseModel):
    item_id: Id
    quantity: Quantity | None = None


class StockLineIn(BaseModel):
    product_id: Id
    quantity: Quantity


class POIn(BaseModel):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("PO"))
    vendor_id: Id
    ship_to: ShipToIn
    items: list[ItemIn] = Field(default_factory=list, max_length=1000)
    stock_lines: list[StockLineIn] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _not_empty(self) -> "POIn":
        if not self.items and not self.stock_lines:
            raise ValueError("a PO needs at least one queue item or stock line")
        return self


class LineIn(BaseModel):
    """A queue item's units (`item_id`, `quantity` optional) or a stock line
    (`product_id`, `quantity`)."""

    item_id: Id | None = None
    product_id: Id | None = None
    quantity: Quantity | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "LineIn":
        if (self.item_id is None) == (self.product_id is None):
            raise ValueError("give either `item_id` or `product_id`")
        if self.product_id is not None and self.quantity is None:
            raise ValueError("a stock line needs `quantity`")
        return self


async def _view(request: Request, po_id: str) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        return await orders.view(session, po_id)


@router.post("/purchase-orders", status_code=201)
async def create(body: POIn, request: Request, user: Orderer) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        po_id = await orders.create(
            uow,
            body.vendor_id,
            body.ship_to.kind,
            body.ship_to.location_id,
            [orders.Take(i.item_id, i.quantity) for i in body.items],
            [(s.product_id, s.quantity) for s in body.stock_lines],
            user.person,
            body.id,
        )
    return await _view(request, po_id)


@router.get("/purchase-orders")
async def list_pos(
    request: Request,
    _user: Reader,
    page: Annotated[Page, Depends()],
    status: POStatus | None = None,
) -> dict[str, Any]:
    query = select(purchase_orders).order_by(purchase_orders.c.number)
    if status:
        query = query.where(purchase_orders.c.status == status)
    if page.after:
        query = query.where(purchase_orders.c.number > page.after)
    async with request.app.state.runtime.db.session() as session:
        pos = (await session.execute(query.limit(page.limit + 1))).all()
        ids = [po.id for po in pos]
        lines = (
            await session.execute(
                select(po_lines).where(po_lines.c.po_id.in_(ids)).order_by(po_lines.c.position)
            )
        ).all()
    views = [orders.po_view(po, [ln for ln in lines if ln.po_id == po.id]) for po in pos]
    return page.answer(views, lambda v: v["number"])


@router.get("/purchase-orders/{po_id:id}")
async def get_po(po_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    return await _view(request, po_id)


@router.post("/purchase-orders/{po_id:id}/lines", status_code=201)
async def add_line(po_id: str, body: LineIn, request: Request, _user: Orderer) -> dict[str, Any]:
    take = orders.Take(body.item_id, body.quantity) if body.item_id else None
    stock = (body.product_id, body.quantity) if body.product_id and body.quantity else None
    async with request.app.state.runtime.transaction() as uow:
        await orders.add_to(uow, po_id, take, stock)
    return await _view(request, po_id)


@router.delete("/purchase-orders/{po_id:id}/lines/{line_id:id}")
async def remove_line(po_id: str, line_id: str, request: Request, _user: Orderer) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        await orders.remove_line(uow, po_id, line_id)
    return await _view(request, po_id)


@router.post("/purchase-orders/{po_id:id}/submit")
async def submit(po_id: str, request: Request, user: Orderer) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        await orders.submit(uow, po_id, user.person)
    return await _view(request, po_id)


@router.post("/purchase-orders/{po_id:id}/cancel")
async def cancel(po_id: str, request: Request, _user: Orderer) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        await orders.cancel(uow, po_id)
    return await _view(request, po_id)
