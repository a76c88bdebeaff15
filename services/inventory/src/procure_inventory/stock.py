"""Stock storage: atomic changes of on hand / reserved / picked, holds per charge,
serials and the movement records. Every counter changes with one conditional UPDATE
(safe with any number of instances); a False return means "refused, nothing changed"."""

import uuid
from typing import Any

from sqlalchemy import and_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts.shapes import Person
from procure_inventory.domain import Cause, SerialConflict, StockLevel
from procure_inventory.models import delivery_order, holds, movements, serials, stock
from procure_runtime.db import (
    among,
    dialect_of,
    insert_ignore,
    insert_many,
    lock_order,
    rows_affected,
    update_many,
    utcnow,
)


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
    return rows_affected(done) == 1


async def lock(session: AsyncSession, product_id: str, *location_ids: str) -> None:
    """Lock several stock rows in one order, so that two opposite transfers cannot deadlock."""
    for location_id in location_ids:
        await _ensure(session, stock, product_id=product_id, location_id=location_id)
    if dialect_of(session) == "postgresql":
        await session.execute(
            select(stock.c.location_id)
            .where(stock.c.product_id == product_id, stock.c.location_id.in_(location_ids))
            .order_by(*lock_order("postgresql", stock.c.location_id))
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
    return rows_affected(done) == 1


async def _ensure(session: AsyncSession, table: Any, **key: str) -> None:
    dialect = dialect_of(session)
    await session.execute(insert_ignore(table, dialect).values(**key))


# --- many at once (receipts and deliveries of hundreds of lines) ---------------------------


class NotHeld(Exception):
    """A delivery takes units or serials not held for its charge yet (nothing changed)."""


async def receive(session: AsyncSession, lines: list[tuple[str, str, str | None, int]]) -> None:
    """Received units into stock: (product, location, charge or None, units) each raise
    on hand, and what is for a charge is picked and held for it. Adding units never
    breaks R1, so nothing is refused."""
    on_hand: dict[tuple[str, str], list[int]] = {}
    held: dict[tuple[str, str, str], int] = {}
    for product_id, location_id, charge_id, units in lines:
        counts = on_hand.setdefault((product_id, location_id), [0, 0])
        counts[0] += units
        if charge_id:
            counts[1] += units
            key = (charge_id, product_id, location_id)
            held[key] = held.get(key, 0) + units
    dialect = dialect_of(session)
    await session.execute(
        insert_ignore(stock, dialect),
        [{"product_id": p, "location_id": loc} for p, loc in on_hand],
    )
    await update_many(
        session,
        stock,
        ("product_id", "location_id"),
        [
            {"product_id": p, "location_id": loc, "on_hand": n, "picked": h}
            for (p, loc), (n, h) in on_hand.items()
        ],
        add=True,
    )
    if held:
        rows = [
            {"charge_id": c, "product_id": p, "location_id": loc, "quantity": n}
            for (c, p, loc), n in held.items()
        ]
        zero = [{**r, "quantity": 0} for r in rows]
        await session.execute(insert_ignore(holds, dialect), zero)
        await update_many(
            session, holds, ("charge_id", "product_id", "location_id"), rows, add=True
        )


async def deliver(
    session: AsyncSession,
    taking: list[tuple[str, str, str, int]],
    chosen: list[list[str]],
) -> list[list[str]]:
    """Delivered units leave stock: each (charge, product, location, units) comes out of
    what is held for the charge there and out of on hand and picked, with its serials
    (`chosen`, or else the charge's held serials there in serial order, as many as
    there are). Refused whole (`NotHeld`) if anything is not held yet. The serials taken
    by each, in order."""
    dialect = dialect_of(session)
    need_held: dict[tuple[str, str, str], int] = {}
    need_stock: dict[tuple[str, str], int] = {}
    for charge_id, product_id, location_id, units in taking:
        key = (charge_id, product_id, location_id)
        need_held[key] = need_held.get(key, 0) + units
        need_stock[product_id, location_id] = need_stock.get((product_id, location_id), 0) + units
    have_held = {
        (r.charge_id, r.product_id, r.location_id): r.quantity
        for r in await session.execute(
            select(holds)
            .where(
                tuple_(holds.c.charge_id, holds.c.product_id, holds.c.location_id).in_(need_held)
            )
            .order_by(
                *lock_order(dialect, holds.c.charge_id, holds.c.product_id, holds.c.location_id)
            )
            .with_for_update()
        )
    }
    for (charge_id, product_id, location_id), units in need_held.items():
        if have_held.get((charge_id, product_id, location_id), 0) < units:
            raise NotHeld(
                f"{units} units of {product_id} not held for charge {charge_id} "
                f"at location {location_id} yet"
            )
    have_picked = {
        (r.product_id, r.location_id): r.picked
        for r in await session.execute(
            select(stock.c.product_id, stock.c.location_id, stock.c.picked)
            .where(tuple_(stock.c.product_id, stock.c.location_id).in_(need_stock))
            .order_by(*lock_order(dialect, stock.c.product_id, stock.c.location_id))
            .with_for_update()
        )
    }
    for (product_id, location_id), units in need_stock.items():
        # on hand and picked both drop by `units`: available stays as it is (R1)
        if have_picked.get((product_id, location_id), 0) < units:
            raise NotHeld(f"{units} units of {product_id} not in stock at {location_id}")
    numbers = await _serials_for(session, taking, chosen)
    await update_many(
        session,
        holds,
        ("charge_id", "product_id", "location_id"),
        [
            {"charge_id": c, "product_id": p, "location_id": loc, "quantity": -n}
            for (c, p, loc), n in need_held.items()
        ],
        add=True,
    )
    await update_many(
        session,
        stock,
        ("product_id", "location_id"),
        [
            {"product_id": p, "location_id": loc, "on_hand": -n, "picked": -n}
            for (p, loc), n in need_stock.items()
        ],
        add=True,
    )
    return numbers


async def _serials_for(
    session: AsyncSession, taking: list[tuple[str, str, str, int]], chosen: list[list[str]]
) -> list[list[str]]:
    """The serials each delivered item takes out of stock (deleted): the chosen ones,
    which must be held for its charge at its location, or the oldest held ones."""
    charge_ids = sorted({charge_id for charge_id, _, _, _ in taking})
    product_ids = sorted({product_id for _, product_id, _, _ in taking})
    held = (
        await session.execute(
            select(serials)
            .where(serials.c.product_id.in_(product_ids), serials.c.charge_id.in_(charge_ids))
            .order_by(*lock_order(dialect_of(session), serials.c.serial))
            .with_for_update()
        )
    ).all()
    if not held and not any(chosen):
        return [[] for _ in taking]  # no serial-tracked units in this delivery
    pool: dict[tuple[str, str, str], list[str]] = {}
    for r in held:
        pool.setdefault((r.charge_id, r.product_id, r.location_id), []).append(r.serial)
    out: list[list[str]] = []
    for (charge_id, product_id, location_id, units), named in zip(taking, chosen, strict=True):
        free = pool.get((charge_id, product_id, location_id), [])
        if named:
            if any(n not in free for n in named) or len(set(named)) != len(named):
                where = f"charge {charge_id} at location {location_id}"
                raise NotHeld(f"serials {named} not held for {where} yet")
            taken = list(named)
        else:
            taken = free[:units]
        for n in taken:
            free.remove(n)
        out.append(taken)
    gone: dict[str, list[str]] = {}
    for (_, product_id, _, _), numbers in zip(taking, out, strict=True):
        gone.setdefault(product_id, []).extend(numbers)
    dialect = dialect_of(session)
    for product_id, numbers in sorted(gone.items()):  # a product or two a delivery
        if numbers:
            await session.execute(
                serials.delete().where(
                    serials.c.product_id == product_id, among(serials.c.serial, numbers, dialect)
                )
            )
    return out


async def existing_movements(session: AsyncSession, transfer_ids: list[str]) -> set[str]:
    if not transfer_ids:
        return set()
    rows = await session.scalars(select(movements.c.id).where(movements.c.id.in_(transfer_ids)))
    return set(rows)


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
                serials.c.product_id == product_id,
                among(serials.c.serial, numbers, dialect_of(session)),
            )
        )
    ).all()
    if existing and not restore:
        raise SerialConflict(f"serials already in stock: {', '.join(sorted(existing))}")
    await _insert_serials(
        session, product_id, location_id, [s for s in numbers if s not in existing], charge_id
    )


