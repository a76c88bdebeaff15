"""Loading and saving charge ledgers, the history of every event that touched a charge,
and the sales order consequences of a ledger change (In Progress, can_fulfill, R16)."""

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Select, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Person
from procure_contracts.status import SalesOrderStatus
from procure_quotes.domain import Approval, Ledger, POLineUnits, can_fulfill
from procure_quotes.models import approvals, charge_po_lines, charges, history, sales_orders
from procure_runtime import UnitOfWork
from procure_runtime.db import (
    among,
    among_param,
    custom_plans,
    dialect_of,
    insert_ignore,
    insert_many,
    lock_order,
    update_many,
    utcnow,
)

READY_TO_FULFILL = spec_for_topic("salesorder.ready_to_fulfill")
COUNTERS = (
    "ready_direct",
    "picked",
    "delivered",
    "delivery_canceled",
    "last_seq",
)


# What the refresh needs of a sales order: not its address and organization documents,
# which would be decoded for every order a bulk event touches.
ORDER_COLUMNS = [
    sales_orders.c.id,
    sales_orders.c.status,
    sales_orders.c.can_fulfill,
    sales_orders.c.owner,
]


Parts = tuple[list[Any], list[Any]]  # a charge's PO line rows and approval rows


def ledger_of(row: Any, parts: Parts) -> Ledger:
    lines, approval_rows = parts
    return Ledger(
        quantity=row.quantity,
        **{name: getattr(row, name) for name in COUNTERS},
        lines={
            line.line_id: POLineUnits(line.ordered, line.received, line.closed) for line in lines
        },
        approvals={
            a.id: Approval(a.quantity, a.requested, a.decided, a.approved) for a in approval_rows
        },
    )


# The reads of a bulk event, built once per dialect (and shape) with their lists of ids
# given at execution: built per event, their construction and cache keys were ~8% of
# the bulk handlers' CPU (bench/levers.md, lever 43; lever 40 did the same for the
# per-charge handlers).
@functools.cache
def _of_charges(table: Table, dialect: str) -> Select[Any]:
    return select(table).where(among_param(table.c.charge_id, "ids", dialect))


@functools.cache
def _charges_by_id(dialect: str, whole: bool, lock: bool) -> Select[Any]:
    query = select(*charges.c) if whole else select(*LEDGER_COLUMNS)
    query = query.where(among_param(charges.c.id, "ids", dialect))
    query = query.order_by(*lock_order(dialect, charges.c.id))
    return query.with_for_update() if lock else query


@functools.cache
def _orders_locked(dialect: str) -> Select[Any]:
    return (
        select(*ORDER_COLUMNS)
        .where(among_param(sales_orders.c.id, "ids", dialect))
        .order_by(*lock_order(dialect, sales_orders.c.id))
        .with_for_update()
    )


@functools.cache
def _members(dialect: str) -> Select[Any]:
    return select(charges.c.id, charges.c.sales_order_id).where(
        among_param(charges.c.sales_order_id, "ids", dialect)
    )


async def lines_of(session: AsyncSession, charge_ids: list[str]) -> dict[str, Parts]:
    """The PO lines and approvals of each charge: its ledger besides the counters."""
    out: dict[str, Parts] = {cid: ([], []) for cid in charge_ids}
    dialect = dialect_of(session)
    for table, index in ((charge_po_lines, 0), (approvals, 1)):
        rows = (await session.execute(_of_charges(table, dialect), {"ids": charge_ids})).all()
        for r in rows:
            out[r.charge_id][index].append(r)
    return out


# What a ledger and its history line need of a charge row (its JSON documents are not:
# decoding them is most of the cost of reading hundreds of charges for a bulk event).
LEDGER_COLUMNS = [charges.c.id, charges.c.sales_order_id, charges.c.quantity] + [
    charges.c[name] for name in COUNTERS
]


