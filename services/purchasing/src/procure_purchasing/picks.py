"""Pick instead of order (R7): a pick request takes units off the queue at once; it is
all or nothing, so a failed pick returns every unit to the queue."""

import uuid
from typing import Any

from sqlalchemy import select, update

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Person, Product
from procure_purchasing import fulfillment
from procure_purchasing.domain import NotEnoughQueued
from procure_purchasing.models import metadata, pick_requests
from procure_runtime import NotFound, Reject, UnitOfWork, UnknownReference, replica
from procure_runtime.db import rows_affected
from procure_runtime.logging import get_logger

PICK_REQUESTED = spec_for_topic("pick.requested")
REQUESTED, PICKED, FAILED = "Requested", "Picked", "Failed"
log = get_logger("procure.purchasing")


async def request_pick(
    uow: UnitOfWork, item_id: str, location_id: str, quantity: int, by: Person
) -> dict[str, Any]:
    """R7: the units leave the queue at once; inventory confirms or fails the pick."""
    row = await fulfillment.charge(uow.session, item_id)
    if row is None:
        raise NotFound(f"queue item {item_id!r} does not exist")
    if await replica.get(uow.session, metadata, "locations", location_id) is None:
        raise UnknownReference(f"unknown location {location_id!r}", reference=location_id)
    if not await fulfillment.move(uow.session, item_id, "queued", "picking", quantity):
        raise NotEnoughQueued(
            f"item {item_id!r} has {row.queued} unit(s) on the queue; {quantity} requested",
            item_id=item_id,
            queued=row.queued,
        )
    request_id = f"pick-{uuid.uuid4().hex[:12]}"
    await uow.session.execute(
        pick_requests.insert().values(
            id=request_id,
            charge_id=item_id,
            location_id=location_id,
            quantity=quantity,
            status=REQUESTED,
            requested_by=by,
        )
    )
    product = Product.model_validate(row.product)
    uow.emit(
        PICK_REQUESTED,
        ev.PickRequestedV1(
            request_id=request_id,
            charge_id=item_id,
            product_id=product.id,
            location_id=location_id,
            quantity=quantity,
        ),
        correlationid=fulfillment.correlation(row),
    )
    return {
        "request_id": request_id,
        "item_id": item_id,
        "charge_id": item_id,
        "location_id": location_id,
        "quantity": quantity,
        "status": REQUESTED,
    }


async def settle_pick(uow: UnitOfWork, request_id: str, picked: bool) -> None:
    """R7: a pick request is all or nothing. Picked: its units are done here; failed:
    all of them return to the queue. A request settles once."""
    request = (
        await uow.session.execute(select(pick_requests).where(pick_requests.c.id == request_id))
    ).first()
    if request is None:
        raise Reject(f"pick request {request_id!r} was never made here")
    settled = await uow.session.execute(
        update(pick_requests)
        .where(pick_requests.c.id == request_id, pick_requests.c.status == REQUESTED)
        .values(status=PICKED if picked else FAILED)
    )
    if rows_affected(settled) == 0:
        log.warning("pick request settled already; ignored", request_id=request_id)
        return
    if picked:
        await fulfillment.move(uow.session, request.charge_id, "picking", "done", request.quantity)
    else:
        await fulfillment.return_to_queue(uow, request.charge_id, "picking", request.quantity)
