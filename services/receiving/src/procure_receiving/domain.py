"""Receiving's pure rules: what a receipt may take from a PO's open lines (R10), what
closing a line returns (R9), and the PO status that follows. No I/O here."""

from collections import Counter
from dataclasses import dataclass, field

from procure_contracts.status import POStatus
from procure_runtime.errors import Conflict, Invalid


class LineNotOnPO(Invalid):
    pass


class NoSuchLine(LineNotOnPO):
    """A line id in the path that is not on the PO: a 422, as the spec has it (the PO in
    the path is the resource; a 404 says that the PO is unknown)."""


class OverReceipt(Conflict):
    pass


class LocationRequired(Invalid):
    pass


class BadSerials(Invalid):
    pass


class SerialsReceivedBefore(Conflict):
    """R10: serials receiving has received already, a conflict with what it holds."""


class NotReceivable(Conflict):
    """The PO or line accepts no more receipts (complete, closed, not submitted)."""


RECEIVABLE = {POStatus.SUBMITTED, POStatus.RECEIVED_PARTIAL}


@dataclass
class Line:
    line_id: str
    charge_id: str | None
    product_id: str
    serialized: bool
    ordered: int
    received: int = 0
    closed: bool = False
    correlation_id: str | None = None  # its flow (models.po_lines)

    @property
    def open(self) -> int:
        return 0 if self.closed else self.ordered - self.received

    @property
    def complete(self) -> bool:
        return self.open == 0


@dataclass
class PurchaseOrder:
    id: str
    number: str
    drop_ship: bool
    status: POStatus
    lines: dict[str, Line] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceiptLine:
    line_id: str
    quantity: int
    location_id: str | None = None
    serials: tuple[str, ...] = ()


def check_receipt(po: PurchaseOrder, lines: list[ReceiptLine]) -> None:
    """R10 on one receipt, against the PO as it stands. Raises on the first problem."""
    seen = Counter(r.line_id for r in lines)
    if twice := [line_id for line_id, n in seen.items() if n > 1]:
        raise Invalid(f"line {twice[0]!r} appears more than once in this receipt")
    for r in lines:
        line = po.lines.get(r.line_id)
        if line is None:
            raise LineNotOnPO(f"line {r.line_id!r} is not on PO {po.number}")
        if r.quantity > line.open:
            raise OverReceipt(
                f"line {r.line_id!r} has {line.open} units open; cannot receive {r.quantity}"
            )
        if po.drop_ship and r.location_id is not None:
            raise Invalid(
                f"PO {po.number} is drop-shipped: its units are received without a location"
            )
        if not po.drop_ship and r.location_id is None:
            raise LocationRequired(
                f"line {r.line_id!r}: a location is required (PO ships to a location)"
            )
        check_serials(line, r)
    # Two lines of one product (two charges) cannot name the same unit either.
    units = Counter((po.lines[r.line_id].product_id, s) for r in lines for s in r.serials)
    if twice := sorted(serial for (_, serial), n in units.items() if n > 1):
        raise BadSerials(
            f"serial numbers given on more than one line of this receipt: {', '.join(twice)}"
        )
    if po.status not in RECEIVABLE:
        raise NotReceivable(f"PO {po.number} is {po.status}: nothing is left to receive")


def check_serials(line: Line, r: ReceiptLine) -> None:
    if not line.serialized:
        if r.serials:
            raise BadSerials(f"line {r.line_id!r}: product {line.product_id} is not serialized")
        return
    if len(r.serials) != r.quantity or len(set(r.serials)) != len(r.serials):
        raise BadSerials(
            f"line {r.line_id!r}: a serialized product needs exactly {r.quantity} distinct "
            f"serial numbers, got {len(set(r.serials))} distinct of {len(r.serials)}"
        )
    if any(not s.strip() for s in r.serials):
        raise BadSerials(f"line {r.line_id!r}: serial numbers cannot be blank")


def apply_receipt(po: PurchaseOrder, lines: list[ReceiptLine]) -> POStatus:
    """Receive checked lines in memory and return the PO's new status."""
    for r in lines:
        po.lines[r.line_id].received += r.quantity
    po.status = status_of(po)
    return po.status


def close_line(po: PurchaseOrder, line_id: str) -> int:
    """R9: close a line whose rest the vendor cannot deliver; returns that exact rest."""
    line = po.lines.get(line_id)
    if line is None:
        raise NoSuchLine(f"line {line_id!r} is not on PO {po.number}")
    if po.status not in RECEIVABLE:
        raise NotReceivable(f"PO {po.number} is {po.status}: its lines cannot be closed")
    if line.complete:
        raise NotReceivable(f"line {line_id!r} is complete already (nothing open to close)")
    rest = line.open
    line.closed = True
    po.status = status_of(po)
    return rest


def status_of(po: PurchaseOrder) -> POStatus:
    """Received Full once every line is complete (received or closed); Received Partial
    once anything was received; a PO that received nothing stays Submitted."""
    if all(line.complete for line in po.lines.values()):
        return POStatus.RECEIVED_FULL
    if any(line.received for line in po.lines.values()):
        return POStatus.RECEIVED_PARTIAL
    return POStatus.SUBMITTED
