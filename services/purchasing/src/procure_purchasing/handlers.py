"""Purchasing's Kafka handlers: one thin function per event type, plus the catalog
replicas (products, vendors, locations) that validate references in requests."""

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_purchasing import approvals, picks, receiving_reports
from procure_purchasing.models import REPLICAS, metadata
from procure_runtime import Applying, EventHandlers, UnitOfWork
from procure_runtime.logging import get_logger
from procure_runtime.replica import replicate

log = get_logger("procure.purchasing")
handlers = EventHandlers()
replicate(handlers, metadata, *REPLICAS)


@handlers.on_batch(spec_for_topic("charge.need_order"))
async def on_need_order(items: list[Applying]) -> None:
    await approvals.send_to_procurement(items)


@handlers.on(spec_for_topic("pick.failed"))
async def on_pick_failed(uow: UnitOfWork, data: ev.PickFailedV1, event: CloudEvent) -> None:
    if data.pick_request_id is None:  # a reservation's pick: quotes sends those units here
        return
    await picks.settle_pick(uow, data.pick_request_id, picked=False)


@handlers.on(spec_for_topic("units.picked"))
async def on_units_picked(uow: UnitOfWork, data: ev.UnitsPickedV1, event: CloudEvent) -> None:
    if data.pick_request_id is None:  # a reservation's pick never was on the queue
        return
    await picks.settle_pick(uow, data.pick_request_id, picked=True)


@handlers.on_batch(spec_for_topic("units.received"))
async def on_units_received(items: list[Applying]) -> None:
    """A run of receipts in the statements of one."""
    await receiving_reports.apply_receipts(items[0].uow, [item.data for item in items])


@handlers.on(spec_for_topic("po.line_closed"))
async def on_line_closed(uow: UnitOfWork, data: ev.POLineClosedV1, event: CloudEvent) -> None:
    await receiving_reports.apply_line_closed(uow, data)
