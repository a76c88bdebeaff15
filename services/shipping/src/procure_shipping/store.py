"""Shipping's table access shared by handlers and routes: charge locks, the Ready tab's
items, per-charge `seq`, and the JSON views of both tabs."""

import functools
import uuid
from typing import Any

from sqlalchemy import JSON, BigInteger, Row, case, cast, func, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts.shapes import MAX_UNITS
from procure_runtime import Reject
from procure_runtime.db import (
    among,
    dialect_of,
    insert_rows,
    lock_order,
    update_many,
    upsert_insert,
)
from procure_shipping.domain import Units
from procure_shipping.models import charges, delivered_items, deliveries, ready_items


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


async def lock_charges(session: AsyncSession, ids: set[str]) -> dict[str, Row[Any]]:
    """Lock the charges (FOR UPDATE, in id order so two requests never deadlock): every
    change to a charge's items and its `seq` happens under that lock."""
    rows = (
        await session.execute(
            select(charges)
            .where(among(charges.c.id, ids, dialect_of(session)))
            .order_by(*lock_order(dialect_of(session), charges.c.id))
            .with_for_update()
        )
    ).all()
    return {row.id: row for row in rows}


async def next_seq(session: AsyncSession, charge_id: str) -> int:
    """The charge's next `seq` (R13); the caller holds the charge's lock."""
    seq = (
        await session.execute(select(charges.c.next_seq).where(charges.c.id == charge_id))
    ).scalar_one()
    await session.execute(
        update(charges).where(charges.c.id == charge_id).values(next_seq=charges.c.next_seq + 1)
    )
    return int(seq)


async def next_seqs(
    session: AsyncSession, locked: dict[str, Row[Any]], charge_ids: list[str]
) -> list[int]:
    """`next_seq` for each of `charge_ids` in turn (a charge may come more than once),
    from the charge rows `locked` read under their locks; one UPDATE for all."""
    seq = {charge_id: int(locked[charge_id].next_seq) for charge_id in set(charge_ids)}
    out = []
    for charge_id in charge_ids:
        out.append(seq[charge_id])
        seq[charge_id] += 1
    await update_many(
        session, charges, "id", [{"id": c, "next_seq": n} for c, n in sorted(seq.items())]
    )
    return out


async def add_ready(
    session: AsyncSession,
    dialect: str,
    charge_id: str,
    location_id: str | None,
    quantity: int,
    serials: list[str],
) -> str:
    """Units join the charge's Ready item at that location (made once: a stable id)."""
    ids = await add_ready_many(session, dialect, [(charge_id, location_id, quantity, serials)])
    return ids[0]


Adding = tuple[str, str | None, int, list[str]]  # charge id, location id, units, serials


async def add_ready_many(session: AsyncSession, dialect: str, adding: list[Adding]) -> list[str]:
    """`add_ready` for many (a receipt's lines) in one statement; the caller holds the
    charges' locks. The Ready item id of each, in order."""
    added: dict[tuple[str, str], tuple[str | None, int, list[str]]] = {}
    for charge_id, location_id, quantity, serials in adding:
        key = (charge_id, location_id or "")
        _, before, numbers = added.get(key, (location_id, 0, []))
        if before + quantity > MAX_UNITS:
            raise _too_many(charge_id)
        added[key] = (location_id, before + quantity, [*numbers, *serials])
    # One row per (charge, location), so no row is upserted twice in one statement.
    rows = await insert_rows(
        session,
        _join_ready(dialect),
        [
            {
                "item_id": new_id("ri"),
                "charge_id": charge_id,
                "location_key": location_key,
                "location_id": location_id,
                "quantity": quantity,
                "serials": serials,
            }
            for (charge_id, location_key), (location_id, quantity, serials) in added.items()
        ],
    )
    ids = {(row.charge_id, row.location_key): str(row.item_id) for row in rows}
    if missing := [c for c, loc in added if (c, loc) not in ids]:
        raise _too_many(missing[0])  # its item already held too many to take these
    return [ids[(c, loc or "")] for c, loc, _, _ in adding]


