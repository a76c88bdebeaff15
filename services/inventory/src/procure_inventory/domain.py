"""Inventory's pure rules: stock arithmetic (R1), what may be reserved (R2), how the
reservations listed on a won or direct charge become picks, serial counts and transfers."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from procure_runtime.errors import Conflict, Invalid


class InsufficientStock(Conflict):
    """Not enough available (on hand - reserved - picked) for the request."""


class BelowCommitted(Conflict):
    """An adjustment would take on hand below reserved + picked (R1)."""


class SerialConflict(Conflict):
    """Serials that are already in stock, or not free where they are asked for."""


class ReservationClosed(Conflict):
    """The reservation was already released or picked."""


class OpportunityClosed(Conflict):
    """The opportunity was won or lost already: nothing would ever release a new
    reservation of it (R2)."""


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


class Outcome(StrEnum):
    """How an opportunity closed."""

    WON = "won"
    LOST = "lost"


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


def check_open(opportunity_id: str, outcome: str | None) -> None:
    if outcome is not None:
        raise OpportunityClosed(
            f"opportunity {opportunity_id!r} was {outcome} already: it takes no new reservation"
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
class Claim:
    """A charge that lists reservations: what each of them must match to become its pick."""

    charge_id: str
    product_id: str
    quote_item_id: str | None
    opportunity_id: str | None  # the won opportunity; None for a direct charge (R4)


def per_reservation(listed: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """A charge's listings (reservation id, units), one per reservation in the order first
    listed: a reservation listed twice on a charge is claimed for the units of both, as
    quotes counts them all awaiting their pick."""
    units: dict[str, int] = {}
    for reservation_id, quantity in listed:
        units[reservation_id] = units.get(reservation_id, 0) + quantity
    return list(units.items())


def why_not_usable(reservation: Any, claim: Claim) -> str | None:
    """Why a listed reservation (a row, or None when it does not exist) cannot become the
    charge's pick; None when it can. A won charge takes only its opportunity's active
    reservations; a direct charge has no opportunity, so only the product and the quote
    item (when the charge names one) tie a reservation to it."""
    if reservation is None:
        return "the reservation does not exist"
    if claim.opportunity_id is not None and reservation.opportunity_id != claim.opportunity_id:
        return f"the reservation belongs to opportunity {reservation.opportunity_id}"
    if reservation.status != ReservationStatus.ACTIVE and not retaken(reservation, claim):
        return f"the reservation was {reservation.status} already"
    if reservation.product_id != claim.product_id:
        return f"the reservation is of product {reservation.product_id}, not the charge's"
    if claim.quote_item_id is not None and reservation.quote_item_id != claim.quote_item_id:
        return f"the reservation is for quote item {reservation.quote_item_id}, not the charge's"
    return None


def retaken(reservation: Any, claim: Claim) -> bool:
    """Whether a reservation its opportunity's loss released is taken back by a charge
    listing it that is applied after the loss: a won of that opportunity, or a direct
    charge (no opportunity). Topics are not ordered, and had the charge come first the
    reservation would have been its pick, with nothing of it left for the loss to
    release (a won also prevails in quotes, whichever came first): its listed units are
    then picked from what is available, as the reservation would have given them."""
    return (
        (claim.opportunity_id is None or reservation.opportunity_id == claim.opportunity_id)
        and bool(getattr(reservation, "released_on_loss", False))
        and reservation.quantity > reservation.picked
    )


@dataclass(frozen=True)
class Conversion:
    """What happens to one reservation listed on a charge."""

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


class OutOfOrder(Exception):
    """A delivery or cancellation whose `seq` is not the next of its charge (R13): one
    before it has not been applied yet."""


def in_seq_order(last: dict[str, int | None], items: list[tuple[str, int]]) -> list[bool]:
    """Which of one event's items (charge id, seq) are new, in shipping's per-charge
    order, updating `last` (charge id -> last seq applied) only if the whole event may
    apply. A seq at or below the charge's last was applied already; the new ones must
    follow it without a gap, else `OutOfOrder`. Items that move no stock here (drop-ship,
    no location) still take their seq. A charge whose last seq is None was delivered
    before inventory followed seqs: its items apply in the order they come, as then."""
    after = dict(last)
    new: dict[int, bool] = {}
    for n, (charge_id, seq) in sorted(enumerate(items), key=lambda x: (x[1][0], x[1][1])):
        applied = after.get(charge_id, 0)
        if applied is None:
            new[n] = True
        elif seq <= applied:
            new[n] = False
        elif seq == applied + 1:
            new[n] = True
            after[charge_id] = seq
        else:
            raise OutOfOrder(f"charge {charge_id}: seq {seq} waits for seq {applied + 1}")
    last.update(after)
    return [new[n] for n in range(len(items))]
