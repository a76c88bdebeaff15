"""Stock storage: atomic changes of on hand / reserved / picked, holds per charge,
serials and the movement records. Every counter changes with one conditional UPDATE
(safe with any number of instances); a False return means "refused, nothing changed"."""

import uuid
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_inventory.domain import Cause, SerialConflict, StockLevel
from procure_inventory.models import holds, movements, serials, stock
from procure_runtime.db import insert_ignore


def new_id() -> str:
    return str(uuid.uuid4())


async def level(session: AsyncSession, product_id: str, location_id: str) -> StockLevel:
    row = (
        await session.execute(
            select(stock.c.on_hand, stock.c.reserved, stock.c.picked).where(
                stock.c.product_id == product_id, stock.c.location_id == location_id
            )
        )
    ).first()
    return StockLevel(*row) if row else StockLevel()


async def ever_stocked(session: AsyncSession, product_id: str) -> bool:
    """A product received without being in the catalog still has stock rows (R11)."""
    query = select(stock.c.product_id).where(stock.c.product_id == product_id).limit(1)
    return bool(await session.scalar(query))


async def change(
    session: AsyncSession,
    product_id: str,
    location_id: str,
    *,
    on_hand: int = 0,
    reserved: int = 0,
    picked: int = 0,
) -> bool:
    """Apply the deltas only if reserved, picked and available all stay >= 0 (R1)."""
    if on_hand > 0:
        await _ensure(session, stock, product_id=product_id, location_id=location_id)
    new_on_hand = stock.c.on_hand + on_hand
    new_reserved = stock.c.reserved + reserved
    new_picked = stock.c.picked + picked
    done = await session.execute(
        update(stock)
        .where(
            stock.c.product_id == product_id,
            stock.c.location_id == location_id,
            new_reserved >= 0,
            new_picked >= 0,
            new_on_hand - new_reserved - new_picked >= 0,
        )
        .values(on_hand=new_on_hand, reserved=new_reserved, picked=new_picked)
    )
    return done.rowcount == 1


async def lock(session: AsyncSession, product_id: str, *location_ids: str) -> None:
    """Lock several stock rows in one order, so that two opposite transfers cannot deadlock."""
    for location_id in location_ids:
        await _ensure(session, stock, product_id=product_id, location_id=location_id)
    if session.bind.dialect.name == "postgresql":
        await session.execute(
            select(stock.c.location_id)
            .where(stock.c.product_id == product_id, stock.c.location_id.in_(location_ids))
            .order_by(stock.c.location_id)
            .with_for_update()
        )


async def hold(
    session: AsyncSession, charge_id: str, product_id: str, location_id: str, delta: int
) -> bool:
    """Change what is held for a charge at a location (never below zero)."""
    key = {"charge_id": charge_id, "product_id": product_id, "location_id": location_id}
    if delta > 0:
        await _ensure(session, holds, **key)
    done = await session.execute(
        update(holds)
        .where(*(holds.c[k] == v for k, v in key.items()), holds.c.quantity + delta >= 0)
        .values(quantity=holds.c.quantity + delta)
    )
    return done.rowcount == 1


async def _ensure(session: AsyncSession, table: Any, **key: str) -> None:
    dialect = session.bind.dialect.name
    await session.execute(insert_ignore(table, dialect).values(**key))


# --- serials --------------------------------------------------------------------------


async def add_serials(
    session: AsyncSession,
    product_id: str,
    location_id: str,
    numbers: list[str],
    charge_id: str | None = None,
    *,
    restore: bool = False,
) -> None:
    """Put serials into stock; they must not be there already unless `restore` (a canceled
    delivery brings back serials that may have been restored by a redelivery)."""
    if not numbers:
        return
    existing = (
        await session.scalars(
            select(serials.c.serial).where(
                serials.c.product_id == product_id, serials.c.serial.in_(numbers)
            )
        )
    ).all()
    if existing and not restore:
        raise SerialConflict(f"serials already in stock: {', '.join(sorted(existing))}")
    numbers = [s for s in numbers if s not in existing]
    if not numbers:
        return
    await session.execute(
        serials.insert(),
        [
            {
                "product_id": product_id,
                "serial": s,
                "location_id": location_id,
                "charge_id": charge_id,
            }
            for s in numbers
        ],
    )


async def move_serials(
    session: AsyncSession,
    product_id: str,
    numbers: list[str],
    *,
    at: str,
    held_for: str | None,
    to: str | None = None,
    charge_id: str | None = None,
) -> bool:
    """Move (or re-assign) exactly these serials, which must be at `at` and held for
    `held_for` (None: free); `to=None` takes them out of stock."""
    if not numbers:
        return True
    where = and_(
        serials.c.product_id == product_id,
        serials.c.serial.in_(numbers),
        serials.c.location_id == at,
        serials.c.charge_id.is_(None) if held_for is None else serials.c.charge_id == held_for,
    )
    if to is None:
        done = await session.execute(serials.delete().where(where))
    else:
        done = await session.execute(
            update(serials).where(where).values(location_id=to, charge_id=charge_id)
        )
    return done.rowcount == len(numbers)


async def take_serials(
    session: AsyncSession, product_id: str, location_id: str, count: int, charge_id: str | None
) -> list[str]:
    """Up to `count` serials at a location, held for `charge_id` (None: free ones), in
    serial order. Stock received without serials simply yields fewer."""
    held = serials.c.charge_id.is_(None) if charge_id is None else serials.c.charge_id == charge_id
    query = (
        select(serials.c.serial)
        .where(serials.c.product_id == product_id, serials.c.location_id == location_id, held)
        .order_by(serials.c.serial)
        .limit(count)
    )
    if session.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list((await session.scalars(query)).all())


async def pick_serials(
    session: AsyncSession, product_id: str, location_id: str, count: int, charge_id: str
) -> list[str]:
    """Hold `count` free serials (when the product has any) for a charge."""
    chosen = await take_serials(session, product_id, location_id, count, None)
    await move_serials(
        session,
        product_id,
        chosen,
        at=location_id,
        held_for=None,
        to=location_id,
        charge_id=charge_id,
    )
    return chosen


# --- movements --------------------------------------------------------------------------


async def record(
    session: AsyncSession,
    cause: Cause,
    product_id: str,
    quantity: int,
    *,
    transfer_id: str | None = None,
    from_location_id: str | None = None,
    to_location_id: str | None = None,
    charge_id: str | None = None,
    numbers: list[str] | None = None,
    reason: str | None = None,
    reference: str | None = None,
    moved_by: dict[str, Any] | None = None,
) -> str:
    transfer_id = transfer_id or new_id()
    await session.execute(
        movements.insert().values(
            id=transfer_id,
            cause=cause,
            product_id=product_id,
            charge_id=charge_id,
            from_location_id=from_location_id,
            to_location_id=to_location_id,
            quantity=quantity,
            serials=numbers or [],
            reason=reason,
            reference=reference,
            moved_by=moved_by,
        )
    )
    return transfer_id


async def movement_exists(session: AsyncSession, transfer_id: str) -> bool:
    return bool(await session.scalar(select(movements.c.seq).where(movements.c.id == transfer_id)))
