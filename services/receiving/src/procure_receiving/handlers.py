"""Receiving's Kafka handlers: submitted POs join the Receiving page; catalog replicas
(locations to check receipts against, products for the `serialized` flag)."""

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.status import POStatus
from procure_receiving.models import metadata, po_lines, purchase_orders
from procure_runtime import EventHandlers, UnitOfWork
from procure_runtime.db import insert_ignore
from procure_runtime.logging import get_logger
from procure_runtime.replica import replicate

log = get_logger("procure.receiving")
handlers = EventHandlers()
replicate(handlers, metadata, "products", "locations")

PO_SUBMITTED = spec_for_topic("po.submitted")
UNITS_RECEIVED = spec_for_topic("units.received")
PO_LINE_CLOSED = spec_for_topic("po.line_closed")


@handlers.on(PO_SUBMITTED)
async def on_po_submitted(uow: UnitOfWork, data: ev.POSubmittedV1, event: CloudEvent) -> None:
    po = data.po
    stored = await uow.session.execute(
        insert_ignore(purchase_orders, uow.dialect).values(
            id=po.id,
            number=po.number,
            vendor=po.vendor.model_dump(mode="json"),
            ship_to=po.ship_to.model_dump(mode="json"),
            drop_ship=po.ship_to.kind == "organization",
            status=POStatus.SUBMITTED,
            submitted_by=data.submitted_by.model_dump(mode="json"),
            correlation_id=event.correlationid,
        )
    )
    if stored.rowcount == 0:
        log.info("PO is on the Receiving page already; ignored", po_id=po.id)
        return
    await uow.session.execute(
        po_lines.insert(),
        [
            {
                "po_id": po.id,
                "line_id": line.line_id,
                "position": position,
                "charge_id": line.charge_id,
                "product": line.product.model_dump(mode="json"),
                "unit_cost": str(line.unit_cost),
                "ordered": line.quantity,
                "received": 0,
                "closed": False,
                "closed_quantity": 0,
            }
            for position, line in enumerate(data.lines)
        ],
    )
