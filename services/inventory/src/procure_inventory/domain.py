"""Inventory's pure rules: stock arithmetic (R1), what may be reserved (R2), how a won
opportunity's listed reservations become picks, serial counts and transfers."""

from dataclasses import dataclass
from enum import StrEnum

from procure_runtime.errors import Conflict, Invalid


class InsufficientStock(Conflict):
    """Not enough available (on hand - reserved - picked) for the request."""


class BelowCommitted(Conflict):
    """An adjustment would take on hand below reserved + picked (R1)."""


class SerialConflict(Conflict):
    """Serials that are already in stock, or not free where they are asked for."""


class ReservationClosed(Conflict):
    """The reservation was already released or picked."""


class NotReservable(Invalid):
    """Only inventory products subject to procurement can be reserved (R2)."""


class SerialsMismatch(Invalid):
    """Serials given do not match the product or the quantity."""


class SameLocation(Invalid):
    pass


class ReservationsExceedQuantity(ValueError):
    pass


class ReservationStatus(StrEnum):
    ACTIVE = "active"
    RELEASED = "released"
    PICKED = "picked"


class Cause(StrEnum):
    """Why on hand changed somewhere (the `cause` of a transfer record)."""

    ADJUSTMENT = "adjustment"
    RECEIPT = "receipt"
    DELIVERY = "delivery"
    CANCELLATION = "cancellation"
    TRANSFER = "transfer"


@dataclass(frozen=True)
class StockLevel:
    on_hand: int = 0
    reserved: int = 0
    picked: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved - self.picked


def check_reservable(is_inventory: bool, subject_to_procurement: bool) -> None:
    if not (is_inventory and subject_to_procurement):
        raise NotReservable(
            "only inventory products subject to procurement can be reserved for a quote item"
        )


def check_available(level: StockLevel, quantity: int, what: str) -> None:
    """Used to explain a refused atomic update (the database made the decision)."""
    if quantity > level.available:
        raise InsufficientStock(
            f"cannot {what} {quantity}: only {level.available} available "
            f"(on hand {level.on_hand}, reserved {level.reserved}, picked {level.picked})",
            available=level.available,
        )


def check_adjustment(level: StockLevel, delta: int) -> None:
    if level.on_hand + delta < level.reserved + level.picked:
        raise BelowCommitted(
            f"adjusting by {delta} would leave {level.on_hand + delta} on hand, below "
            f"{level.reserved} reserved + {level.picked} picked",
            available=level.available,
        )


def check_serials(serialized: bool | None, quantity: int, serials: list[str]) -> None:
    """Serialized products name exactly |quantity| distinct serials; others name none.
    `serialized` is None for a product the catalog does not know: serials are optional."""
    if serials and (len(set(serials)) != len(serials) or any(not s.strip() for s in serials)):
        raise SerialsMismatch("serials must be distinct and non-empty")
    if serialized is False and serials:
        raise SerialsMismatch("this product is not serialized: give no serials")
    if (serialized or serials) and len(serials) != abs(quantity):
        raise SerialsMismatch(f"give exactly {abs(quantity)} serials, got {len(serials)}")


def check_transfer(from_location_id: str, to_location_id: str) -> None:
    if from_location_id == to_location_id:
        raise SameLocation("the destination must differ from the source location")


@dataclass(frozen=True)
class Conversion:
    """What happens to one reservation listed on a won charge."""

    pick: int  # reserved units that become picked for the charge
    shortfall: int  # listed units that cannot be picked: `pick.failed`
    release: int  # reserved units beyond what was listed: released


def convert(listed: int, held: int | None) -> Conversion:
    """`held` is what the reservation still holds (None: it no longer exists)."""
    held = held or 0
    pick = min(listed, held)
    return Conversion(pick=pick, shortfall=listed - pick, release=held - pick)


def check_won_charge(quantity: int, listed: list[int]) -> None:
    """Same rule as quotes' routing (R2/R3): listed reservations fit the charge."""
    if sum(listed) > quantity:
        raise ReservationsExceedQuantity(
            f"reservations hold {sum(listed)} units but the charge has only {quantity}"
        )
