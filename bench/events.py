"""The events fed to each hot path: realistic CloudEvents made with the contract models
and the devstack factories (one charge per opportunity, one line per PO or receipt)."""

from dataclasses import dataclass
from decimal import Decimal

from procure_contracts import events as ev
from procure_contracts import new_event
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Shape
from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import unique

LOCATION = "loc-bench"


@dataclass(frozen=True)
class Msg:
    topic: str
    key: bytes
    value: bytes


def message(topic: str, data: Shape) -> Msg:
    spec = spec_for_topic(topic)
    key = spec.key_of(data)
    event = new_event(spec.type, data, source="/bench", subject=key, correlationid=key)
    return Msg(topic, key.encode(), event.to_bytes())


def opportunities(n: int) -> tuple[list[Msg], list[f.ChargeSpec]]:
    charges = [f.charge(f.product(), quantity=2) for _ in range(n)]
    return [message("opportunity.won", f.opportunity_won(ch)) for ch in charges], charges


def need_orders(n: int) -> list[Msg]:
    msgs = []
    for _ in range(n):
        ch = f.charge(f.product(), quantity=2)
        data = ev.ChargeNeedOrderV1(
            charge_id=ch.id,
            sales_order_id=unique("so-"),
            product=ch.product,
            quantity=ch.quantity,
            extended_cost=ch.product.unit_cost * ch.quantity,
            organization=f.organization(),
            destination=f.address(),
        )
        msgs.append(message("charge.need_order", data))
    return msgs


def po_submitted(n: int) -> list[Msg]:
    return po_submitted_for([f.charge(f.product(), quantity=2) for _ in range(n)])


def po_submitted_for(charges: list[f.ChargeSpec]) -> list[Msg]:
    """A PO of one line, to the bench's location, for each charge."""
    msgs = []
    for i, ch in enumerate(charges):
        po = ev.PORef(
            id=unique("po-"),
            number=f"PO-{i:06d}",
            vendor=ch.product.vendor,
            ship_to=ev.POShipTo(kind="location", location_id=LOCATION),
        )
        line = ev.POLine(
            line_id=unique("pol-"),
            charge_id=ch.id,
            product=ch.product,
            quantity=ch.quantity,
            unit_cost=Decimal(ch.product.unit_cost),
        )
        data = ev.POSubmittedV1(po=po, lines=[line], submitted_by=f.person("Petra Buyer"))
        msgs.append(message("po.submitted", data))
    return msgs


def units_received(charges: list[f.ChargeSpec]) -> list[Msg]:
    msgs = []
    for i, ch in enumerate(charges):
        line = ev.ReceivedLine(
            line_id=unique("pol-"),
            charge_id=ch.id,
            product_id=ch.product.id,
            quantity=ch.quantity,
            location_id=LOCATION,
            open_after=0,
        )
        data = ev.UnitsReceivedV1(
            receipt_id=unique("rcpt-"),
            po_id=unique("po-"),
            number=f"PO-{i:06d}",
            drop_ship=False,
            po_status=POStatus.RECEIVED_FULL,
            received_by=f.person("Rob Receiver"),
            lines=[line],
        )
        msgs.append(message("units.received", data))
    return msgs


def charges_ready(charges: list[f.ChargeSpec]) -> list[Msg]:
    """Each charge's units ready without procurement (`charge.ready`)."""
    return [
        message(
            "charge.ready",
            ev.ChargeReadyV1(
                charge_id=ch.id,
                sales_order_id=unique("so-"),
                product=ch.product,
                quantity=ch.quantity,
                destination=f.address(),
            ),
        )
        for ch in charges
    ]


def deliveries(charges: list[f.ChargeSpec]) -> list[Msg]:
    """A delivery of each charge's units from the bench's location."""
    return [
        message(
            "shipment.delivered",
            ev.ShipmentDeliveredV1(
                delivery_id=unique("dl-"),
                drop_ship=False,
                destination=f.address(),
                delivered_by=f.person("Dee Driver"),
                items=[
                    ev.DeliveredItem(
                        item_id=unique("it-"),
                        charge_id=ch.id,
                        seq=1,
                        product_id=ch.product.id,
                        quantity=ch.quantity,
                        location_id=LOCATION,
                        transfer_id=unique("tr-"),
                    )
                ],
            ),
        )
        for ch in charges
    ]


def charges_created(charges: list[f.ChargeSpec]) -> list[Msg]:
    """Each charge made outside a won opportunity, with no sales order (`charge.created`)."""
    return [message("charge.created", f.charge_created(ch)) for ch in charges]
