"""Shared shapes embedded in events and requests (spec section 4, "Shared shapes").

Models are tolerant readers: unknown fields are ignored, required fields validated.
Money is a decimal carried as a JSON string ("12.50").
"""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

#: The largest amount the services store (a `Numeric(18, 2)` column).
MAX_AMOUNT = Decimal("9999999999999999.99")
#: The most digits after the point an amount may carry. Services keep a unit cost as the
#: exact text it came in (receiving in 32 characters): at most 1 + 16 + 1 + 12 = 30.
MAX_PLACES = 12
MONEY_PATTERN = r"^[+-]?[0-9]{1,16}(\.[0-9]{1,12})?$"


def plain(amount: Decimal) -> str:
    """An amount's text in plain notation, as events carry it: "100", never "1E+2"."""
    return format(amount, "f")


def _at_most_max_places(value: Decimal) -> Decimal:
    """Zeros written past the last place allowed are dropped ("1.50000000000000" is
    "1.500000000000"): the value is the same, and its text fits where it is kept."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PLACES:
        return value.quantize(Decimal(1).scaleb(-MAX_PLACES))
    return value


#: A money amount in an event. One no service could store is refused where it enters
#: (dead-lettered by the first consumer), not by a database further down the flow after
#: other services counted it. Written in plain notation ("100", never "1E+2").
Money = Annotated[
    Decimal,
    Field(
        ge=-MAX_AMOUNT,
        le=MAX_AMOUNT,
        decimal_places=MAX_PLACES,  # not counting trailing zeros, which the validator drops
        allow_inf_nan=False,
        description='A decimal amount as a string, e.g. "12.50"',
    ),
    AfterValidator(_at_most_max_places),
    PlainSerializer(plain, return_type=str, when_used="json"),
    # The published schema, for producers checking what they send: a string in plain
    # notation of at most 16 integer digits (what `Numeric(18, 2)` holds) and 12 decimal
    # places. The model reads more (a number, "1e2", " 12.5", trailing zeros), but a
    # string it refuses ("abc") no longer passes.
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": -1e16, "maximum": 1e16},
                {"type": "string", "pattern": MONEY_PATTERN},
            ],
            "description": 'A decimal amount as a string, e.g. "12.50"',
        },
        mode="validation",
    ),
]
#: The most units one quantity can hold: what a PostgreSQL `integer` column holds. A
#: larger quantity is refused where it enters (422, or a dead letter) rather than by the
#: database later, where it was a 500 or an event retried without end.
MAX_UNITS = 2**31 - 1
Quantity = Annotated[
    int, Field(gt=0, le=MAX_UNITS, description="A positive number of units, at most 2147483647")
]
NonNegative = Annotated[int, Field(ge=0, le=MAX_UNITS)]
#: A money amount a request gives (a price, a cost, a threshold): one the services can
#: store, refused with a 422 where it enters rather than by a database later.
Amount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]
Id = Annotated[str, Field(min_length=1, max_length=200)]
#: A serial number: inventory and receiving key their serials by it, 200 characters wide.
Serial = Annotated[str, Field(min_length=1, max_length=200)]
#: A purchase order's number, as purchasing writes it ("PO-000042"). Quotes, receiving
#: and shipping keep it in columns of 32 characters: a longer one is refused where it
#: enters, on every database alike (SQLite does not bound text by its declared length).
PONumber = Annotated[str, Field(max_length=32)]


def _none_as_empty(value: object) -> object:
    return [] if value is None else value


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
    # Optional: absent or null, none (other systems publish this shape too).
    reservations: Annotated[list[ReservationRef], BeforeValidator(_none_as_empty)] = Field(
        default_factory=list
    )
    ship_to: Address | None = None
