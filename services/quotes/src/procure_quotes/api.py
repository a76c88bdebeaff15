"""Quotes' HTTP routes (thin): opportunities and the Won Opportunity Wizard, direct
charges. Sales orders and billing are in `api_orders`."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import (
    Address,
    Amount,
    ChargeSpec,
    Id,
    Organization,
    Parent,
    Person,
    Product,
    Quantity,
    ReservationRef,
)
from procure_quotes import views
from procure_quotes.domain import check_extended
from procure_quotes.models import (
    charges,
    claimed_ids,
    metadata,
    opportunities,
    picked_reservations,
    quote_items,
    reservations,
    sales_orders,
)
from procure_runtime import Conflict, Invalid, NotFound, UnknownReference
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import (
    CLIENT_ID_DOC,
    ClientId,
    id_for_new,
    insert_many,
    rows_affected,
)
from procure_runtime.replica import get as replica_get

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]
Sales = Annotated[Principal, Depends(require("sales"))]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _new_id() -> str:
    return str(uuid.uuid4())


def _runtime(request: Request) -> Any:
    return request.app.state.runtime


async def _product(session: Any, product_id: str) -> Product:
    doc = await replica_get(session, metadata, "products", product_id)
    if doc is None:
        raise UnknownReference(
            f"product {product_id!r} is not known (yet): inventory publishes products"
        )
    return Product.model_validate(doc)


async def _claim(session: Any, noun: str, ids: list[str]) -> None:
    """Take `ids` (of `noun`: "sales order", "charge") in the transaction of the event
    that announces them. `id_for_new` sees only what the consumer has stored from such
    events: until then a second request naming an id would pass it and be accepted, its
    event ignored later. The claim's key refuses it now, with `id_for_new`'s 409; a
    racing twin's insert waits for the claiming transaction (PostgreSQL) or runs after
    it (SQLite's writers take turns), and finds the id taken."""
    rows = [{"kind": noun, "id": i} for i in ids]
    taken = {row.id for row in await insert_many(session, claimed_ids, rows, claimed_ids.c.id)}
    if clash := [i for i in ids if i not in taken]:
        raise Conflict(f"{noun} {clash[0]!r} exists already")


# --- opportunities --------------------------------------------------------------------


class OpportunityIn(Body):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("opportunity"))
    name: str = Field(min_length=1, max_length=500)  # the column is 500 wide
    owner: Person
    organization: Organization


class QuoteItemIn(Body):
    product_id: str = Field(min_length=1)
    quantity: Quantity
    unit_price: Amount | None = None


class WinSalesOrder(Body):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("sales order"))
    owner: Person | None = None
    ship_to: Address


class WinItem(Body):
    quote_item_id: str
    parent: Parent


class WinIn(Body):
    sales_order: WinSalesOrder
    items: list[WinItem] = Field(min_length=1)


async def _opportunity(session: Any, opp_id: str, *, lock: bool = False) -> Any:
    query = select(opportunities).where(opportunities.c.id == opp_id)
    row = (await session.execute(query.with_for_update() if lock else query)).first()
    if row is None:
        raise NotFound(f"opportunity {opp_id!r} does not exist")
    return row


async def _items(session: Any, opp_id: str) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(quote_items)
            .where(quote_items.c.opportunity_id == opp_id)
            .order_by(quote_items.c.created_at, quote_items.c.id)
        )
    ).all()
    held = sorted(  # by id, in code point order: the same listing on both databases
        (
            await session.execute(
                select(reservations).where(
                    reservations.c.opportunity_id == opp_id,
                    reservations.c.released.is_(False),
                    reservations.c.id.not_in(select(picked_reservations.c.id)),
                )
            )
        ).all(),
        key=lambda r: r.id,
    )
    return [
        {
            "id": r.id,
            "product": r.product,
            "quantity": r.quantity,
            "unit_price": str(r.unit_price),
            "reservations": [
                {"id": h.id, "location_id": h.location_id, "quantity": h.quantity}
                for h in held
                if h.quote_item_id == r.id
            ],
        }
        for r in rows
    ]


