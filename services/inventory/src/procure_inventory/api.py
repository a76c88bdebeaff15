"""Inventory's stock routes: availability (R1), adjustments, reservations for quote items
(R2) and transfers between locations, with the audit trail of every movement."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts.shapes import MAX_UNITS, Id, Product, Quantity
from procure_inventory import catalog, stock
from procure_inventory.domain import (
    BelowCommitted,
    Cause,
    InsufficientStock,
    ReservationClosed,
    ReservationStatus,
    SerialConflict,
    StockLevel,
    check_adjustment,
    check_available,
    check_reservable,
    check_serials,
    check_transfer,
)
from procure_inventory.models import locations, movements, reservations
from procure_inventory.picking import (
    RESERVED,
    lock_open_opportunity,
    locked_reservation,
    release,
    reservation_event,
)
from procure_runtime import Invalid, NotFound, UnknownReference
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import CLIENT_ID_DOC, ClientId
from procure_runtime.http import Page, SeqPage

router = APIRouter(tags=["stock"])
Reader = Annotated[Principal, Depends(authenticated)]
Keeper = Annotated[Principal, Depends(require("inventory"))]
Sales = Annotated[Principal, Depends(require("sales"))]
Serials = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=10000)
]


class AdjustmentIn(BaseModel):
    product_id: Id
    location_id: Id
    quantity: Annotated[
        int,
        Field(ge=-MAX_UNITS, le=MAX_UNITS, description="Signed change of on hand; not zero"),
    ]
    serials: Serials = []
    reason: Annotated[str, Field(min_length=1, max_length=1000)]


class ReservationIn(BaseModel):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("reservation"))
    opportunity_id: Id
    quote_item_id: Id
    product_id: Id
    location_id: Id
    quantity: Quantity


class TransferIn(BaseModel):
    product_id: Id
    from_location_id: Id
    to_location_id: Id
    quantity: Quantity
    serials: Serials = []


def level_view(level: StockLevel) -> dict[str, int]:
    return {
        "on_hand": level.on_hand,
        "reserved": level.reserved,
        "picked": level.picked,
        "available": level.available,
    }


def movement_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "cause": row.cause,
        "product_id": row.product_id,
        "charge_id": row.charge_id,
        "from_location_id": row.from_location_id,
        "to_location_id": row.to_location_id,
        "quantity": row.quantity,
        "serials": row.serials,
        "reason": row.reason,
        "reference": row.reference,
        "moved_by": row.moved_by,
        "created_at": row.created_at.isoformat(),
    }


def reservation_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "opportunity_id": row.opportunity_id,
        "quote_item_id": row.quote_item_id,
        "product_id": row.product_id,
        "location_id": row.location_id,
        "quantity": row.quantity,
        "status": row.status,
        "charge_id": row.charge_id,
        "created_at": row.created_at.isoformat(),
    }


async def _known(session: AsyncSession, product_id: str, *location_ids: str) -> Product | None:
    """The catalog product (None for one only received into stock); 422 when unknown."""
    for location_id in location_ids:
        if await catalog.location(session, location_id) is None:
            raise UnknownReference(f"location {location_id!r} does not exist")
    found = await catalog.product(session, product_id)
    if found is None and not await stock.ever_stocked(session, product_id):
        raise UnknownReference(f"product {product_id!r} does not exist")
    return found


async def _movement(session: AsyncSession, transfer_id: str) -> dict[str, Any]:
    row = (await session.execute(select(movements).where(movements.c.id == transfer_id))).one()
    return movement_view(row)


# --- availability and adjustments (R1) ------------------------------------------------------


@router.get("/availability")
async def availability(
    request: Request, _u: Reader, product_id: Id = Query(), page: Page = Depends()
) -> dict[str, Any]:
    """Every known location, zeros included (the New Quote Item page)."""
    async with request.app.state.runtime.db.session() as session:
        await _known(session, product_id)
        query = select(locations.c.id, locations.c.name).order_by(locations.c.id)
        if page.after is not None:
            query = query.where(locations.c.id > page.after)
        rows = (await session.execute(query.limit(page.limit + 1))).all()
        items = [
            {
                "location_id": row.id,
                "location_name": row.name,
                **level_view(await stock.level(session, product_id, row.id)),
            }
            for row in rows
        ]
    return page.answer(items, lambda item: item["location_id"])


@router.post("/stock/adjustments", status_code=201)
async def adjust(body: AdjustmentIn, request: Request, user: Keeper) -> dict[str, Any]:
    if body.quantity == 0:
        raise Invalid("quantity must not be zero")
    async with request.app.state.runtime.transaction() as uow:
        session = uow.session
        product = await _known(session, body.product_id, body.location_id)
        check_serials(product.serialized if product else None, body.quantity, body.serials)
        if not await stock.change(
            session, body.product_id, body.location_id, on_hand=body.quantity
        ):
            check_adjustment(
                await stock.level(session, body.product_id, body.location_id), body.quantity
            )
            raise BelowCommitted("stock changed meanwhile; try again")
        if body.quantity > 0:
            await stock.add_serials(session, body.product_id, body.location_id, body.serials)
        elif not await stock.move_serials(
            session, body.product_id, body.serials, at=body.location_id, held_for=None
        ):
            raise SerialConflict("some serials are not free at this location")
        transfer_id = await stock.record(
            session,
            Cause.ADJUSTMENT,
            body.product_id,
            abs(body.quantity),
            to_location_id=body.location_id if body.quantity > 0 else None,
            from_location_id=body.location_id if body.quantity < 0 else None,
            numbers=body.serials,
            reason=body.reason,
            moved_by=user.person,
        )
        level = await stock.level(session, body.product_id, body.location_id)
        return {**await _movement(session, transfer_id), "stock": level_view(level)}


# --- reservations (R2) --------------------------------------------------------------------


@router.post("/reservations", status_code=201)
async def reserve(body: ReservationIn, request: Request, user: Sales) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        session = uow.session
        product = await catalog.product(session, body.product_id)
        if product is None:
            raise UnknownReference(f"product {body.product_id!r} does not exist")
        if await catalog.location(session, body.location_id) is None:
            raise UnknownReference(f"location {body.location_id!r} does not exist")
        check_reservable(product.is_inventory, product.subject_to_procurement)
        reservation_id = body.id or stock.new_id()
        if await session.scalar(
            select(reservations.c.id).where(reservations.c.id == reservation_id)
        ):
            raise ReservationClosed(f"reservation {reservation_id!r} exists already")
        await lock_open_opportunity(uow, body.opportunity_id)
        if not await stock.change(
            session, body.product_id, body.location_id, reserved=body.quantity
        ):
            level = await stock.level(session, body.product_id, body.location_id)
            check_available(level, body.quantity, "reserve")
            raise InsufficientStock("stock changed meanwhile; try again")
        await session.execute(
            reservations.insert().values(
                id=reservation_id,
                status=ReservationStatus.ACTIVE,
                reserved_by=user.person,
                **body.model_dump(exclude={"id"}),
            )
        )
        row = await locked_reservation(uow, reservation_id)
        uow.emit(RESERVED, reservation_event(row, row.quantity), correlationid=row.opportunity_id)
        return reservation_view(row)


@router.get("/reservations")
async def list_reservations(
    request: Request,
    _u: Reader,
    opportunity_id: str | None = None,
    quote_item_id: str | None = None,
    status: ReservationStatus | None = None,
    page: Page = Depends(),
) -> dict[str, Any]:
    query = select(reservations).order_by(reservations.c.id).limit(page.limit + 1)
    for column, value in (
        ("opportunity_id", opportunity_id),
        ("quote_item_id", quote_item_id),
        ("status", status),
    ):
        if value is not None:
            query = query.where(reservations.c[column] == value)
    if page.after is not None:
        query = query.where(reservations.c.id > page.after)
    async with request.app.state.runtime.db.session() as session:
        rows = (await session.execute(query)).all()
    return page.answer([reservation_view(r) for r in rows], lambda item: item["id"])


@router.get("/reservations/{reservation_id:id}")
async def get_reservation(reservation_id: str, request: Request, _u: Reader) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        query = select(reservations).where(reservations.c.id == reservation_id)
        row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"reservation {reservation_id!r} does not exist")
    return reservation_view(row)


@router.delete("/reservations/{reservation_id:id}")
async def delete_reservation(reservation_id: str, request: Request, _u: Sales) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        row = await locked_reservation(uow, reservation_id)
        if row is None:
            raise NotFound(f"reservation {reservation_id!r} does not exist")
        if row.status != ReservationStatus.ACTIVE:
            raise ReservationClosed(f"reservation {reservation_id!r} was {row.status} already")
        await release(uow, row, correlation=row.opportunity_id)
        return reservation_view(await locked_reservation(uow, reservation_id))


# --- transfers and the audit trail ---------------------------------------------------------


@router.post("/transfers", status_code=201)
async def transfer(body: TransferIn, request: Request, user: Keeper) -> dict[str, Any]:
    check_transfer(body.from_location_id, body.to_location_id)
    async with request.app.state.runtime.transaction() as uow:
        session = uow.session
        src, dst = body.from_location_id, body.to_location_id
        product = await _known(session, body.product_id, src, dst)
        check_serials(product.serialized if product else None, body.quantity, body.serials)
        await stock.lock(session, body.product_id, src, dst)
        if not await stock.change(session, body.product_id, src, on_hand=-body.quantity):
            check_available(await stock.level(session, body.product_id, src), body.quantity, "move")
            raise InsufficientStock("stock changed meanwhile; try again")
        await stock.change(session, body.product_id, dst, on_hand=body.quantity)
        if not await stock.move_serials(
            session, body.product_id, body.serials, at=src, held_for=None, to=dst
        ):
            raise SerialConflict("some serials are not free at the source location")
        transfer_id = await stock.record(
            session,
            Cause.TRANSFER,
            body.product_id,
            body.quantity,
            from_location_id=src,
            to_location_id=dst,
            numbers=body.serials,
            moved_by=user.person,
        )
        return await _movement(session, transfer_id)


@router.get("/transfers")
async def list_transfers(
    request: Request,
    _u: Reader,
    product_id: str | None = None,
    charge_id: str | None = None,
    page: SeqPage = Depends(),
) -> dict[str, Any]:
    """Every stock movement with its cause, oldest first."""
    query = select(movements).order_by(movements.c.seq).limit(page.limit + 1)
    if product_id is not None:
        query = query.where(movements.c.product_id == product_id)
    if charge_id is not None:
        query = query.where(movements.c.charge_id == charge_id)
    if page.after is not None:
        query = query.where(movements.c.seq > page.after)
    async with request.app.state.runtime.db.session() as session:
        rows = (await session.execute(query)).all()
    items = [(row.seq, movement_view(row)) for row in rows]
    return page.answer(items, lambda item: item[0], view=lambda item: item[1])
