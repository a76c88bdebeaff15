"""Quotes' pure rules: how a won or directly created charge routes its units (R3, R4)."""

from dataclasses import dataclass
from decimal import Decimal


class ReservationsExceedQuantity(ValueError):
    pass


@dataclass(frozen=True)
class Routing:
    ready: int  # Ready to Deliver/Ship at once (not subject to procurement)
    awaiting_pick: int  # covered by listed reservations: Need to Order/Fulfill until picked
    to_procurement: int  # sent to procurement with `charge.need_order`


def route_charge(quantity: int, subject_to_procurement: bool, reserved: list[int]) -> Routing:
    """R3/R4. Reservations on a charge not subject to procurement are ignored."""
    if not subject_to_procurement:
        return Routing(ready=quantity, awaiting_pick=0, to_procurement=0)
    covered = sum(reserved)
    if covered > quantity:
        raise ReservationsExceedQuantity(
            f"reservations hold {covered} units but the charge has only {quantity}"
        )
    return Routing(ready=0, awaiting_pick=covered, to_procurement=quantity - covered)


def extended_cost(units: int, unit_cost: Decimal) -> Decimal:
    return (unit_cost * units).quantize(Decimal("0.01"))
