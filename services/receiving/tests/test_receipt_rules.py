"""R9/R10 as pure rules: open quantities, locations, serials and the PO status."""

import pytest

from procure_contracts.status import POStatus
from procure_receiving.domain import (
    BadSerials,
    Line,
    LineNotOnPO,
    LocationRequired,
    NotReceivable,
    OverReceipt,
    PurchaseOrder,
    ReceiptLine,
    apply_receipt,
    check_receipt,
    close_line,
)
from procure_runtime.errors import Invalid


def po(*, drop_ship: bool = False, serialized: bool = False) -> PurchaseOrder:
    order = PurchaseOrder("po-1", "PO-000001", drop_ship, POStatus.SUBMITTED)
    order.lines["l1"] = Line("l1", "ch-1", "prod-1", serialized, ordered=5)
    order.lines["l2"] = Line("l2", "ch-2", "prod-2", False, ordered=2)
    return order


def test_partial_receipt_leaves_rest_receivable_then_full() -> None:
    order = po()
    first = [ReceiptLine("l1", 2, "loc-1")]
    check_receipt(order, first)
    assert apply_receipt(order, first) == POStatus.RECEIVED_PARTIAL
    assert order.lines["l1"].open == 3
    rest = [ReceiptLine("l1", 3, "loc-1"), ReceiptLine("l2", 2, "loc-1")]
    check_receipt(order, rest)
    assert apply_receipt(order, rest) == POStatus.RECEIVED_FULL


def test_over_receipt_is_a_conflict() -> None:
    with pytest.raises(OverReceipt):
        check_receipt(po(), [ReceiptLine("l2", 3, "loc-1")])


def test_line_of_another_po_is_invalid() -> None:
    with pytest.raises(LineNotOnPO):
        check_receipt(po(), [ReceiptLine("elsewhere", 1, "loc-1")])


def test_location_is_required_unless_drop_ship() -> None:
    with pytest.raises(LocationRequired):
        check_receipt(po(), [ReceiptLine("l1", 1)])
    check_receipt(po(drop_ship=True), [ReceiptLine("l1", 1)])
    with pytest.raises(Invalid):
        check_receipt(po(drop_ship=True), [ReceiptLine("l1", 1, "loc-1")])


@pytest.mark.parametrize(
    "serials", [(), ("A",), ("A", "A"), ("A", "B", "C")], ids=["none", "few", "dup", "many"]
)
def test_serialized_product_needs_exactly_quantity_distinct_serials(serials) -> None:
    with pytest.raises(BadSerials):
        check_receipt(po(serialized=True), [ReceiptLine("l1", 2, "loc-1", serials)])


def test_serials_on_a_product_that_is_not_serialized_are_refused() -> None:
    with pytest.raises(BadSerials):
        check_receipt(po(), [ReceiptLine("l2", 1, "loc-1", ("X",))])


def test_closed_line_counts_as_complete_and_returns_exact_rest() -> None:
    order = po()
    apply_receipt(order, [ReceiptLine("l1", 4, "loc-1"), ReceiptLine("l2", 2, "loc-1")])
    assert close_line(order, "l1") == 1
    assert order.status == POStatus.RECEIVED_FULL
    with pytest.raises(NotReceivable):
        close_line(order, "l1")


def test_closing_a_line_before_any_receipt_keeps_the_po_submitted() -> None:
    order = po()
    assert close_line(order, "l2") == 2
    assert order.status == POStatus.SUBMITTED
    with pytest.raises(OverReceipt):
        check_receipt(order, [ReceiptLine("l2", 1, "loc-1")])


def test_full_po_takes_no_more_receipts() -> None:
    order = po()
    order.status = POStatus.RECEIVED_FULL
    with pytest.raises(NotReceivable):
        check_receipt(order, [ReceiptLine("l1", 1, "loc-1")])


def test_one_serial_on_two_lines_of_a_product_is_invalid() -> None:
    """A 422 naming the serial, not the 409 ("received elsewhere") the database's key
    gave when the second line's insert met the first's."""
    order = po(serialized=True)
    order.lines["l3"] = Line("l3", "ch-3", "prod-1", True, ordered=1)
    with pytest.raises(BadSerials, match="more than one line of this receipt: S1"):
        check_receipt(
            order, [ReceiptLine("l1", 1, "loc-1", ("S1",)), ReceiptLine("l3", 1, "loc-1", ("S1",))]
        )
    order.lines["l4"] = Line("l4", "ch-4", "prod-4", True, ordered=1)  # another product
    check_receipt(
        order, [ReceiptLine("l1", 1, "loc-1", ("S1",)), ReceiptLine("l4", 1, "loc-1", ("S1",))]
    )
