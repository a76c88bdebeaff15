"""`data` models of every event type, version 1 (spec section 4).

Quantities are changes, never running totals; `*_after` fields are snapshots.
"""

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from procure_contracts.shapes import (
    Address,
    ChargeSpec,
    Id,
    Location,
    Money,
    NonNegative,
    Organization,
    Person,
    PONumber,
    Product,
    Quantity,
    Serial,
    Shape,
    Vendor,
)
from procure_contracts.status import POStatus


class ProcurementSettingsV1(Shape):
    approval_threshold: Money | None = None
    purchasing_team: list[str] = Field(default_factory=list)


class StockReservationV1(Shape):
    """`stock.reserved` and `stock.released`."""

    reservation_id: Id
    opportunity_id: Id
    quote_item_id: Id
    product_id: Id
    location_id: Id
    quantity: Quantity


class OpportunityRef(Shape):
    id: Id
    name: str
    owner: Person


class SalesOrderRef(Shape):
    id: Id
    owner: Person
    ship_to: Address


class OpportunityWonV1(Shape):
    opportunity: OpportunityRef
    organization: Organization
    sales_order: SalesOrderRef
    won_at: datetime
    charges: list[ChargeSpec] = Field(min_length=1)


class OpportunityLostV1(Shape):
    opportunity_id: Id


class ChargeCreatedV1(Shape):
    charge: ChargeSpec
    organization: Organization
    ship_to: Address
    sales_order_id: Id | None = None


class ChargeReadyV1(Shape):
    charge_id: Id
    sales_order_id: Id | None = None
    product: Product
    quantity: Quantity
    destination: Address


class ChargeNeedOrderV1(Shape):
    charge_id: Id
    sales_order_id: Id | None = None
    product: Product
    quantity: Quantity
    extended_cost: Money
    organization: Organization
    destination: Address
    reservation_id: Id | None = Field(
        default=None, description="Set when these units replace a failed pick of a reservation"
    )


class PickRequestedV1(Shape):
    request_id: Id
    charge_id: Id
    product_id: Id
    location_id: Id
    quantity: Quantity


class UnitsPickedV1(Shape):
    charge_id: Id
    product_id: Id | None = None
    location_id: Id
    quantity: Quantity
    serials: list[Serial] = Field(default_factory=list)
    reservation_id: Id | None = None
    pick_request_id: Id | None = None


class PickFailedV1(Shape):
    charge_id: Id
    quantity: Quantity
    reason: str
    reservation_id: Id | None = None
    pick_request_id: Id | None = None


class ApprovalRequestedV1(Shape):
    approval_id: Id
    charge_id: Id
    sales_order_id: Id | None = None
    product: Product
    quantity: Quantity
    extended_cost: Money
    threshold: Money
    purchasing_team: list[str] = Field(default_factory=list)


class ApprovalDecidedV1(Shape):
    approval_id: Id
    charge_id: Id
    quantity: Quantity
    approved: bool
    note: str | None = None
    decided_by: Person


class ChargeForwardedV1(Shape):
    charge_id: Id
    sales_order_id: Id | None = None
    product: Product
    quantity: Quantity = Field(description="Units added to the queue by this event")
    purchasing_team: list[str] = Field(default_factory=list)


class POShipTo(Shape):
    kind: Literal["location", "organization"]
    location_id: Id | None = None
    address: Address | None = Field(default=None, description="The drop-ship address")


class PORef(Shape):
    id: Id
    number: PONumber
    vendor: Vendor
    ship_to: POShipTo


class POLine(Shape):
    line_id: Id
    charge_id: Id | None = None
    # Added in v1 (optional): a PO may span sales orders, and what one line's receipt or
    # close publishes correlates with that line's flow.
    sales_order_id: Id | None = Field(
        default=None, description="The sales order of the line's charge, if it has one"
    )
    product: Product
    quantity: Quantity
    unit_cost: Money


class POSubmittedV1(Shape):
    po: PORef
    lines: list[POLine] = Field(min_length=1, description="Each with a `line_id` of its own")
    submitted_by: Person

    @model_validator(mode="after")
    def _each_line_once(self) -> "POSubmittedV1":
        # Consumers key a PO's lines by their id: a repeated one was a unique-key error
        # in their handlers, not a refusal of the event.
        ids = [line.line_id for line in self.lines]
        if len(set(ids)) != len(ids):
            raise ValueError("a line_id is repeated: each line of a PO has its own")
        return self


class POCanceledV1(Shape):
    po_id: Id
    number: PONumber


class POLineClosedV1(Shape):
    po_id: Id
    number: PONumber
    line_id: Id
    charge_id: Id | None = None
    quantity: NonNegative = Field(description="Units returned to the queue")
    po_status: POStatus
    closed_by: Person


class ReceivedLine(Shape):
    line_id: Id
    charge_id: Id | None = None
    product_id: Id
    quantity: Quantity
    location_id: Id | None = None
    serials: list[Serial] = Field(default_factory=list)
    open_after: NonNegative = Field(description="Snapshot: the line's open quantity after this")


class UnitsReceivedV1(Shape):
    receipt_id: Id
    po_id: Id
    number: PONumber
    drop_ship: bool
    po_status: POStatus
    received_by: Person
    lines: list[ReceivedLine] = Field(min_length=1)


class DeliveredItem(Shape):
    item_id: Id
    charge_id: Id
    seq: int = Field(ge=1, description="Per-charge order of deliveries and cancellations")
    sales_order_id: Id | None = None
    product_id: Id
    quantity: Quantity
    location_id: Id | None = None
    serials: list[Serial] = Field(default_factory=list)
    transfer_id: Id | None = None


class ShipmentDeliveredV1(Shape):
    delivery_id: Id
    drop_ship: bool
    po_number: PONumber | None = None
    destination: Address
    delivered_by: Person
    items: list[DeliveredItem] = Field(min_length=1)


class CanceledItem(Shape):
    item_id: Id
    charge_id: Id
    seq: int = Field(ge=1)
    product_id: Id
    quantity: Quantity
    location_id: Id | None = None
    serials: list[Serial] = Field(default_factory=list)
    transfer_id: Id | None = Field(default=None, description="The reversing transfer")
    original_transfer_id: Id | None = None


class ShipmentCanceledV1(Shape):
    delivery_id: Id
    reason: str | None = None
    canceled_by: Person
    items: list[CanceledItem] = Field(min_length=1)


class SalesOrderReadyToFulfillV1(Shape):
    sales_order_id: Id
    owner: Person
    # Added in v1 (optional): which charges the order had when it became fulfillable, so
    # that a consumer lists those, whatever order the charges' own events reach it in.
    charge_ids: list[Id] | None = Field(
        default=None, description="The sales order's charges when it became fulfillable"
    )


class SalesOrderFulfilledV1(Shape):
    sales_order_id: Id
    fulfilled_by: Person


class ChargePostedV1(Shape):
    charge_id: Id
    posted_by: Person
    amount: Money


# Catalog topics carry the shared shapes themselves.
ProductV1 = Product
VendorV1 = Vendor
LocationV1 = Location