async def _insert_serials(
    session: AsyncSession,
    product_id: str,
    location_id: str,
    numbers: list[str],
    charge_id: str | None,
) -> None:
    if numbers:
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


async def receive_serials(
    session: AsyncSession,
    product_id: str,
    location_id: str,
    numbers: list[str],
    charge_id: str | None,
) -> list[tuple[str, str]]:
    """A receipt's serials into stock at its location, held for its charge (R11). A receipt
    is a fact every other service has counted, so a serial already here never refuses it:
    one free in stock (an adjustment put it there) is the unit now received and moves to
    the receipt's location and charge; one held for a charge stays with it. Returns the
    serials left with their holder, as (serial, charge id)."""
    if not numbers:
        return []
    # Locked (PostgreSQL; SQLite has one writer): a pick or a transfer of one of them
    # committed meanwhile was overwritten by the update below, which read it as free.
    query = (
        select(serials.c.serial, serials.c.charge_id)
        .where(
            serials.c.product_id == product_id,
            among(serials.c.serial, numbers, dialect_of(session)),
        )
        .order_by(*lock_order(dialect_of(session), serials.c.serial))
        .with_for_update()
    )
    rows = (await session.execute(query)).all()
    held = {r.serial: r.charge_id for r in rows if r.charge_id is not None}
    free = sorted(r.serial for r in rows if r.charge_id is None)
    if free:
        await session.execute(
            update(serials)
            .where(
                serials.c.product_id == product_id,
                among(serials.c.serial, free, dialect_of(session)),
                serials.c.charge_id.is_(None),
            )
            .values(location_id=location_id, charge_id=charge_id)
        )
    new = list(dict.fromkeys(n for n in numbers if n not in held and n not in free))
    await _insert_serials(session, product_id, location_id, new, charge_id)
    return sorted(held.items())


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
        among(serials.c.serial, numbers, dialect_of(session)),
        serials.c.location_id == at,
        serials.c.charge_id.is_(None) if held_for is None else serials.c.charge_id == held_for,
    )
    if to is None:
        done = await session.execute(serials.delete().where(where))
    else:
        done = await session.execute(
            update(serials).where(where).values(location_id=to, charge_id=charge_id)
        )
    return rows_affected(done) == len(numbers)


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
    if dialect_of(session) == "postgresql":
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
    **details: Any,
) -> str:
    """One movement; its transfer id."""
    row = movement(cause, product_id, quantity, **details)
    await session.execute(movements.insert().values(**row))
    return str(row["id"])


