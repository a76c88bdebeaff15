"""Purchase approval (R5): units sent to procurement wait for a decision at or over the
threshold in force when `charge.need_order` is handled; approve or reject, once."""

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, cast, select, update

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import MAX_UNITS, Person
from procure_contracts.status import ApprovalStatus
from procure_purchasing import fulfillment
from procure_purchasing.domain import AlreadyDecided, needs_approval
from procure_purchasing.models import UNIT_COUNTERS, approvals, charges
from procure_runtime import Applying, NotFound, Reject, UnitOfWork
from procure_runtime.db import among_param, insert_rows, rows_affected, upsert_insert, utcnow

APPROVAL_REQUESTED = spec_for_topic("approval.requested")
APPROVAL_DECIDED = spec_for_topic("approval.decided")
SENT = ("sent", "waiting", "queued")  # the counters a charge.need_order adds to


async def send_to_procurement(items: list[Applying]) -> None:
    """R5: units sent to procurement wait for approval at or over the threshold in force,
    else join the queue. A need_order replacing a failed pick is handled the same way.
    A run of them is stored in a fixed number of statements."""
    session, dialect = items[0].uow.session, items[0].uow.dialect
    settings = await fulfillment.current_settings(session)
    waiting: list[Applying] = []
    queued: list[Applying] = []
    rows: dict[str, dict[str, Any]] = {}  # one per charge: an upsert changes a row once
    for item in items:
        data = item.data
        waits = needs_approval(data.extended_cost, settings.approval_threshold)
        (waiting if waits else queued).append(item)
        row = rows.get(data.charge_id)
        if row is None:
            row = rows[data.charge_id] = {
                "id": data.charge_id,
                "sales_order_id": data.sales_order_id,
                "product": data.product,
                "vendor_id": data.product.vendor.id if data.product.vendor else None,
                "organization": data.organization,
                "destination": data.destination,
                "sent": 0,
                **dict.fromkeys(UNIT_COUNTERS, 0),
            }
        row["sent"] += data.quantity
        row["waiting" if waits else "queued"] += data.quantity
        if row["sent"] > MAX_UNITS:
            raise _too_many(data.charge_id)
    returned = await insert_rows(  # in id order, as every writer of charges takes their locks
        session, _send(dialect), [rows[charge_id] for charge_id in sorted(rows)]
    )
    if missing := sorted(rows.keys() - {r.id for r in returned}):
        raise _too_many(missing[0])  # its row already held too many to take these
    stored = await _described(session, dialect, returned, rows)
    for item in queued:
        fulfillment.emit_forwarded(
            item.uow, stored[item.data.charge_id], item.data.quantity, settings
        )
    if not waiting:
        return
    assert settings.approval_threshold is not None
    requests = [(f"apr-{uuid.uuid4().hex[:12]}", i) for i in waiting]
    await session.execute(
        approvals.insert(),
        [
            {
                "id": approval_id,
                "charge_id": i.data.charge_id,
                "sales_order_id": i.data.sales_order_id,
                "product": i.data.product,
                "quantity": i.data.quantity,
                "extended_cost": i.data.extended_cost,
                "threshold": settings.approval_threshold,
                "status": ApprovalStatus.PENDING,
            }
            for approval_id, i in requests
        ],
    )
    for approval_id, i in requests:
        data = i.data
        i.uow.emit(
            APPROVAL_REQUESTED,
            ev.ApprovalRequestedV1(
                approval_id=approval_id,
                charge_id=data.charge_id,
                sales_order_id=data.sales_order_id,
                product=data.product,
                quantity=data.quantity,
                extended_cost=data.extended_cost,
                threshold=settings.approval_threshold,
                purchasing_team=settings.purchasing_team,
            ),
        )


def _too_many(charge_id: str) -> Reject:
    """More units sent for one charge than any charge has (a quantity is at most
    `MAX_UNITS`): events no flow makes. Refused on every database alike; PostgreSQL's
    integer refused them (dead-lettered) where SQLite stored the sum. Every counter of a
    charge is a share of what was sent, so bounding `sent` bounds them all."""
    return Reject(f"charge {charge_id!r} would have over {MAX_UNITS} units sent to procurement")