async def _opportunity_view(session: Any, row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "owner": row.owner,
        "organization": row.organization,
        "status": row.status,
        "items": await _items(session, row.id),
    }


@router.post("/opportunities", status_code=201)
async def create_opportunity(body: OpportunityIn, request: Request, _user: Sales) -> dict[str, Any]:
    async with _runtime(request).transaction() as uow:
        opp_id = await id_for_new(uow.session, opportunities.c.id, body.id, _new_id, "opportunity")
        await uow.session.execute(
            opportunities.insert().values(
                id=opp_id,
                name=body.name,
                owner=body.owner,
                organization=body.organization,
                status="Open",
            )
        )
        return await _opportunity_view(uow.session, await _opportunity(uow.session, opp_id))


@router.get("/opportunities/{opp_id:id}")
async def get_opportunity(opp_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    async with _runtime(request).db.session() as session:
        return await _opportunity_view(session, await _opportunity(session, opp_id))


def _must_be_open(opp: Any) -> None:
    if opp.status != "Open":
        raise Conflict(f"opportunity {opp.id!r} is {opp.status} already")


@router.post("/opportunities/{opp_id:id}/items", status_code=201)
async def add_quote_item(
    opp_id: str, body: QuoteItemIn, request: Request, _user: Sales
) -> dict[str, Any]:
    async with _runtime(request).transaction() as uow:
        opp = await _opportunity(uow.session, opp_id, lock=True)
        _must_be_open(opp)
        product = await _product(uow.session, body.product_id)
        unit_price = body.unit_price if body.unit_price is not None else product.unit_price
        check_extended(body.quantity, product.unit_cost, unit_price)
        item_id = _new_id()
        await uow.session.execute(
            quote_items.insert().values(
                id=item_id,
                opportunity_id=opp_id,
                product=product,
                quantity=body.quantity,
                unit_price=unit_price,
            )
        )
        return next(i for i in await _items(uow.session, opp_id) if i["id"] == item_id)


@router.delete("/opportunities/{opp_id:id}/items/{item_id:id}", status_code=204)
async def delete_quote_item(opp_id: str, item_id: str, request: Request, _user: Sales) -> Response:
    async with _runtime(request).transaction() as uow:
        _must_be_open(await _opportunity(uow.session, opp_id, lock=True))
        gone = await uow.session.execute(
            quote_items.delete().where(
                quote_items.c.id == item_id, quote_items.c.opportunity_id == opp_id
            )
        )
        if rows_affected(gone) == 0:
            raise NotFound(f"quote item {item_id!r} is not on opportunity {opp_id!r}")
    return Response(status_code=204)


@router.post("/opportunities/{opp_id:id}/win", status_code=202)
async def win(opp_id: str, body: WinIn, request: Request, user: Sales) -> dict[str, Any]:
    """The Won Opportunity Wizard: a charge per quote item under its parent, one sales
    order; `opportunity.won` carries each charge's active reservations (R2, R3)."""
    async with _runtime(request).transaction() as uow:
        opp = await _opportunity(uow.session, opp_id, lock=True)
        _must_be_open(opp)
        items = {i["id"]: i for i in await _items(uow.session, opp_id)}
        listed = [i.quote_item_id for i in body.items]
        unknown = sorted(set(listed) - set(items))
        if unknown:
            raise UnknownReference(f"quote items not on this opportunity: {', '.join(unknown)}")
        if len(set(listed)) != len(listed) or set(listed) != set(items):
            raise Invalid(
                "list every quote item of the opportunity exactly once, each with its parent"
            )
        owner = Person.model_validate(opp.owner)
        so_id = await id_for_new(
            uow.session, sales_orders.c.id, body.sales_order.id, _new_id, "sales order"
        )
        await _claim(uow.session, "sales order", [so_id])
        charge_specs = []
        for choice in body.items:
            item = items[choice.quote_item_id]
            held = sum(r["quantity"] for r in item["reservations"])
            if held > item["quantity"]:
                raise Conflict(
                    f"quote item {item['id']}: {held} units reserved but only {item['quantity']} quoted"
                )
            charge_specs.append(
                ChargeSpec(
                    id=_new_id(),
                    owner=user.person,
                    parent=choice.parent,
                    product=Product.model_validate(item["product"]),
                    quantity=item["quantity"],
                    unit_price=Decimal(item["unit_price"]),
                    quote_item_id=item["id"],
                    reservations=[ReservationRef.model_validate(r) for r in item["reservations"]],
                )
            )
        won = ev.OpportunityWonV1(
            opportunity=ev.OpportunityRef(id=opp.id, name=opp.name, owner=owner),
            organization=Organization.model_validate(opp.organization),
            sales_order=ev.SalesOrderRef(
                id=so_id, owner=body.sales_order.owner or owner, ship_to=body.sales_order.ship_to
            ),
            won_at=datetime.now(UTC),
            charges=charge_specs,
        )
        # The wizard's charge ids are answered at once: `POST /charges` must not reuse one.
        await _claim(uow.session, "charge", [c.id for c in charge_specs])
        await uow.session.execute(
            update(opportunities).where(opportunities.c.id == opp_id).values(status="Won")
        )
        uow.emit(spec_for_topic("opportunity.won"), won, correlationid=so_id)
    return {
        "opportunity_id": opp_id,
        "sales_order_id": so_id,
        "charge_ids": [c.id for c in charge_specs],
    }


@router.post("/opportunities/{opp_id:id}/lose", status_code=202)
async def lose(opp_id: str, request: Request, _user: Sales) -> dict[str, Any]:
    async with _runtime(request).transaction() as uow:
        _must_be_open(await _opportunity(uow.session, opp_id, lock=True))
        await uow.session.execute(
            update(opportunities).where(opportunities.c.id == opp_id).values(status="Lost")
        )
        uow.emit(
            spec_for_topic("opportunity.lost"),
            ev.OpportunityLostV1(opportunity_id=opp_id),
            correlationid=opp_id,
        )
    return {"opportunity_id": opp_id}


# --- direct charges -------------------------------------------------------------------


class ChargeIn(Body):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("charge"))
    parent: Parent
    owner: Person | None = None
    product_id: str = Field(min_length=1)
    quantity: Quantity
    unit_price: Amount | None = None
    organization: Organization
    ship_to: Address
    sales_order_id: Id | None = None


