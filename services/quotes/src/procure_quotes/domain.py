"""Quotes' pure rules: routing of won and direct charges (R3, R4) and the charge status
ledger (spec section 2 and the ledger table of section 4).

The ledger keeps only monotonic counters per charge and per PO line; the six unit
statuses are derived from them, so any arrival order of the same events gives the same
statuses. `Need to Order/Fulfill` is the remainder, which makes the counts always sum to
the quantity; an event that would make any count negative has arrived too early and
must wait (`TooEarly`) until what it depends on has been applied.
"""

from dataclasses import dataclass, field, replace
from decimal import Decimal

from procure_contracts.shapes import MAX_AMOUNT
from procure_contracts.status import UnitStatus
from procure_runtime.errors import Invalid


class ReservationsExceedQuantity(ValueError):
    pass


class TooEarly(Exception):
    """The event depends on something not applied yet (park it)."""


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


class AmountTooLarge(Invalid):
    pass


def check_extended(units: int, unit_cost: Decimal, unit_price: Decimal) -> None:
    """A charge's units at their unit cost (which purchasing stores to weigh an approval)
    and at their unit price must be amounts the services can store: refused where the
    charge is made, not by purchasing's database after it was accepted."""
    for what, unit in (("cost", unit_cost), ("price", unit_price)):
        if abs(unit * units) > MAX_AMOUNT:
            raise AmountTooLarge(f"{units} units at unit {what} {unit} exceed {MAX_AMOUNT} in size")


@dataclass(frozen=True)
class POLineUnits:
    """One PO line of a charge: ordered, received so far, and whether it was closed."""

    ordered: int = 0
    received: int = 0
    closed: bool = False

    @property
    def on_order(self) -> int:
        return self.ordered if self.received == 0 and not self.closed else 0


@dataclass(frozen=True)
class Approval:
    """One purchase approval of a charge. Requested and decided may arrive in either
    order (different topics): units wait only while requested and not yet decided."""

    quantity: int
    requested: bool = False
    decided: bool = False
    approved: bool = False

    @property
    def waiting(self) -> int:
        return self.quantity if self.requested and not self.decided else 0

    @property
    def canceled(self) -> int:
        return self.quantity if self.decided and not self.approved else 0


@dataclass(frozen=True)
class Ledger:
    quantity: int
    ready_direct: int = 0
    picked: int = 0
    delivered: int = 0
    delivery_canceled: int = 0
    last_seq: int = 0
    lines: dict[str, POLineUnits] = field(default_factory=dict)
    approvals: dict[str, Approval] = field(default_factory=dict)

    def units(self) -> dict[UnitStatus, int]:
        waiting, on_order, ready, delivered, canceled, need = self._counts()
        counts = {
            UnitStatus.WAITING_APPROVAL: waiting,
            UnitStatus.ON_ORDER: on_order,
            UnitStatus.READY: ready,
            UnitStatus.DELIVERED: delivered,
            UnitStatus.CANCELED: canceled,
            UnitStatus.NEED_TO_ORDER: need,
        }
        return {status: counts[status] for status in UnitStatus}

    def _counts(self) -> tuple[int, int, int, int, int, int]:
        """Waiting, On Order, Ready, Delivered, Canceled, Need to Order: `units()` without
        its dict, for the check every transition makes."""
        waiting = canceled = on_order = received = 0
        for a in self.approvals.values():
            waiting += a.waiting
            canceled += a.canceled
        for line in self.lines.values():
            on_order += line.on_order
            received += line.received
        delivered = self.delivered_units
        ready = self.ready_direct + self.picked + received - delivered
        need = self.quantity - waiting - on_order - ready - delivered - canceled
        return waiting, on_order, ready, delivered, canceled, need

    @property
    def delivered_units(self) -> int:
        return self.delivered - self.delivery_canceled

    def checked(self) -> "Ledger":
        if min(self._counts()) < 0:
            negative = {s: n for s, n in self.units().items() if n < 0}
            raise TooEarly(
                "would make counts negative: " + ", ".join(f"{s} {n}" for s, n in negative.items())
            )
        return self

    # Each transition returns the new ledger or raises TooEarly.

    def request_approval(self, approval_id: str, units: int) -> "Ledger":
        approval = self.approvals.get(approval_id, Approval(units))
        return self._approval(approval_id, replace(approval, requested=True))

    def decide(self, approval_id: str, units: int, approved: bool) -> "Ledger":
        approval = self.approvals.get(approval_id, Approval(units))
        if approval.decided:
            return self
        return self._approval(approval_id, replace(approval, decided=True, approved=approved))

    def _approval(self, approval_id: str, approval: Approval) -> "Ledger":
        return replace(self, approvals={**self.approvals, approval_id: approval}).checked()

    def pick(self, units: int) -> "Ledger":
        return replace(self, picked=self.picked + units).checked()

    def order(self, line_id: str, units: int) -> "Ledger":
        line = self.lines.get(line_id, POLineUnits())
        return self._line(line_id, replace(line, ordered=units))

    def receive(self, line_id: str, units: int) -> "Ledger":
        line = self._known_line(line_id)
        return self._line(line_id, replace(line, received=line.received + units))

    def close_line(self, line_id: str) -> "Ledger":
        return self._line(line_id, replace(self._known_line(line_id), closed=True))

    def deliver(self, seq: int, units: int) -> "Ledger":
        self._in_order(seq)
        return replace(self, delivered=self.delivered + units, last_seq=seq).checked()

    def cancel_delivery(self, seq: int, units: int) -> "Ledger":
        self._in_order(seq)
        return replace(
            self, delivery_canceled=self.delivery_canceled + units, last_seq=seq
        ).checked()

    def already_applied(self, seq: int) -> bool:
        return seq <= self.last_seq

    def _in_order(self, seq: int) -> None:
        if seq != self.last_seq + 1:
            raise TooEarly(f"delivery seq {seq} waits for seq {self.last_seq + 1}")

    def _known_line(self, line_id: str) -> POLineUnits:
        if line_id not in self.lines:
            raise TooEarly(f"PO line {line_id} not submitted yet")
        return self.lines[line_id]

    def _line(self, line_id: str, line: POLineUnits) -> "Ledger":
        if line.received > line.ordered:
            raise TooEarly(f"PO line {line_id}: more received than ordered")
        return replace(self, lines={**self.lines, line_id: line}).checked()

    @property
    def order_view(self) -> tuple[int, bool]:
        """All a sales order's status and `can_fulfill` read of this charge (R16): a
        step that leaves it as it was (an order, a receipt, a pick, an approval asked)
        cannot change the order, which then is neither read nor locked."""
        return self.delivered_units, self.can_fulfill

    @property
    def can_fulfill(self) -> bool:
        """Every unit Delivered/Shipped or Canceled: `units()`'s two counts, worked out
        without building the other four (it is asked of every new charge)."""
        canceled = sum(a.canceled for a in self.approvals.values())
        return self.delivered_units + canceled == self.quantity


def can_fulfill(ledgers: list[Ledger]) -> bool:
    """R16: every unit of every charge is Delivered/Shipped or Canceled."""
    return bool(ledgers) and all(ledger.can_fulfill for ledger in ledgers)
