"""Shared shapes embedded in events and requests (spec section 4, "Shared shapes").

Models are tolerant readers: unknown fields are ignored, required fields validated.
Money is a decimal carried as a JSON string ("12.50").
"""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

Money = Annotated[
    Decimal,
    Field(description='A decimal amount as a string, e.g. "12.50"'),
    PlainSerializer(lambda v: str(v), return_type=str, when_used="json"),
]
#: The most units one quantity can hold: what a PostgreSQL `integer` column holds. A
#: larger quantity is refused where it enters (422, or a dead letter) rather than by the
#: database later, where it was a 500 or an event retried without end.
MAX_UNITS = 2**31 - 1
Quantity = Annotated[
    int, Field(gt=0, le=MAX_UNITS, description="A positive number of units, at most 2147483647")
]
NonNegative = Annotated[int, Field(ge=0, le=MAX_UNITS)]
#: The largest amount the services store (a `Numeric(18, 2)` column).
MAX_AMOUNT = Decimal("9999999999999999.99")
#: A money amount a request gives (a price, a cost, a threshold): one the services can
#: store, refused with a 422 where it enters rather than by a database later.
Amount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]
Id = Annotated[str, Field(min_length=1, max_length=200)]


class Shape(BaseModel):
    """Base of every contract model: ignore unknown fields (tolerant reader)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Person(Shape):
    id: Id
    name: str
    email: str


class Address(Shape):
    name: str
    line1: str
    line2: str | None = None
    city: str
    region: str | None = None
    postal_code: str
    country: str


class Organization(Shape):
    id: Id
    name: str
    address: Address


class Vendor(Shape):
    id: Id
    name: str
    email: str


class Location(Shape):
    id: Id
    name: str
    address: Address


class Product(Shape):
    id: Id
    sku: str
    name: str
    is_inventory: bool
    subject_to_procurement: bool
    serialized: bool = False
    unit_cost: Money
    unit_price: Money
    vendor: Vendor | None = None


ParentKind = Literal["ticket", "project", "contract"]


class Parent(Shape):
    """The ticket, project or contract a charge lives under."""

    kind: ParentKind
    id: Id
    name: str
    primary_resource: Person | None = None
    project_lead: Person | None = None


class ReservationRef(Shape):
    id: Id
    location_id: Id
    quantity: Quantity


class ChargeSpec(Shape):
    """One charge as published in `opportunity.won` and `charge.created`."""

    id: Id
    owner: Person
    parent: Parent
    product: Product
    quantity: Quantity
    unit_price: Money
    quote_item_id: Id | None = None
    reservations: list[ReservationRef] = Field(default_factory=list)
    ship_to: Address | None = None
