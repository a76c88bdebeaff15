"""Purchasing's HTTP routes (thin): procurement settings, purchase approvals (R5) and
the Purchasing & Fulfillment queue with picks (R6, R7)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import and_, or_, select, update

from procure_contracts.shapes import Amount, Id, Quantity
from procure_contracts.status import ApprovalStatus
from procure_purchasing import approvals as approval_rules
from procure_purchasing import fulfillment, picks
from procure_purchasing.models import approvals, charges, procurement_settings
from procure_runtime import NotFound
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import insert_ignore, utcnow
from procure_runtime.http import TimePage

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]
Admin = Annotated[Principal, Depends(require("admin"))]
Approver = Annotated[Principal, Depends(require("purchasing.approve"))]
Orderer = Annotated[Principal, Depends(require("purchasing.order"))]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class SettingsIn(BaseModel):
    approval_threshold: Amount | None
    purchasing_team: list[Email] = Field(default_factory=list, max_length=200)


class ApproveIn(BaseModel):
    note: Note | None = None


class RejectIn(BaseModel):
    note: Note


class PickIn(BaseModel):
    location_id: Id
    quantity: Quantity


def _settings_view(settings: Any) -> dict[str, Any]:
    return settings.model_dump(mode="json")


@router.get("/settings")
async def get_settings(request: Request, _user: Reader) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        return _settings_view(await fulfillment.current_settings(session))


@router.put("/settings")
async def put_settings(body: SettingsIn, request: Request, user: Admin) -> dict[str, Any]:
    """The threshold in force when a `charge.need_order` is handled decides (R5)."""
    team = list(dict.fromkeys(body.purchasing_team))
    values = {
        "approval_threshold": body.approval_threshold,
        "purchasing_team": team,
        "updated_by": user.person,
        "updated_at": utcnow(),
    }
    async with request.app.state.runtime.transaction() as uow:
        table = procurement_settings
        await uow.session.execute(
            insert_ignore(table, uow.dialect).values(id=fulfillment.SETTINGS_KEY, **values)
        )
        await uow.session.execute(
            update(table).where(table.c.id == fulfillment.SETTINGS_KEY).values(**values)
        )
        settings = await fulfillment.current_settings(uow.session)
        uow.emit(fulfillment.SETTINGS, settings, correlationid=fulfillment.SETTINGS_KEY)
    return _settings_view(settings)


# --- approvals (R5) ------------------------------------------------------------------------


def _approval_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "charge_id": row.charge_id,
        "sales_order_id": row.sales_order_id,
        "product": row.product,
        "quantity": row.quantity,
        "extended_cost": str(row.extended_cost),
        "threshold": str(row.threshold),
        "status": row.status,
        "requested_at": row.requested_at.isoformat(),
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.isoformat() if row.decided_at else None,
        "note": row.note,
    }


@router.get("/approvals")
async def list_approvals(
    request: Request,
    _user: Reader,
    page: Annotated[TimePage, Depends()],
    status: ApprovalStatus | None = None,
    charge_id: str | None = None,
) -> dict[str, Any]:
    query = select(approvals).order_by(approvals.c.requested_at, approvals.c.id)
    if status:
        query = query.where(approvals.c.status == status)
    if charge_id:
        query = query.where(approvals.c.charge_id == charge_id)
    if page.after:
        at, last_id = page.after
        c = approvals.c
        query = query.where(or_(c.requested_at > at, and_(c.requested_at == at, c.id > last_id)))
    async with request.app.state.runtime.db.session() as session:
        rows = (await session.execute(query.limit(page.limit + 1))).all()
    return page.answer([_approval_view(r) for r in rows], lambda a: [a["requested_at"], a["id"]])


async def _decide(
    request: Request, approval_id: str, approved: bool, note: str | None, user: Principal
) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        await approval_rules.decide(uow, approval_id, approved, note, user.person)
    async with request.app.state.runtime.db.session() as session:
        row = (await session.execute(select(approvals).where(approvals.c.id == approval_id))).one()
    return _approval_view(row)


@router.post("/approvals/{approval_id:id}/approve")
async def approve(
    approval_id: str, request: Request, user: Approver, body: ApproveIn | None = None
) -> dict[str, Any]:
    return await _decide(request, approval_id, True, body.note if body else None, user)


@router.post("/approvals/{approval_id:id}/reject")
async def reject(
    approval_id: str, body: RejectIn, request: Request, user: Approver
) -> dict[str, Any]:
    return await _decide(request, approval_id, False, body.note, user)


# --- the Purchasing & Fulfillment queue (R6, R7) -------------------------------------------


@router.get("/fulfillment")
async def list_queue(
    request: Request,
    _user: Reader,
    page: Annotated[TimePage, Depends()],
    vendor_id: str | None = None,
    sales_order_id: str | None = None,
) -> dict[str, Any]:
    c = charges.c
    query = select(charges).where(c.queued > 0).order_by(c.first_sent_at, c.id)
    if vendor_id:
        query = query.where(c.vendor_id == vendor_id)
    if sales_order_id:
        query = query.where(c.sales_order_id == sales_order_id)
    if page.after:
        at, last_id = page.after
        query = query.where(or_(c.first_sent_at > at, and_(c.first_sent_at == at, c.id > last_id)))
    async with request.app.state.runtime.db.session() as session:
        rows = (await session.execute(query.limit(page.limit + 1))).all()
    items = [(fulfillment.item_view(r), r.first_sent_at.isoformat()) for r in rows]
    return page.answer(items, lambda i: [i[1], i[0]["item_id"]], view=lambda i: i[0])


@router.get("/fulfillment/{item_id:id}")
async def get_item(item_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        row = await fulfillment.charge(session, item_id)
    if row is None:
        raise NotFound(f"queue item {item_id!r} does not exist")
    return fulfillment.item_detail(row)


@router.post("/fulfillment/{item_id:id}/pick", status_code=202)
async def pick(item_id: str, body: PickIn, request: Request, user: Orderer) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        return await picks.request_pick(uow, item_id, body.location_id, body.quantity, user.person)
