"""The stakeholder directory: charges and sales orders as `opportunity.won` and
`charge.created` describe them, read back as `ChargeInfo` for the domain."""

import functools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import events as ev
from procure_contracts.shapes import ChargeSpec
from procure_notifier.domain import ChargeInfo, Person, product_label
from procure_notifier.models import charges, sales_orders
from procure_runtime import UnitOfWork
from procure_runtime.db import among_param, dialect_of, insert_ignore, insert_many


async def record_won(uow: UnitOfWork, won: list[tuple[ev.OpportunityWonV1, str]]) -> None:
    """The sales orders and charges of won opportunities (with the event that told),
    in one statement per table: the first description of an id wins. A later event
    naming a sales order already recorded adds no charges to it, as quotes ignores such
    an event whole (an outside producer's retry under new charge ids): the owner's
    ready-to-fulfill mail lists the order's charges from here."""
    created = await insert_many(
        uow.session,
        sales_orders,
        [
            {
                "id": data.sales_order.id,
                "owner": data.sales_order.owner,
                "opportunity_id": data.opportunity.id,
                "opportunity_owner": data.opportunity.owner,
                "event_id": event_id,
            }
            for data, event_id in won
        ],
        sales_orders.c.event_id,
    )
    telling = {row.event_id for row in created}
    rows = [
        _charge_row(charge, data.sales_order.id, event_id, quoted=True)
        for data, event_id in won
        if event_id in telling
        for charge in data.charges
    ]
    if rows:
        await uow.session.execute(insert_ignore(charges, uow.dialect), rows)


async def record_charges(uow: UnitOfWork, made: list[tuple[ChargeSpec, str | None, str]]) -> None:
    """Charges made outside a won opportunity (charge, sales order id, event id), in one
    statement. Charges do not change in v1: the first description of a charge id wins."""
    await uow.session.execute(
        insert_ignore(charges, uow.dialect),
        [_charge_row(charge, so_id, event_id, quoted=False) for charge, so_id, event_id in made],
    )


def _charge_row(
    charge: ChargeSpec, sales_order_id: str | None, event_id: str, *, quoted: bool
) -> dict[str, Any]:
    return {
        "id": charge.id,
        "owner": charge.owner,
        "parent": charge.parent,
        "product": charge.product,
        "quantity": charge.quantity,
        "sales_order_id": sales_order_id,
        "quoted": quoted or charge.quote_item_id is not None,
        "event_id": event_id,
    }


def _person(doc: dict[str, Any] | None) -> Person | None:
    return Person(doc["id"], doc["name"], doc["email"]) if doc else None


async def charge_infos(session: AsyncSession, ids: Iterable[str]) -> dict[str, ChargeInfo]:
    """The known charges among `ids`, with their sales order's owners when known."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = _infos_by("id", dialect_of(session))
    return {c.id: c for c in await _run(session, query, {"ids": wanted})}


async def sales_order_charges(session: AsyncSession, so_id: str) -> list[ChargeInfo]:
    return await _run(session, _query(charges.c.sales_order_id == so_id))


async def sales_orders_charges(
    session: AsyncSession, so_ids: Iterable[str]
) -> dict[str, list[ChargeInfo]]:
    """`sales_order_charges` for many sales orders in one query."""
    out: dict[str, list[ChargeInfo]] = {}
    query = _infos_by("sales_order_id", dialect_of(session))
    for info in await _run(session, query, {"ids": sorted(set(so_ids))}):
        out.setdefault(str(info.sales_order_id), []).append(info)
    return out


async def known_sales_orders(session: AsyncSession, ids: Iterable[str]) -> set[str]:
    """Those of the sales orders the directory has."""
    query = _orders_by_id(dialect_of(session))
    return set(await session.scalars(query, {"ids": sorted(set(ids))}))


@functools.cache
def _orders_by_id(dialect: str) -> Select[Any]:
    return select(sales_orders.c.id).where(among_param(sales_orders.c.id, "ids", dialect))


def _query(where: Any) -> Select[Any]:
    return (
        select(
            charges,
            sales_orders.c.id.label("so_id"),
            sales_orders.c.owner.label("so_owner"),
            sales_orders.c.opportunity_owner,
        )
        .outerjoin(sales_orders, sales_orders.c.id == charges.c.sales_order_id)
        .where(where)
        .order_by(charges.c.id)
    )


@functools.cache
def _infos_by(column: str, dialect: str) -> Select[Any]:
    """The charges whose `column` is among the `:ids` list, built once per column and
    dialect: the per-event handlers run it every batch, and building it cost more CPU
    than running it (bench/levers.md, lever 40)."""
    return _query(among_param(charges.c[column], "ids", dialect))


async def _run(
    session: AsyncSession, query: Select[Any], params: dict[str, Any] | None = None
) -> list[ChargeInfo]:
    return [_info(row) for row in (await session.execute(query, params)).all()]


def _info(row: Any) -> ChargeInfo:
    parent, product = row.parent, row.product
    return ChargeInfo(
        id=row.id,
        owner=Person(row.owner["id"], row.owner["name"], row.owner["email"]),
        parent_kind=parent["kind"],
        parent_id=parent["id"],
        parent_name=parent["name"],
        product=product_label(product["name"], product["sku"]),
        quantity=row.quantity,
        sales_order_id=row.sales_order_id,
        primary_resource=_person(parent.get("primary_resource")),
        project_lead=_person(parent.get("project_lead")),
        opportunity_owner=_person(row.opportunity_owner) if row.quoted else None,
        sales_order_owner=_person(row.so_owner),
        order_known=row.sales_order_id is None or row.so_id is not None,
    )
