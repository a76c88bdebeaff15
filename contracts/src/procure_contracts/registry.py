"""One registry of every event: topic, type string, record key, data model, producers
and consumers. Services, docs and schema export all read it."""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import create_model

from procure_contracts import events as ev
from procure_contracts.envelope import CloudEvent
from procure_contracts.shapes import Shape

TYPE_PREFIX = "procurement."
SERVICES = ("quotes", "inventory", "purchasing", "receiving", "shipping", "notifier")


@dataclass(frozen=True)
class EventSpec:
    topic: str
    model: type[Shape]
    key: Callable[[Any], str]
    key_doc: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    summary: str
    version: int = 1
    compacted: bool = False
    external: bool = False  # other systems may publish it too

    @property
    def type(self) -> str:
        return f"{TYPE_PREFIX}{self.topic}.v{self.version}"

    @property
    def base_type(self) -> str:
        return f"{TYPE_PREFIX}{self.topic}"

    def key_of(self, data: Shape) -> str:
        return self.key(data)


def _attr(name: str) -> Callable[[Any], str]:
    def get(data: Any) -> str:
        value = data
        for part in name.split("."):
            value = getattr(value, part)
        return str(value)

    return get


_ALL_LEDGER = ("quotes", "notifier")

REGISTRY: tuple[EventSpec, ...] = (
    EventSpec(
        "catalog.products",
        ev.ProductV1,
        _attr("id"),
        "product id",
        ("inventory",),
        ("quotes", "purchasing", "receiving"),
        "A product was created or changed (latest version per key).",
        compacted=True,
    ),
    EventSpec(
        "catalog.vendors",
        ev.VendorV1,
        _attr("id"),
        "vendor id",
        ("inventory",),
        ("purchasing",),
        "A vendor was created or changed.",
        compacted=True,
    ),
    EventSpec(
        "catalog.locations",
        ev.LocationV1,
        _attr("id"),
        "location id",
        ("inventory",),
        ("purchasing", "quotes", "receiving", "shipping"),
        "A location was created or changed.",
        compacted=True,
    ),
    EventSpec(
        "settings.procurement",
        ev.ProcurementSettingsV1,
        lambda _d: "procurement",
        "`procurement`",
        ("purchasing",),
        ("notifier",),
        "Approval threshold and purchasing team in force.",
        compacted=True,
    ),
    EventSpec(
        "stock.reserved",
        ev.StockReservationV1,
        _attr("quote_item_id"),
        "quote item id",
        ("inventory",),
        ("quotes",),
        "Units were reserved for a quote item.",
    ),
    EventSpec(
        "stock.released",
        ev.StockReservationV1,
        _attr("quote_item_id"),
        "quote item id",
        ("inventory",),
        ("quotes",),
        "A reservation was released.",
    ),
    EventSpec(
        "opportunity.won",
        ev.OpportunityWonV1,
        _attr("opportunity.id"),
        "opportunity id",
        ("quotes",),
        ("quotes", "inventory", "shipping", "notifier"),
        "A deal was won: one sales order and a charge per quote item.",
        external=True,
    ),
    EventSpec(
        "opportunity.lost",
        ev.OpportunityLostV1,
        _attr("opportunity_id"),
        "opportunity id",
        ("quotes",),
        ("quotes", "inventory"),
        "A deal was lost: its reservations are released.",
        external=True,
    ),
    EventSpec(
        "charge.created",
        ev.ChargeCreatedV1,
        _attr("charge.id"),
        "charge id",
        ("quotes",),
        ("quotes", "inventory", "shipping", "notifier"),
        "A charge was added directly to a ticket, project or contract.",
        external=True,
    ),
    EventSpec(
        "charge.ready",
        ev.ChargeReadyV1,
        _attr("charge_id"),
        "charge id",
        ("quotes",),
        ("shipping",),
        "Units need no procurement: Ready to Deliver/Ship.",
    ),
    EventSpec(
        "charge.need_order",
        ev.ChargeNeedOrderV1,
        _attr("charge_id"),
        "charge id",
        ("quotes",),
        ("purchasing",),
        "Units are sent to procurement.",
    ),
    EventSpec(
        "pick.requested",
        ev.PickRequestedV1,
        _attr("charge_id"),
        "charge id",
        ("purchasing",),
        ("inventory", "quotes"),
        "A person picks stock instead of ordering.",
    ),
    EventSpec(
        "units.picked",
        ev.UnitsPickedV1,
        _attr("charge_id"),
        "charge id",
        ("inventory",),
        ("quotes", "purchasing", "shipping"),
        "Stock was picked for a charge.",
    ),
    EventSpec(
        "pick.failed",
        ev.PickFailedV1,
        _attr("charge_id"),
        "charge id",
        ("inventory",),
        ("quotes", "purchasing"),
        "A pick could not be made.",
    ),
    EventSpec(
        "approval.requested",
        ev.ApprovalRequestedV1,
        _attr("charge_id"),
        "charge id",
        ("purchasing",),
        _ALL_LEDGER,
        "Units wait for purchase approval.",
    ),
    EventSpec(
        "approval.decided",
        ev.ApprovalDecidedV1,
        _attr("charge_id"),
        "charge id",
        ("purchasing",),
        _ALL_LEDGER,
        "A purchase approval was approved or rejected.",
    ),
    EventSpec(
        "charge.forwarded",
        ev.ChargeForwardedV1,
        _attr("charge_id"),
        "charge id",
        ("purchasing",),
        _ALL_LEDGER,
        "Units joined the Purchasing & Fulfillment queue.",
    ),
    EventSpec(
        "po.submitted",
        ev.POSubmittedV1,
        _attr("po.id"),
        "PO id",
        ("purchasing",),
        ("quotes", "receiving", "notifier"),
        "A purchase order was submitted.",
    ),
    EventSpec(
        "po.canceled",
        ev.POCanceledV1,
        _attr("po_id"),
        "PO id",
        ("purchasing",),
        (),
        "A New purchase order was canceled.",
    ),
    EventSpec(
        "po.line_closed",
        ev.POLineClosedV1,
        _attr("po_id"),
        "PO id",
        ("receiving",),
        ("quotes", "purchasing"),
        "The rest of a PO line will not be delivered.",
    ),
    EventSpec(
        "units.received",
        ev.UnitsReceivedV1,
        _attr("po_id"),
        "PO id",
        ("receiving",),
        ("quotes", "purchasing", "inventory", "shipping", "notifier"),
        "Units of a PO were received.",
    ),
    EventSpec(
        "shipment.delivered",
        ev.ShipmentDeliveredV1,
        _attr("delivery_id"),
        "delivery id",
        ("shipping",),
        ("quotes", "inventory", "notifier"),
        "Units were delivered or shipped.",
    ),
    EventSpec(
        "shipment.canceled",
        ev.ShipmentCanceledV1,
        _attr("delivery_id"),
        "delivery id",
        ("shipping",),
        ("quotes", "inventory", "notifier"),
        "A delivery was canceled.",
    ),
    EventSpec(
        "salesorder.ready_to_fulfill",
        ev.SalesOrderReadyToFulfillV1,
        _attr("sales_order_id"),
        "sales order id",
        ("quotes",),
        ("notifier",),
        "Every unit of a sales order is delivered or canceled.",
    ),
    EventSpec(
        "salesorder.fulfilled",
        ev.SalesOrderFulfilledV1,
        _attr("sales_order_id"),
        "sales order id",
        ("quotes",),
        (),
        "A person set a sales order Fulfilled.",
    ),
    EventSpec(
        "charge.posted",
        ev.ChargePostedV1,
        _attr("charge_id"),
        "charge id",
        ("quotes",),
        (),
        "A charge was posted for billing.",
    ),
)

