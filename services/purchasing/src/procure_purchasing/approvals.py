"""Purchase approval (R5): units sent to procurement wait for a decision at or over the
threshold in force when `charge.need_order` is handled; approve or reject, once."""

import uuid

from sqlalchemy import select, update

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Person
from procure_contracts.status import ApprovalStatus
from procure_purchasing import fulfillment
from procure_purchasing.domain import AlreadyDecided, needs_approval
from procure_purchasing.models import UNIT_COUNTERS, approvals, charges
from procure_runtime import NotFound, UnitOfWork
from procure_runtime.db import insert_ignore, utcnow

APPROVAL_REQUESTED = spec_for_topic("approval.requested")
APPROVAL_DECIDED = spec_for_topic("approval.decided")


async def send_to_procurement(uow: UnitOfWork, data: ev.ChargeNeedOrderV1) -> None:
    """R5: units sent to procurement wait for approval at or over the threshold in force,
    else join the queue. A need_order replacing a failed pick is handled the same way."""
    session = uow.session
    await session.execute(
        insert_ignore(charges, uow.dialect).values(
            id=data.charge_id,
            sales_order_id=data.sales_order_id,
            product=data.product.model_dump(mode="json"),
            vendor_id=data.product.vendor.id if data.product.vendor else None,
            organization=data.organization.model_dump(mode="json"),
            destination=data.destination.model_dump(mode="json"),
            sent=0,
            **dict.fromkeys(UNIT_COUNTERS, 0),
        )
    )
    settings = await fulfillment.current_settings(session)
    waits = needs_approval(data.extended_cost, settings.approval_threshold)
    counter = "waiting" if waits else "queued"
    row = (
        await session.execute(
            update(charges)
            .where(charges.c.id == data.charge_id)
            .values(
                {
                    "sent": charges.c.sent + data.quantity,
                    counter: charges.c[counter] + data.quantity,
                }
            )
            .returning(*charges.c)
        )
    ).one()
    if not waits:
        fulfillment.emit_forwarded(uow, row, data.quantity, settings)
        return
    approval_id = f"apr-{uuid.uuid4().hex[:12]}"
    assert settings.approval_threshold is not None
    await session.execute(
        approvals.insert().values(
            id=approval_id,
            charge_id=data.charge_id,
            sales_order_id=data.sales_order_id,
            product=data.product.model_dump(mode="json"),
            quantity=data.quantity,
            extended_cost=data.extended_cost,
            threshold=settings.approval_threshold,
            status=ApprovalStatus.PENDING,
        )
    )
    uow.emit(
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
            decided_by=by.model_dump(mode="json"),
            decided_at=utcnow(),
            note=note,
        )
    )
    if decided.rowcount == 0:
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