def _too_many(charge_id: str) -> Reject:
    """More units than any charge has (a quantity is at most `MAX_UNITS`) ready at one
    place: events no flow makes. Refused on every database alike; PostgreSQL's integer
    refused it (dead-lettered) where SQLite stored it."""
    return Reject(f"charge {charge_id!r} would have over {MAX_UNITS} units ready at one place")


@functools.cache
def _join_ready(dialect: str) -> Any:
    """Units join their (charge, location)'s Ready item, made on first use: one upsert
    whose RETURNING gives every item's id, the existing one where it was there. It used
    to be an insert-if-missing, a read of the charges' items and an update of each; the
    read, by `charge_id` (not unique on its own), was a sequential scan on PostgreSQL
    while the table's cached plan still took it for empty (bench/levers.md, lever 29)."""
    table = ready_items
    stmt = upsert_insert(table, dialect)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.charge_id, table.c.location_key],
        set_={
            "quantity": table.c.quantity + stmt.excluded.quantity,
            "serials": _json_array_concat(table.c.serials, stmt.excluded.serials, dialect),
        },
        # An item that would pass the bound is left as it is and not returned. The sum
        # is taken in 8 bytes: in the column's own 4, PostgreSQL overflows before deciding.
        where=cast(table.c.quantity, BigInteger) + stmt.excluded.quantity <= MAX_UNITS,
    )
    return stmt.returning(table.c.item_id, table.c.charge_id, table.c.location_key)


def _json_array_concat(held: Any, more: Any, dialect: str) -> Any:
    """The JSON array `held` followed by the elements of `more`, in order."""
    if dialect == "postgresql":
        return cast(cast(held, JSONB).op("||")(cast(more, JSONB)), JSON)
    # SQLite has no array concatenation: splice the minified texts (`json()` minifies).
    return case(
        (func.json_array_length(more) == 0, held),
        (func.json_array_length(held) == 0, more),
        else_=func.json(
            func.substr(func.json(held), 1, func.length(func.json(held)) - 1)
            .op("||")(",")
            .op("||")(func.substr(func.json(more), 2))
        ),
    )


def units(row: Row[Any]) -> Units:
    return Units(row.item_id, row.charge_id, row.location_id, row.quantity, list(row.serials))


def item_view(row: Row[Any], charge: Row[Any], **extra: Any) -> dict[str, Any]:
    return {
        "item_id": row.item_id,
        "charge_id": row.charge_id,
        "sales_order_id": charge.sales_order_id,
        "product": charge.product,
        "quantity": row.quantity,
        "location_id": row.location_id,
        "destination": charge.destination,
        "serials": row.serials,
        **extra,
    }


async def ready_tab(session: AsyncSession, after: int | None, limit: int) -> list[Any]:
    query = (
        select(ready_items, charges)
        .join(charges, charges.c.id == ready_items.c.charge_id)
        .where(ready_items.c.quantity > 0)
        .order_by(ready_items.c.n)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(ready_items.c.n > after)
    return [(row.n, item_view(row, row)) for row in (await session.execute(query)).all()]


async def delivered_tab(session: AsyncSession, after: int | None, limit: int) -> list[Any]:
    query = (
        select(
            delivered_items,
            charges.c.sales_order_id,
            charges.c.product,
            charges.c.destination,
            deliveries.c.drop_ship,
            deliveries.c.delivered_at,
        )
        .join(charges, charges.c.id == delivered_items.c.charge_id)
        .join(deliveries, deliveries.c.id == delivered_items.c.delivery_id)
        .where(delivered_items.c.quantity > 0)
        .order_by(delivered_items.c.n)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(delivered_items.c.n > after)
    return [(row.n, delivered_view(row)) for row in (await session.execute(query)).all()]


def delivered_view(row: Row[Any]) -> dict[str, Any]:
    return item_view(
        row,
        row,
        delivery_id=row.delivery_id,
        transfer_id=row.transfer_id,
        drop_ship=row.drop_ship,
        delivered_at=row.delivered_at.isoformat(),
    )
