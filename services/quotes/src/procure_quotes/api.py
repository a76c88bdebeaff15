"""Quotes' HTTP routes (thin): sales orders and charges as stored so far."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from procure_contracts.status import SalesOrderStatus
from procure_runtime import NotFound
from procure_runtime.auth import Principal, authenticated, require
from pydantic import BaseModel
from sqlalchemy import select, update

from procure_quotes.models import charges, sales_orders

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]
Sales = Annotated[Principal, Depends(require("sales"))]


def _charge_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "sales_order_id": row.sales_order_id,
        "parent": row.parent,
        "owner": row.owner,
        "product": row.product,
        "quantity": row.quantity,
        "unit_price": str(row.unit_price),
        "routed": {
            "ready": row.routed_ready,
            "awaiting_pick": row.routed_awaiting_pick,
            "to_procurement": row.routed_to_procurement,
        },
    }


async def _sales_order(request: Request, so_id: str) -> dict[str, Any]:
    runtime = request.app.state.runtime
    async with runtime.db.session() as session:
        so = (await session.execute(select(sales_orders).where(sales_orders.c.id == so_id))).first()
        if so is None:
            raise NotFound(f"sales order {so_id!r} does not exist")
        rows = (
            await session.execute(
                select(charges)
                .where(charges.c.sales_order_id == so_id)
                .order_by(charges.c.created_at, charges.c.id)
            )
        ).all()
    return {
        "id": so.id,
        "status": so.status,
        "owner": so.owner,
        "organization": so.organization,
        "ship_to": so.ship_to,
        "charges": [_charge_view(r) for r in rows],
    }


@router.get("/sales-orders/{so_id}")
async def get_sales_order(so_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    return await _sales_order(request, so_id)


@router.get("/charges/{charge_id}")
async def get_charge(charge_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        row = (await session.execute(select(charges).where(charges.c.id == charge_id))).first()
    if row is None:
        raise NotFound(f"charge {charge_id!r} does not exist")
    return _charge_view(row)


class SalesOrderPatch(BaseModel):
    status: Literal["Fulfilled", "Canceled"]


async def _set_status(request: Request, so_id: str, status: SalesOrderStatus) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        done = await uow.session.execute(
            update(sales_orders).where(sales_orders.c.id == so_id).values(status=status)
        )
        if done.rowcount == 0:
            raise NotFound(f"sales order {so_id!r} does not exist")
    return await _sales_order(request, so_id)


@router.post("/sales-orders/{so_id}/fulfill")
async def fulfill(so_id: str, request: Request, _user: Sales) -> dict[str, Any]:
    """A person sets Fulfilled; the system never does (R16)."""
    return await _set_status(request, so_id, SalesOrderStatus.FULFILLED)


@router.patch("/sales-orders/{so_id}")
async def patch_sales_order(
    so_id: str, body: SalesOrderPatch, request: Request, _user: Sales
) -> dict[str, Any]:
    return await _set_status(request, so_id, SalesOrderStatus(body.status))
