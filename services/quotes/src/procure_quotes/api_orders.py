"""Quotes' HTTP routes (thin): sales orders (R16) and Approve & Post (R17)."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select, update

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.status import SalesOrderStatus
from procure_quotes import ledger, views
from procure_quotes.api import Body, Reader, Sales, _runtime
from procure_quotes.models import charges, sales_orders
from procure_runtime import Conflict, NotFound
from procure_runtime.auth import Principal, require
from procure_runtime.http import Page

router = APIRouter()
Billing = Annotated[Principal, Depends(require("billing"))]

# --- sales orders -----------------------------------------------------------------------


@router.get("/sales-orders")
async def list_sales_orders(
    request: Request,
    _user: Reader,
    page: Annotated[Page, Depends()],
    status: Annotated[SalesOrderStatus | None, Query()] = None,
) -> dict[str, Any]:
    query = select(sales_orders).order_by(sales_orders.c.id).limit(page.limit + 1)
    if status:
        query = query.where(sales_orders.c.status == status)
    if page.after:
        query = query.where(sales_orders.c.id > page.after)
    async with _runtime(request).db.session() as session:
        rows = (await session.execute(query)).all()
        items = [
            await views.sales_order_view(session, so, timeline=False)
            for so in rows[: page.limit + 1]
        ]
    return page.answer(items, key=lambda so: so["id"])


@router.get("/sales-orders/{so_id:id}")
async def get_sales_order(so_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    async with _runtime(request).db.session() as session:
        view = await views.one_sales_order(session, so_id)
    if view is None:
        raise NotFound(f"sales order {so_id!r} does not exist")
    return view


class SalesOrderPatch(Body):
    status: Literal["Fulfilled", "Canceled"]


async def _set_status(
    request: Request, so_id: str, status: SalesOrderStatus, user: Principal
) -> dict[str, Any]:
    """Fulfilled and Canceled are set only by a person, at any time (R16); the system
    never sets Fulfilled."""
    async with _runtime(request).transaction() as uow:
        so = (
            await uow.session.execute(
                select(sales_orders).where(sales_orders.c.id == so_id).with_for_update()
            )
        ).first()
        if so is None:
            raise NotFound(f"sales order {so_id!r} does not exist")
        if so.status == status:
            raise Conflict(f"sales order {so_id!r} is {status} already")
        await uow.session.execute(
            update(sales_orders).where(sales_orders.c.id == so_id).values(status=status)
        )
        event = None
        if status == SalesOrderStatus.FULFILLED:
            event = uow.emit(
                spec_for_topic("salesorder.fulfilled"),
                ev.SalesOrderFulfilledV1(sales_order_id=so_id, fulfilled_by=user.person),
                correlationid=so_id,
            )
        summary = f"set {status} by {user.name}"
        ledger.record(uow, None, event or _manual(status), summary, sales_order_id=so_id)
    async with _runtime(request).db.session() as session:
        return await views.one_sales_order(session, so_id)  # type: ignore[return-value]


@router.post("/sales-orders/{so_id:id}/fulfill")
async def fulfill(so_id: str, request: Request, user: Sales) -> dict[str, Any]:
    return await _set_status(request, so_id, SalesOrderStatus.FULFILLED, user)


@router.patch("/sales-orders/{so_id:id}")
async def patch_sales_order(
    so_id: str, body: SalesOrderPatch, request: Request, user: Sales
) -> dict[str, Any]:
    return await _set_status(request, so_id, SalesOrderStatus(body.status), user)


# --- Approve & Post (R17) ------------------------------------------------------------------


async def _charge_list(request: Request, page: Page, *conditions: Any) -> dict[str, Any]:
    query = select(charges).where(*conditions).order_by(charges.c.id).limit(page.limit + 1)
    if page.after:
        query = query.where(charges.c.id > page.after)
    async with _runtime(request).db.session() as session:
        rows = (await session.execute(query)).all()
        items = await views.charges_view(session, list(rows))
    return page.answer(items, key=lambda c: c["id"])


@router.get("/billing/approve-post")
async def approve_post(
    request: Request, _user: Reader, page: Annotated[Page, Depends()]
) -> dict[str, Any]:
    return await _charge_list(request, page, charges.c.posted.is_(False))


@router.get("/billing/posted")
async def posted(
    request: Request,
    _user: Reader,
    page: Annotated[Page, Depends()],
    delivery_canceled_after_post: bool | None = None,
) -> dict[str, Any]:
    conditions = [charges.c.posted.is_(True)]
    if delivery_canceled_after_post is not None:
        conditions.append(charges.c.delivery_canceled_after_post.is_(delivery_canceled_after_post))
    return await _charge_list(request, page, *conditions)


@router.post("/charges/{charge_id:id}/post")
async def post_charge(charge_id: str, request: Request, user: Billing) -> dict[str, Any]:
    """Posting is allowed whatever the unit statuses; twice is a conflict."""
    async with _runtime(request).transaction() as uow:
        row = (
            await uow.session.execute(
                select(charges).where(charges.c.id == charge_id).with_for_update()
            )
        ).first()
        if row is None:
            raise NotFound(f"charge {charge_id!r} does not exist")
        if row.posted:
            raise Conflict(f"charge {charge_id!r} is posted already")
        await uow.session.execute(
            update(charges)
            .where(charges.c.id == charge_id)
            .values(
                posted=True,
                posted_at=datetime.now(UTC),
                posted_by=user.person,
            )
        )
        amount = (row.unit_price * row.quantity).quantize(Decimal("0.01"))
        posted_event = uow.emit(
            spec_for_topic("charge.posted"),
            ev.ChargePostedV1(charge_id=charge_id, posted_by=user.person, amount=amount),
            correlationid=row.sales_order_id or charge_id,
        )
        ledger.record(uow, row, posted_event, f"posted ({amount}) by {user.name}")
    async with _runtime(request).db.session() as session:
        return await views.one_charge(session, charge_id)  # type: ignore[return-value]


def _manual(status: SalesOrderStatus) -> CloudEvent:
    """A status a person set that publishes no event (Canceled) still shows on the timeline."""
    return CloudEvent(id=str(uuid.uuid4()), source="/procure/quotes", type=f"sales order {status}")