@dataclass(frozen=True)
class _Stored:
    """A charge as `charge.forwarded` names it: its product is the first one described."""

    id: str
    sales_order_id: str | None
    product: Any  # a `Product`, or its stored document


async def _described(
    session: Any, dialect: str, returned: list[Any], rows: dict[str, dict[str, Any]]
) -> dict[str, _Stored]:
    """The product of each charge just upserted. A row the upsert made holds the units
    this run sent and nothing more (a row made before holds at least one unit more), and
    its product is the run's: used as it is, where returning every row's document cost a
    JSON decoding and a validation an event (bench/levers.md, lever 65). The products of
    rows made before are read back, in one statement."""
    out, older = {}, []
    for r in returned:
        if r.sent == rows[r.id]["sent"]:
            out[r.id] = _Stored(r.id, r.sales_order_id, rows[r.id]["product"])
        else:
            older.append(r)
    if older:
        ids = [r.id for r in older]
        found = await session.execute(_products_of(dialect), {"ids": ids})
        products = {charge_id: product for charge_id, product in found}
        out.update({r.id: _Stored(r.id, r.sales_order_id, products[r.id]) for r in older})
    return out


@functools.cache
def _products_of(dialect: str) -> Any:
    return select(charges.c.id, charges.c.product).where(among_param(charges.c.id, "ids", dialect))


@functools.cache
def _send(dialect: str) -> Any:
    """A charge's units sent to procurement: its row made on the first, the counters
    added to after; RETURNING what `charge.forwarded` names. One statement, where an
    insert-if-missing, an update of each row and a read of the queued ones were three,
    the first two a statement per row on PostgreSQL (bench/levers.md, lever 30)."""
    stmt = upsert_insert(charges, dialect)
    stmt = stmt.on_conflict_do_update(
        index_elements=[charges.c.id],
        set_={name: charges.c[name] + stmt.excluded[name] for name in SENT},
        # A row that would pass the bound is left as it is and not returned. The sum is
        # taken in 8 bytes: in the column's own 4, PostgreSQL overflows before deciding.
        where=cast(charges.c.sent, BigInteger) + stmt.excluded.sent <= MAX_UNITS,
    )
    return stmt.returning(charges.c.id, charges.c.sales_order_id, charges.c.sent)


async def decide(
    uow: UnitOfWork, approval_id: str, approved: bool, note: str | None, by: Person
) -> None:
    """R5: Approve → the units join the queue; Reject → they are Canceled. Once only."""
    row = (
        await uow.session.execute(select(approvals).where(approvals.c.id == approval_id))
    ).first()
    if row is None:
        raise NotFound(f"approval {approval_id!r} does not exist")
    decided = await uow.session.execute(
        update(approvals)
        .where(approvals.c.id == approval_id, approvals.c.status == ApprovalStatus.PENDING)
        .values(
            status=ApprovalStatus.APPROVED if approved else ApprovalStatus.REJECTED,
            decided_by=by,
            decided_at=utcnow(),
            note=note,
        )
    )
    if rows_affected(decided) == 0:
        raise AlreadyDecided(f"approval {approval_id!r} was decided already ({row.status})")
    # The decision is announced before the units it frees join the queue.
    uow.emit(
        APPROVAL_DECIDED,
        ev.ApprovalDecidedV1(
            approval_id=approval_id,
            charge_id=row.charge_id,
            quantity=row.quantity,
            approved=approved,
            note=note,
            decided_by=by,
        ),
        correlationid=row.sales_order_id or row.charge_id,
    )
    if approved:
        await fulfillment.return_to_queue(uow, row.charge_id, "waiting", row.quantity)
    else:
        await fulfillment.move(uow.session, row.charge_id, "waiting", "canceled", row.quantity)
