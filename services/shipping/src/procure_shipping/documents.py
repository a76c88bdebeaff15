"""Pick lists and packing lists (R14) for items of either tab: one document per
destination, as JSON or as one printable HTML page (`Accept: text/html`)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts.shapes import Id
from procure_runtime import UnknownReference
from procure_runtime.auth import Principal, authenticated
from procure_runtime.replica import get as replica_get
from procure_shipping.domain import by_destination
from procure_shipping.models import charges, delivered_items, metadata, ready_items

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]  # they change nothing
templates = Environment(
    loader=PackageLoader("procure_shipping"),
    autoescape=select_autoescape(),
    undefined=StrictUndefined,
)


class ListIn(BaseModel):
    item_ids: list[Id] = Field(min_length=1, max_length=1000)


@router.post("/pick-lists", response_model=None)
async def pick_lists(body: ListIn, request: Request, _user: Reader) -> Any:
    return await _documents(request, body.item_ids, pick=True)


@router.post("/packing-lists", response_model=None)
async def packing_lists(body: ListIn, request: Request, _user: Reader) -> Any:
    return await _documents(request, body.item_ids, pick=False)


async def _documents(request: Request, item_ids: list[str], *, pick: bool) -> Response | dict:
    async with request.app.state.runtime.db.session() as session:
        lines = [await _line(session, item_id, pick) for item_id in dict.fromkeys(item_ids)]
    documents = by_destination(lines)
    if "text/html" not in request.headers.get("accept", ""):
        return {"documents": documents}
    title = "Pick list" if pick else "Packing list"
    page = templates.get_template("lists.html").render(title=title, pick=pick, documents=documents)
    return HTMLResponse(page)


async def _line(session: AsyncSession, item_id: str, pick: bool) -> dict[str, Any]:
    row = None
    for table in (ready_items, delivered_items):
        query = select(table, charges).join(charges, charges.c.id == table.c.charge_id)
        row = (await session.execute(query.where(table.c.item_id == item_id))).first()
        if row is not None:
            break
    if row is None:
        raise UnknownReference(f"no Ready or Delivered item {item_id!r}")
    line: dict[str, Any] = {
        "item_id": row.item_id,
        "product": row.product["name"],
        "product_id": row.product["id"],
        "sku": row.product["sku"],
        "quantity": row.quantity,
        "serials": row.serials,
        "sales_order_id": row.sales_order_id,
        "charge_id": row.charge_id,
        "destination": row.destination,
    }
    if pick:
        line["pick_location"] = await _location(session, row.location_id)
    return line


async def _location(session: AsyncSession, location_id: str | None) -> dict[str, Any] | None:
    if location_id is None:
        return None
    known = await replica_get(session, metadata, "locations", location_id)
    return {"id": location_id, "name": known["name"] if known else location_id}
