"""The catalog over HTTP: products, vendors and locations. Every create or change is
published to its compacted topic (`catalog.*`), so other services keep replicas."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Address, Amount, Id, Location, Product, Vendor
from procure_inventory.models import locations, products, vendors
from procure_inventory.stock import new_id
from procure_runtime import Conflict, NotFound, UnitOfWork, UnknownReference
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import CLIENT_ID_DOC, ClientId
from procure_runtime.http import Page

PRODUCTS = spec_for_topic("catalog.products")
VENDORS = spec_for_topic("catalog.vendors")
LOCATIONS = spec_for_topic("catalog.locations")

router = APIRouter(tags=["catalog"])
Reader = Annotated[Principal, Depends(authenticated)]
Keeper = Annotated[Principal, Depends(require("inventory"))]
Text = Annotated[str, Field(min_length=1, max_length=300)]


class VendorIn(BaseModel):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("vendor"))
    name: Text
    email: Text


class LocationIn(BaseModel):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("location"))
    name: Text
    address: Address


class ProductIn(BaseModel):
    id: ClientId | None = Field(None, description=CLIENT_ID_DOC.format("product"))
    sku: Annotated[str, Field(min_length=1, max_length=200)]
    name: Text
    is_inventory: bool
    subject_to_procurement: bool
    serialized: bool = False
    unit_cost: Amount
    unit_price: Amount
    vendor_id: Id | None = None


# --- reading ------------------------------------------------------------------------------


async def vendor(session: AsyncSession, vendor_id: str, *, share: bool = False) -> Vendor | None:
    """With `share`, the row is locked against change (FOR SHARE) until the transaction
    ends: a product saved with it embeds the vendor as it will stay."""
    query = select(vendors).where(vendors.c.id == vendor_id)
    row = (await session.execute(query.with_for_update(read=True) if share else query)).first()
    return Vendor(id=row.id, name=row.name, email=row.email) if row else None


async def location(session: AsyncSession, location_id: str) -> Location | None:
    row = (await session.execute(select(locations).where(locations.c.id == location_id))).first()
    return Location(id=row.id, name=row.name, address=row.address) if row else None


async def product(session: AsyncSession, product_id: str) -> Product | None:
    row = (await session.execute(select(products).where(products.c.id == product_id))).first()
    return await _product(session, row) if row else None


async def _product(session: AsyncSession, row: Any) -> Product:
    return Product(
        id=row.id,
        sku=row.sku,
        name=row.name,
        is_inventory=row.is_inventory,
        subject_to_procurement=row.subject_to_procurement,
        serialized=row.serialized,
        unit_cost=row.unit_cost,
        unit_price=row.unit_price,
        vendor=await vendor(session, row.vendor_id) if row.vendor_id else None,
    )


async def _page(request: Request, table: Table, page: Page, view: Any) -> dict[str, Any]:
    query = select(table).order_by(table.c.id).limit(page.limit + 1)
    if page.after is not None:
        query = query.where(table.c.id > page.after)
    async with request.app.state.runtime.db.session() as session:
        rows = (await session.execute(query)).all()
        items = [(await view(session, r.id)).model_dump(mode="json") for r in rows]
    return page.answer(items, lambda item: item["id"])


async def _one(request: Request, read: Any, id_: str, what: str) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        found = await read(session, id_)
    if found is None:
        raise NotFound(f"{what} {id_!r} does not exist")
    return found.model_dump(mode="json")


@router.get("/vendors")
async def list_vendors(request: Request, _u: Reader, page: Page = Depends()) -> dict[str, Any]:
    return await _page(request, vendors, page, vendor)


@router.get("/vendors/{vendor_id:id}")
async def get_vendor(vendor_id: str, request: Request, _u: Reader) -> dict[str, Any]:
    return await _one(request, vendor, vendor_id, "vendor")


@router.get("/locations")
async def list_locations(request: Request, _u: Reader, page: Page = Depends()) -> dict[str, Any]:
    return await _page(request, locations, page, location)


@router.get("/locations/{location_id:id}")
async def get_location(location_id: str, request: Request, _u: Reader) -> dict[str, Any]:
    return await _one(request, location, location_id, "location")


@router.get("/products")
async def list_products(request: Request, _u: Reader, page: Page = Depends()) -> dict[str, Any]:
    return await _page(request, products, page, product)


@router.get("/products/{product_id:id}")
async def get_product(product_id: str, request: Request, _u: Reader) -> dict[str, Any]:
    return await _one(request, product, product_id, "product")


# --- writing: each change is published (latest version per key on the compacted topic) ----


async def _save(uow: UnitOfWork, table: Table, id_: str, values: dict[str, Any], new: bool) -> None:
    exists = await uow.session.scalar(select(table.c.id).where(table.c.id == id_))
    if new and exists:
        raise Conflict(f"{table.name[:-1]} {id_!r} exists already")
    if not new and not exists:
        raise NotFound(f"{table.name[:-1]} {id_!r} does not exist")
    if new:
        await uow.session.execute(table.insert().values(id=id_, **values))
    else:
        await uow.session.execute(update(table).where(table.c.id == id_).values(**values))


async def _save_vendor(request: Request, id_: str, body: VendorIn, new: bool) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        await _save(uow, vendors, id_, {"name": body.name, "email": body.email}, new)
        saved = Vendor(id=id_, name=body.name, email=body.email)
        uow.emit(VENDORS, saved)
        # Products embed their vendor: republish them so replicas see the change too.
        for product_id in (
            await uow.session.scalars(select(products.c.id).where(products.c.vendor_id == id_))
        ).all():
            uow.emit(PRODUCTS, await product(uow.session, product_id))  # type: ignore[arg-type]
    return saved.model_dump(mode="json")


@router.post("/vendors", status_code=201)
async def create_vendor(body: VendorIn, request: Request, _u: Keeper) -> dict[str, Any]:
    return await _save_vendor(request, body.id or new_id(), body, new=True)


@router.put("/vendors/{vendor_id:id}")
async def change_vendor(vendor_id: str, body: VendorIn, request: Request, _u: Keeper) -> Any:
    return await _save_vendor(request, vendor_id, body, new=False)


async def _save_location(request: Request, id_: str, body: LocationIn, new: bool) -> Any:
    async with request.app.state.runtime.transaction() as uow:
        address = body.address.model_dump(mode="json")
        await _save(uow, locations, id_, {"name": body.name, "address": address}, new)
        saved = Location(id=id_, name=body.name, address=body.address)
        uow.emit(LOCATIONS, saved)
    return saved.model_dump(mode="json")


@router.post("/locations", status_code=201)
async def create_location(body: LocationIn, request: Request, _u: Keeper) -> dict[str, Any]:
    return await _save_location(request, body.id or new_id(), body, new=True)


@router.put("/locations/{location_id:id}")
async def change_location(location_id: str, body: LocationIn, request: Request, _u: Keeper) -> Any:
    return await _save_location(request, location_id, body, new=False)


async def _save_product(request: Request, id_: str, body: ProductIn, new: bool) -> Any:
    async with request.app.state.runtime.transaction() as uow:
        # Shared lock: a vendor change committing meanwhile would republish the products
        # it found, without this one, which would keep the vendor as it was read here.
        if body.vendor_id and await vendor(uow.session, body.vendor_id, share=True) is None:
            raise UnknownReference(f"vendor {body.vendor_id!r} does not exist")
        same_sku = await uow.session.scalar(
            select(products.c.id).where(products.c.sku == body.sku, products.c.id != id_)
        )
        if same_sku:
            raise Conflict(f"SKU {body.sku!r} belongs to product {same_sku!r}")
        values = body.model_dump(exclude={"id"})
        await _save(uow, products, id_, values, new)
        saved = await product(uow.session, id_)
        assert saved is not None
        uow.emit(PRODUCTS, saved)
    return saved.model_dump(mode="json")


@router.post("/products", status_code=201)
async def create_product(body: ProductIn, request: Request, _u: Keeper) -> dict[str, Any]:
    return await _save_product(request, body.id or new_id(), body, new=True)


@router.put("/products/{product_id:id}")
async def change_product(product_id: str, body: ProductIn, request: Request, _u: Keeper) -> Any:
    """A full replacement of the product (`id` in the body is ignored)."""
    return await _save_product(request, product_id, body, new=False)
