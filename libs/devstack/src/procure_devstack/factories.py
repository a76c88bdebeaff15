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
