"""The Purchasing & Fulfillment queue (R6): per-charge unit counters moved by atomic
UPDATEs, the settings in force, and `charge.forwarded` for units joining the queue."""

from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Product
from procure_purchasing.domain import extended_cost
from procure_purchasing.models import charges, procurement_settings
from procure_runtime import UnitOfWork
from procure_runtime.db import among, dialect_of, lock_order, rows_affected, update_many

SETTINGS = spec_for_topic("settings.procurement")
CHARGE_FORWARDED = spec_for_topic("charge.forwarded")
SETTINGS_KEY = "procurement"


async def current_settings(session: AsyncSession) -> ev.ProcurementSettingsV1:
    """The settings in force, read once per transaction (a consumer's batch applies many
    `charge.need_order` in one). Only `PUT /settings` changes them, in a transaction of
    its own, so a batch sees them as they were when it first read them."""
    cached = session.info.get("procurement_settings")
    if cached is None:
        cached = session.info["procurement_settings"] = await _read_settings(session)
    return cached


# Built once: a statement built for every batch cost as much CPU as running it.
_READ_SETTINGS = select(procurement_settings).where(procurement_settings.c.id == SETTINGS_KEY)


async def _read_settings(session: AsyncSession) -> ev.ProcurementSettingsV1:
    row = (await session.execute(_READ_SETTINGS)).first()
    if row is None:
        return ev.ProcurementSettingsV1()
    return ev.ProcurementSettingsV1(
        approval_threshold=row.approval_threshold, purchasing_team=row.purchasing_team
    )


async def move(session: AsyncSession, charge_id: str, src: str, dst: str, quantity: int) -> bool:
    """Move units of a charge from one counter to another; False when `src` holds fewer."""
    c = charges.c
    done = await session.execute(
        update(charges)
        .where(c.id == charge_id, c[src] >= quantity)
        .values({src: c[src] - quantity, dst: c[dst] + quantity})
    )
    return rows_affected(done) == 1


async def charge(session: AsyncSession, charge_id: str) -> Any:
    return (await session.execute(select(charges).where(charges.c.id == charge_id))).first()


async def charges_by_id(session: AsyncSession, charge_ids: list[str]) -> dict[str, Any]:
    rows = await session.execute(
        select(charges).where(among(charges.c.id, set(charge_ids), dialect_of(session)))
    )
    return {row.id: row for row in rows}


def correlation(row: Any) -> str:
    return row.sales_order_id or row.id


async def return_to_queue(uow: UnitOfWork, charge_id: str, src: str, quantity: int) -> bool:
    """Units coming back (PO canceled, line removed or closed, pick failed) merge into
    the charge's queue item and are announced again. False when `src` holds fewer."""
    if quantity <= 0:
        return True
    if not await move(uow.session, charge_id, src, "queued", quantity):
        return False
    row = await charge(uow.session, charge_id)
    emit_forwarded(uow, row, quantity, await current_settings(uow.session))
    return True


async def return_many_to_queue(uow: UnitOfWork, src: str, quantities: dict[str, int]) -> None:
    """`return_to_queue` for several charges (a PO canceled) in a fixed number of
    statements. Their rows are locked in id order, as every writer of charges takes its
    locks: in the PO's line order, two transactions could each hold a charge the other
    waits for (a deadlock on PostgreSQL). A charge whose `src` holds fewer is left as is."""
    wanted = {charge_id: n for charge_id, n in quantities.items() if n > 0}
    if not wanted:
        return
    rows = {
        row.id: row
        for row in await uow.session.execute(
            select(charges)
            .where(among(charges.c.id, sorted(wanted), uow.dialect))
            .order_by(*lock_order(uow.dialect, charges.c.id))
            .with_for_update()
        )
    }
    moves = {c: n for c, n in wanted.items() if c in rows and rows[c]._mapping[src] >= n}
    await update_many(
        uow.session,
        charges,
        "id",
        [{"id": c, src: -n, "queued": n} for c, n in sorted(moves.items())],
        add=True,
    )
    settings = await current_settings(uow.session)
    for charge_id, quantity in moves.items():
        emit_forwarded(uow, rows[charge_id], quantity, settings)


def emit_forwarded(
    uow: UnitOfWork, row: Any, quantity: int, settings: ev.ProcurementSettingsV1
) -> None:
    uow.emit(
        CHARGE_FORWARDED,
        ev.ChargeForwardedV1(
            charge_id=row.id,
            sales_order_id=row.sales_order_id,
            product=Product.model_validate(row.product),
            quantity=quantity,
            purchasing_team=settings.purchasing_team,
        ),
        correlationid=correlation(row),
    )


def item_view(row: Any) -> dict[str, Any]:
    """A queue item (R6): one per charge, `item_id` = the charge id."""
    unit_cost = Decimal(str(row.product["unit_cost"]))
    return {
        "item_id": row.id,
        "charge_id": row.id,
        "sales_order_id": row.sales_order_id,
        "product": row.product,
        "vendor": row.product.get("vendor"),
        "quantity": row.queued,
        "extended_cost": str(extended_cost(row.queued, unit_cost)),
        "organization": row.organization,
        "destination": row.destination,
    }


def item_detail(row: Any) -> dict[str, Any]:
    """A queue item with where all the charge's units sent to procurement are now."""
    return item_view(row) | {
        "units": {
            "sent": row.sent,
            "waiting_approval": row.waiting,
            "queued": row.queued,
            "on_po": row.ordered,
            "awaiting_pick": row.picking,
            "received_or_picked": row.done,
            "canceled": row.canceled,
        }
    }
