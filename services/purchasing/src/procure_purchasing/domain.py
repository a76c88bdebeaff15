"""Purchasing's pure rules (R5-R9): approval threshold, queue quantities, PO ship-to and
numbering, a PO's status as receiving reports it. No I/O; the exceptions are the
runtime's problem types, so routes can let them through."""

from decimal import Decimal
from typing import Any

from procure_contracts.status import POStatus
from procure_runtime.errors import Conflict, Invalid


class AlreadyDecided(Conflict):
    pass


class NotEnoughQueued(Conflict):
    pass


class NotNew(Conflict):
    pass


class MixedDestinations(Invalid):
    pass


class StockLinesNeedLocation(Invalid):
    pass


def needs_approval(extended_cost: Decimal, threshold: Decimal | None) -> bool:
    """R5: at or over the threshold in force waits; with no threshold nothing waits."""
    return threshold is not None and extended_cost >= threshold


def units_to_take(requested: int | None, queued: int, item_id: str) -> int:
    """R8: a PO line takes the requested units of a queue item (all of them when no
    quantity is given), never more than the item holds."""
    wanted = queued if requested is None else requested
    if wanted <= 0 or wanted > queued:
        raise NotEnoughQueued(
            f"item {item_id!r} has {queued} unit(s) on the queue; {wanted or 'some'} requested",
            item_id=item_id,
            queued=queued,
        )
    return wanted


def drop_ship_address(
    kind: str, destinations: list[dict[str, Any]], has_stock_lines: bool
) -> dict[str, Any] | None:
    """R8: the drop-ship address (every charge's shared destination), None for a
    location PO. Stock lines only go to a location."""
    if kind == "location":
        return None
    if has_stock_lines:
        raise StockLinesNeedLocation("stock replenishment lines need a PO shipped to a location")
    if not destinations:
        raise MixedDestinations("a drop-ship PO needs at least one charge to take its address")
    unique = {_address_key(d): d for d in destinations}
    if len(unique) > 1:
        raise MixedDestinations(
            "a drop-ship PO needs every charge to share one destination; these have "
            f"{len(unique)}: " + "; ".join(f"{d['name']}, {d['city']}" for d in unique.values())
        )
    return next(iter(unique.values()))


def _address_key(address: dict[str, Any]) -> tuple[Any, ...]:
    fields = ("name", "line1", "line2", "city", "region", "postal_code", "country")
    return tuple(address.get(f) for f in fields)


def po_number(sequence: int) -> str:
    return f"PO-{sequence:06d}"


_PROGRESS: list[str] = [POStatus.SUBMITTED, POStatus.RECEIVED_PARTIAL, POStatus.RECEIVED_FULL]


def reported_status(current: str, reported: str) -> str:
    """Receiving's events may arrive in any order: the PO's view only moves forward."""
    if current not in _PROGRESS or reported not in _PROGRESS:
        return current
    return max(current, reported, key=_PROGRESS.index)


def line_open(po_status: str, quantity: int, received: int, closed_quantity: int) -> int:
    if po_status == POStatus.CANCELED:
        return 0
    return max(quantity - received - closed_quantity, 0)


def extended_cost(units: int, unit_cost: Decimal) -> Decimal:
    return (unit_cost * units).quantize(Decimal("0.01"))
