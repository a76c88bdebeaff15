"""Receiving's Kafka handlers: submitted POs join the Receiving page; catalog replicas
(locations to check receipts against, products for the `serialized` flag)."""

from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import plain
from procure_contracts.status import POStatus
from procure_receiving.models import metadata, po_lines, purchase_orders
from procure_runtime import Applying, EventHandlers
from procure_runtime.db import insert_all, insert_many
from procure_runtime.logging import get_logger
from procure_runtime.replica import replicate

log = get_logger("procure.receiving")
handlers = EventHandlers()
replicate(handlers, metadata, "products", "locations")

PO_SUBMITTED = spec_for_topic("po.submitted")
UNITS_RECEIVED = spec_for_topic("units.received")
PO_LINE_CLOSED = spec_for_topic("po.line_closed")


@handlers.on_batch(PO_SUBMITTED)
async def on_po_submitted(items: list[Applying]) -> None:
    """A submitted PO joins the Receiving page once (a copy is ignored). A run of them is
    stored in two statements."""
    session = items[0].uow.session
    first: dict[str, Applying] = {}
    for item in items:
        first.setdefault(item.data.po.id, item)
    rows = [
        {
            "id": po_id,
            "number": i.data.po.number,
            "vendor": i.data.po.vendor,
            "ship_to": i.data.po.ship_to,
            "drop_ship": i.data.po.ship_to.kind == "organization",
            "status": POStatus.SUBMITTED,
            "submitted_by": i.data.submitted_by,
            "correlation_id": i.event.correlationid,
        }
        for po_id, i in first.items()
    ]
    stored = {r.id for r in await insert_many(session, purchase_orders, rows, purchase_orders.c.id)}
    lines = []
    for item in items:
        po = item.data.po
        if po.id not in stored or first[po.id] is not item:
            log.info("PO is on the Receiving page already; ignored", po_id=po.id)
            continue
        lines += [
            {
                "po_id": po.id,
                "line_id": line.line_id,
                "position": position,
                "charge_id": line.charge_id,
                "correlation_id": (
                    line.sales_order_id or line.charge_id or item.event.correlationid or po.id
                ),
                "product": line.product,
                "unit_cost": plain(line.unit_cost),
                "ordered": line.quantity,
                "received": 0,
                "closed": False,
                "closed_quantity": 0,
            }
            for position, line in enumerate(item.data.lines)
        ]
    if lines:
        await insert_all(session, po_lines, lines)