_BY_TYPE = {s.type: s for s in REGISTRY}
_BY_BASE = {s.base_type: s for s in REGISTRY}
_BY_TOPIC = {s.topic: s for s in REGISTRY}


def spec_for_type(type_: str) -> EventSpec | None:
    return _BY_TYPE.get(type_)


def spec_for_topic(topic: str) -> EventSpec:
    return _BY_TOPIC[topic]


def compacted(topic: str) -> bool:
    """Whether `topic` is kept compacted (the latest record per key, for good), whoever
    creates it: its producer, or a consumer that starts first."""
    spec = _BY_TOPIC.get(topic)
    return spec is not None and spec.compacted


def split_version(type_: str) -> tuple[str, int] | None:
    """`procurement.opportunity.won.v2` -> (`procurement.opportunity.won`, 2)."""
    base, _, suffix = type_.rpartition(".v")
    if not base or not suffix.isdigit():
        return None
    return base, int(suffix)


def known_base(type_: str) -> EventSpec | None:
    """The spec of a type's family when the type is another version of a known event."""
    parts = split_version(type_)
    return _BY_BASE.get(parts[0]) if parts else None


def dlq_topic(service: str) -> str:
    return f"dlq.{service}"


@functools.cache
def typed_envelope(spec: EventSpec) -> type[CloudEvent]:
    """A `CloudEvent` whose `type` is `spec.type` and whose `data` is a `spec.model`:
    an envelope and its data validated in one pass, as a consumer of the type reads it
    (not the envelope first and then its data again)."""
    only: Any = Literal[spec.type]  # built at run time, so typed loosely
    return create_model(
        f"{spec.model.__name__}Event", __base__=CloudEvent, type=(only, ...), data=(spec.model, ...)
    )