async def load(
    session: AsyncSession, charge_ids: list[str], *, whole: bool = False, lock: bool = True
) -> dict[str, tuple[Any, Ledger]]:
    """Charges locked for update (in id order, so concurrent events never deadlock) unless
    not `lock`: `LEDGER_COLUMNS` of each row, or every column if `whole`."""
    ids = sorted(set(charge_ids))
    query = _charges_by_id(dialect_of(session), whole, lock)
    # Both tables grow with the stream, from empty on a new deployment: a plan cached
    # while they were small would scan them (`custom_plans`).
    async with custom_plans(session):
        rows = (await session.execute(query, {"ids": ids})).all()
        lines = await lines_of(session, [r.id for r in rows])
    return {r.id: (r, ledger_of(r, lines[r.id])) for r in rows}


async def save(
    session: AsyncSession,
    dialect: str,
    changes: list[tuple[str, Ledger, Ledger, dict[str, Any]]],
    submitted: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> None:
    """Write what changed between each charge's ledger before and after (plus `extra`
    columns), as few statements as the changes allow: one executemany per shape of update.
    `submitted`: (charge id, line id) -> the `charge_po_lines` row (but for its units) of a PO line
    new to its charge's ledger, inserted with its units as they are now. Inserting the
    lines with nothing ordered before the ledgers loaded, then updating each, cost
    quotes' ledger a statement execution for every line (bench/levers.md, lever 64).
    A line id a row of another charge holds already is left as it is."""
    charge_updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    line_updates: list[dict[str, Any]] = []
    line_inserts: list[dict[str, Any]] = []
    approval_rows: list[dict[str, Any]] = []
    for charge_id, before, after, extra in changes:
        values = {
            name: getattr(after, name)
            for name in COUNTERS
            if getattr(after, name) != getattr(before, name)
        }
        values.update(extra)
        if values:
            charge_updates.setdefault(tuple(sorted(values)), []).append({"id": charge_id, **values})
        for line_id, line in after.lines.items():
            if before.lines.get(line_id) != line:
                units = {"ordered": line.ordered, "received": line.received, "closed": line.closed}
                if line_id in before.lines:
                    line_updates.append({"line_id": line_id, **units})
                else:
                    line_inserts.append({**(submitted or {})[(charge_id, line_id)], **units})
        for approval_id, a in after.approvals.items():
            if before.approvals.get(approval_id) != a:
                approval_rows.append(
                    {
                        "id": approval_id,
                        "charge_id": charge_id,
                        "quantity": a.quantity,
                        "requested": a.requested,
                        "decided": a.decided,
                        "approved": a.approved,
                    }
                )
    for rows in charge_updates.values():
        await update_many(session, charges, "id", rows)
    await update_many(session, charge_po_lines, "line_id", line_updates)
    await insert_many(session, charge_po_lines, sorted(line_inserts, key=itemgetter("line_id")))
    if approval_rows:
        await session.execute(insert_ignore(approvals, dialect), approval_rows)
        await update_many(
            session,
            approvals,
            "id",
            [{k: r[k] for k in ("id", "requested", "decided", "approved")} for r in approval_rows],
        )


def record(
    uow: UnitOfWork,
    row: Any,
    event: CloudEvent,
    summary: str,
    *,
    sales_order_id: str | None = None,
    location_id: str | None = None,
) -> None:
    """One line of a charge's history (or, with `row` None, of a sales order's timeline).
    Nothing reads history while events apply, so the lines of a whole batch are written
    together at its end. `location_id`: the line is read as "`summary` at <its name>"."""
    uow.insert_later(
        history,
        charge_id=row.id if row is not None else None,
        sales_order_id=row.sales_order_id if row is not None else sales_order_id,
        time=event.time or utcnow(),
        type=event.type,
        event_id=event.id,
        summary=summary,
        location_id=location_id,
    )


async def refresh_sales_orders(
    uow: UnitOfWork, sales_order_ids: list[str], in_hand: dict[str, Ledger] | None = None
) -> None:
    """In Progress once any unit is delivered (never back by itself); `can_fulfill` and
    `salesorder.ready_to_fulfill` each time it becomes true (R16). For many sales orders
    at once: a bulk event (a PO, a receipt, a delivery) touches one per charge.

    `in_hand`: charge id -> its ledger as just saved in this transaction. Those charges
    are not read back; only the sales orders' other charges are. Reading back every
    charge with its PO lines and approvals, and every order's documents, made a bulk
    event cost a third more CPU (`python -m bench.bulk`, bench/levers.md lever 21)."""
    await refresh_in_turn([Turn(uow, sales_order_ids, in_hand or {})])


@dataclass(frozen=True)
class Turn:
    """One event's part of a refresh: the sales orders it touched, and the ledgers of the
    charges it changed as they were after it."""

    uow: UnitOfWork
    sales_order_ids: Iterable[str | None]
    ledgers: dict[str, Ledger]


async def refresh_in_turn(turns: list[Turn], known: dict[str, Ledger] | None = None) -> None:
    """`refresh_sales_orders` for a run of events, each in its turn, with the reads and
    writes of one: an order is read (and locked) once, its charges' ledgers are followed
    in memory from event to event, each `salesorder.ready_to_fulfill` is emitted by the
    event that made it true, and each order changed is written once, as it ends. What
    one refresh per event would leave, in 4 statements (plus the changes') instead of 4
    an event. `known`: the ledgers of charges as they were before the first turn, which
    need no reading back."""
    ids = sorted({so for turn in turns for so in turn.sales_order_ids if so})
    if not ids:
        return
    session, dialect = turns[0].uow.session, turns[0].uow.dialect
    orders = (await session.execute(_orders_locked(dialect), {"ids": ids})).all()
    members = (await session.execute(_members(dialect), {"ids": ids})).all()
    state = dict(known or {})
    changing = {cid for turn in turns for cid in turn.ledgers}
    of_order: dict[str, list[str]] = {so.id: [] for so in orders}
    others = []
    for m in members:
        of_order[m.sales_order_id].append(m.id)
        if m.id not in state and m.id not in changing:
            others.append(m.id)
    if others:  # read, not locked: these events change none of them
        for row, led in (await load(session, others, lock=False)).values():
            state[row.id] = led
    now = {so.id: (so.status, so.can_fulfill) for so in orders}
    owners = {so.id: so.owner for so in orders}
    for turn in turns:
        state.update(turn.ledgers)
        for so_id in sorted({so for so in turn.sales_order_ids if so}):
            if so_id not in now:
                continue
            status, can = now[so_id]
            ledgers = [state[cid] for cid in of_order[so_id] if cid in state]
            if status == SalesOrderStatus.NEW and any(led.delivered_units > 0 for led in ledgers):
                status = SalesOrderStatus.IN_PROGRESS
            now_can = can_fulfill(ledgers)
            if now_can != can and now_can:
                owner = Person.model_validate(owners[so_id])
                _ready_to_fulfill(turn.uow, so_id, owner, sorted(of_order[so_id]))
            now[so_id] = (status, now_can)
    changed: dict[tuple[tuple[str, Any], ...], list[str]] = {}
    for so in orders:
        status, can = now[so.id]
        values: dict[str, Any] = {}
        if status != so.status:
            values["status"] = status
        if can != so.can_fulfill:
            values["can_fulfill"] = can
        if values:
            changed.setdefault(tuple(sorted(values.items())), []).append(so.id)
    for values_key, so_ids in changed.items():  # few distinct changes: one UPDATE for each
        await session.execute(
            update(sales_orders)
            .where(among(sales_orders.c.id, so_ids, dialect))
            .values(dict(values_key))
        )


async def settle_new_sales_order(
    uow: UnitOfWork, sales_order_id: str, owner: Person, rows: list[Any]
) -> None:
    """`refresh_sales_orders` for a sales order created in this transaction, `rows` being
    all its charges, just created: no PO line, approval or delivery can exist for them
    yet (events naming them park until they exist), so nothing needs reading back."""
    if can_fulfill([ledger_of(r, ([], [])) for r in rows]):
        _ready_to_fulfill(uow, sales_order_id, owner, sorted(r.id for r in rows))
        await uow.session.execute(
            update(sales_orders).where(sales_orders.c.id == sales_order_id).values(can_fulfill=True)
        )


def _ready_to_fulfill(
    uow: UnitOfWork, sales_order_id: str, owner: Person, charge_ids: list[str]
) -> None:
    uow.emit(
        READY_TO_FULFILL,
        ev.SalesOrderReadyToFulfillV1(
            sales_order_id=sales_order_id, owner=owner, charge_ids=charge_ids
        ),
        correlationid=sales_order_id,
    )
