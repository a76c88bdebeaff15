"""Small factories for contract shapes and events, for tests, the demo and benchmarks."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from procure_contracts import events as ev
from procure_contracts.shapes import (
    Address,
    ChargeSpec,
    Organization,
    Parent,
    Person,
    Product,
    ReservationRef,
    Vendor,
)
from procure_contracts.status import POStatus
from procure_devstack.testing import unique


def person(name: str = "Pat Owner", **kw: Any) -> Person:
    pid = kw.pop("id", unique("p-"))
    email = kw.pop("email", f"{name.split()[0].lower()}.{pid}@example.com")
    return Person(id=pid, name=name, email=email, **kw)


def address(name: str = "Acme HQ", city: str = "Springfield", **kw: Any) -> Address:
    return Address(name=name, line1="1 Main St", city=city, postal_code="12345", country="US", **kw)


def organization(**kw: Any) -> Organization:
    return Organization(
        id=kw.pop("id", unique("org-")),
        name=kw.pop("name", "Acme Corp"),
        address=kw.pop("address", address()),
        **kw,
    )


def vendor(**kw: Any) -> Vendor:
    vid = kw.pop("id", unique("v-"))
    return Vendor(
        id=vid,
        name=kw.pop("name", "Parts Inc"),
        email=kw.pop("email", f"sales.{vid}@vendor.example"),
    )


def product(
    *,
    inventory: bool = False,
    procurement: bool = True,
    serialized: bool = False,
    unit_cost: str = "100.00",
    unit_price: str = "150.00",
    **kw: Any,
) -> Product:
    pid = kw.pop("id", unique("prod-"))
    return Product(
        id=pid,
        sku=kw.pop("sku", f"SKU-{pid}"),
        name=kw.pop("name", "Widget"),
        is_inventory=inventory,
        subject_to_procurement=procurement,
        serialized=serialized,
        unit_cost=Decimal(unit_cost),
        unit_price=Decimal(unit_price),
        vendor=kw.pop("vendor", vendor()),
        **kw,
    )


def parent(kind: str = "ticket", **kw: Any) -> Parent:
    extra: dict[str, Any] = {}
    if kind == "ticket":
        extra["primary_resource"] = kw.pop("primary_resource", person("Rita Resource"))
    if kind == "project":
        extra["project_lead"] = kw.pop("project_lead", person("Leo Lead"))
    return Parent(
        kind=cast(Any, kind),  # a test may pass a kind the contract refuses
        id=kw.pop("id", unique(f"{kind}-")),
        name=kw.pop("name", f"A {kind}"),
        **extra,
        **kw,
    )  # type: ignore[arg-type]


def charge(
    prod: Product | None = None,
    quantity: int = 3,
    *,
    reservations: list[tuple[str, str, int]] = (),  # type: ignore[assignment]
    **kw: Any,
) -> ChargeSpec:
    prod = prod or product()
    return ChargeSpec(
        id=kw.pop("id", unique("ch-")),
        owner=kw.pop("owner", person("Carl Charger")),
        parent=kw.pop("parent", parent()),
        product=prod,
        quantity=quantity,
        unit_price=kw.pop("unit_price", prod.unit_price),
        reservations=[
            ReservationRef(id=r, location_id=loc, quantity=q) for r, loc, q in reservations
        ],
        **kw,
    )


def opportunity_won(*charges: ChargeSpec, **kw: Any) -> ev.OpportunityWonV1:
    owner = kw.pop("owner", person("Olive Opportunity"))
    return ev.OpportunityWonV1(
        opportunity=ev.OpportunityRef(
            id=kw.pop("opportunity_id", unique("opp-")), name="Big deal", owner=owner
        ),
        organization=kw.pop("organization", organization()),
        sales_order=ev.SalesOrderRef(
            id=kw.pop("sales_order_id", unique("so-")),
            owner=kw.pop("so_owner", owner),
            ship_to=kw.pop("ship_to", address()),
        ),
        won_at=datetime.now(UTC),
        charges=list(charges) or [charge()],
    )


def charge_created(ch: ChargeSpec | None = None, **kw: Any) -> ev.ChargeCreatedV1:
    return ev.ChargeCreatedV1(
        charge=ch or charge(),
        organization=kw.pop("organization", organization()),
        ship_to=kw.pop("ship_to", address()),
        sales_order_id=kw.pop("sales_order_id", None),
    )


# --- a PO's life, for consumers' tests: ids made from a number n ---------------------


def po_line(ch: ChargeSpec, line_id: str, units: int | None = None) -> ev.POLine:
    """A PO line ordering `units` (default: all) of a charge's product for it."""
    return ev.POLine(
        line_id=line_id,
        charge_id=ch.id,
        product=ch.product,
        quantity=ch.quantity if units is None else units,
        unit_cost=Decimal(ch.product.unit_cost),
    )