@router.post("/charges", status_code=202)
async def create_charge(body: ChargeIn, request: Request, user: Sales) -> dict[str, Any]:
    async with _runtime(request).transaction() as uow:
        product = await _product(uow.session, body.product_id)
        unit_price = body.unit_price if body.unit_price is not None else product.unit_price
        check_extended(body.quantity, product.unit_cost, unit_price)
        charge_id = await id_for_new(uow.session, charges.c.id, body.id, _new_id, "charge")
        await _claim(uow.session, "charge", [charge_id])
        so_id = body.sales_order_id
        if so_id and not await uow.session.scalar(
            select(sales_orders.c.id).where(sales_orders.c.id == so_id)
        ):
            raise UnknownReference(f"sales order {so_id!r} does not exist")
        created = ev.ChargeCreatedV1(
            charge=ChargeSpec(
                id=charge_id,
                owner=body.owner or user.person,
                parent=body.parent,
                product=product,
                quantity=body.quantity,
                unit_price=unit_price,
                ship_to=body.ship_to,
            ),
            organization=body.organization,
            ship_to=body.ship_to,
            sales_order_id=so_id,
        )
        uow.emit(spec_for_topic("charge.created"), created, correlationid=so_id or charge_id)
    return {"charge_id": charge_id}


@router.get("/charges/{charge_id:id}")
async def get_charge(charge_id: str, request: Request, _user: Reader) -> dict[str, Any]:
    async with _runtime(request).db.session() as session:
        view = await views.one_charge(session, charge_id)
    if view is None:
        raise NotFound(f"charge {charge_id!r} does not exist")
    return view