async def record_many(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Movements made by `movement`, in one executemany (in order)."""
    if rows:
        await session.execute(movements.insert(), rows)


def movement(
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
    moved_by: Person | None = None,
) -> dict[str, Any]:
    return {
        "id": transfer_id or new_id(),
        "cause": cause,
        "product_id": product_id,
        "charge_id": charge_id,
        "from_location_id": from_location_id,
        "to_location_id": to_location_id,
        "quantity": quantity,
        "serials": numbers or [],
        "reason": reason,
        "reference": reference,
        "moved_by": moved_by,
        "created_at": utcnow(),
    }


async def movement_exists(session: AsyncSession, transfer_id: str) -> bool:
    return bool(await session.scalar(select(movements.c.seq).where(movements.c.id == transfer_id)))


# --- shipping's per-charge order of deliveries and cancellations (R13) -----------------


async def last_seqs(session: AsyncSession, charge_ids: set[str]) -> dict[str, int | None]:
    """Each charge's last delivery or cancellation `seq` applied (0: none yet; None: see
    `models.delivery_order`), its row locked until the transaction ends: another instance
    applying the same charge's next event waits, then reads what this one wrote."""
    if not charge_ids:
        return {}
    ids = sorted(charge_ids)
    dialect = dialect_of(session)
    await insert_many(session, delivery_order, [{"charge_id": c, "last_seq": 0} for c in ids])
    rows = await session.execute(
        select(delivery_order.c.charge_id, delivery_order.c.last_seq)
        .where(among(delivery_order.c.charge_id, ids, dialect))
        .order_by(*lock_order(dialect, delivery_order.c.charge_id))
        .with_for_update()
    )
    return {charge_id: last for charge_id, last in rows.all()}


async def save_seqs(
    session: AsyncSession, before: dict[str, int | None], after: dict[str, int | None]
) -> None:
    changed = [
        {"charge_id": c, "last_seq": s} for c, s in sorted(after.items()) if s != before.get(c)
    ]
    await update_many(session, delivery_order, "charge_id", changed)