def po_submitted(n: int, *lines: ev.POLine, location_id: str = "loc-1") -> ev.POSubmittedV1:
    """PO `po-n` (number `PO-n`) of `lines`, from the first line's vendor, to a location."""
    return ev.POSubmittedV1(
        po=ev.PORef(
            id=f"po-{n}",
            number=f"PO-{n}",
            vendor=cast(Vendor, lines[0].product.vendor),
            ship_to=ev.POShipTo(kind="location", location_id=location_id),
        ),
        lines=list(lines),
        submitted_by=person("Petra Buyer"),
    )


def received_line(
    line_id: str,
    product_id: str,
    units: int,
    *,
    charge_id: str | None = None,
    location_id: str | None = "loc-1",
    serials: list[str] | None = None,
) -> ev.ReceivedLine:
    return ev.ReceivedLine(
        line_id=line_id,
        charge_id=charge_id,
        product_id=product_id,
        quantity=units,
        location_id=location_id,
        serials=serials or [],
        open_after=0,
    )


def units_received(
    n: int,
    *lines: ev.ReceivedLine,
    po: int | None = None,
    po_status: POStatus = POStatus.RECEIVED_FULL,
    drop_ship: bool = False,
) -> ev.UnitsReceivedV1:
    """Receipt `rc-n` of `lines` on PO `po-<po>` (default: `po-n`)."""
    po = n if po is None else po
    return ev.UnitsReceivedV1(
        receipt_id=f"rc-{n}",
        po_id=f"po-{po}",
        number=f"PO-{po}",
        drop_ship=drop_ship,
        po_status=po_status,
        received_by=person("Rick Receiver"),
        lines=list(lines),
    )


def delivered_item(
    item_id: str,
    charge_id: str,
    product_id: str,
    units: int,
    *,
    seq: int = 1,
    location_id: str | None = "loc-1",
    serials: list[str] | None = None,
    transfer_id: str | None = None,
) -> ev.DeliveredItem:
    return ev.DeliveredItem(
        item_id=item_id,
        charge_id=charge_id,
        seq=seq,
        product_id=product_id,
        quantity=units,
        location_id=location_id,
        serials=serials or [],
        transfer_id=transfer_id,
    )


def shipment_delivered(
    n: int, *items: ev.DeliveredItem, drop_ship: bool = False
) -> ev.ShipmentDeliveredV1:
    """Delivery `dl-n` of `items`."""
    return ev.ShipmentDeliveredV1(
        delivery_id=f"dl-{n}",
        drop_ship=drop_ship,
        destination=address(),
        delivered_by=person("Dee Driver"),
        items=list(items),
    )


def canceled_item(
    item_id: str,
    charge_id: str,
    product_id: str,
    units: int,
    *,
    seq: int = 2,
    location_id: str | None = "loc-1",
    serials: list[str] | None = None,
    transfer_id: str | None = None,
    original_transfer_id: str | None = None,
) -> ev.CanceledItem:
    return ev.CanceledItem(
        item_id=item_id,
        charge_id=charge_id,
        seq=seq,
        product_id=product_id,
        quantity=units,
        location_id=location_id,
        serials=serials or [],
        transfer_id=transfer_id,
        original_transfer_id=original_transfer_id,
    )


def shipment_canceled(
    n: int | str,
    *items: ev.CanceledItem,
    reason: str | None = None,
    canceled_by: Person | None = None,
) -> ev.ShipmentCanceledV1:
    """Delivery `dl-n` (or the delivery id `n`) canceled: `items` go back to Ready."""
    return ev.ShipmentCanceledV1(
        delivery_id=n if isinstance(n, str) else f"dl-{n}",
        reason=reason,
        canceled_by=canceled_by or person("Dee Driver"),
        items=list(items),
    )


def approval_requested(
    ch: ChargeSpec, sales_order_id: str, *, purchasing_team: list[str] | None = None
) -> ev.ApprovalRequestedV1:
    """Approval `a-<charge id>` asked for all the charge's units (200 against 100)."""
    return ev.ApprovalRequestedV1(
        approval_id=f"a-{ch.id}",
        charge_id=ch.id,
        sales_order_id=sales_order_id,
        product=ch.product,
        quantity=ch.quantity,
        extended_cost=Decimal(200),
        threshold=Decimal(100),
        purchasing_team=purchasing_team or [],
    )


def approval_decided(ch: ChargeSpec, approved: bool) -> ev.ApprovalDecidedV1:
    """The decision on approval `a-<charge id>` for all the charge's units."""
    return ev.ApprovalDecidedV1(
        approval_id=f"a-{ch.id}",
        charge_id=ch.id,
        quantity=ch.quantity,
        approved=approved,
        note=None if approved else "too dear",
        decided_by=person("Alma Approver"),
    )
