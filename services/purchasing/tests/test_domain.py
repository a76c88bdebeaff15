"""Purchasing's pure rules: approval threshold (R5), queue takes (R8), drop-ship
addresses, PO numbers and the PO status as receiving reports it."""

from decimal import Decimal

import pytest

from procure_devstack import factories as f
from procure_purchasing.domain import (
    MixedDestinations,
    NotEnoughQueued,
    StockLinesNeedLocation,
    drop_ship_address,
    line_open,
    needs_approval,
    po_number,
    reported_status,
    units_to_take,
)

THRESHOLD = Decimal("500.00")


@pytest.mark.parametrize(
    ("cost", "waits"),
    [("499.99", False), ("500.00", True), ("500.01", True), ("0.00", False)],
)
def test_units_at_or_over_the_threshold_wait_for_approval(cost: str, waits: bool) -> None:
    assert needs_approval(Decimal(cost), THRESHOLD) is waits


def test_with_no_threshold_nothing_waits() -> None:
    assert needs_approval(Decimal("1000000.00"), None) is False


def test_a_zero_threshold_makes_everything_wait() -> None:
    assert needs_approval(Decimal("0.00"), Decimal("0")) is True


def test_a_po_line_takes_all_queued_units_unless_told_otherwise() -> None:
    assert units_to_take(None, 4, "i") == 4
    assert units_to_take(3, 4, "i") == 3


@pytest.mark.parametrize(("requested", "queued"), [(5, 4), (None, 0), (1, 0)])
def test_more_units_than_queued_is_a_conflict(requested: int | None, queued: int) -> None:
    with pytest.raises(NotEnoughQueued) as refused:
        units_to_take(requested, queued, "item-1")
    assert refused.value.status == 409
    assert "item-1" in refused.value.detail


def test_location_po_has_no_drop_ship_address() -> None:
    assert drop_ship_address("location", [f.address("A").model_dump()], True) is None


def test_drop_ship_takes_the_charges_shared_destination() -> None:
    site = f.address("Site").model_dump()
    assert drop_ship_address("organization", [site, dict(site)], False) == site


def test_drop_ship_over_two_destinations_is_refused() -> None:
    with pytest.raises(MixedDestinations) as refused:
        drop_ship_address(
            "organization", [f.address("A").model_dump(), f.address("B").model_dump()], False
        )
    assert refused.value.status == 422


def test_stock_lines_only_ship_to_a_location() -> None:
    with pytest.raises(StockLinesNeedLocation):
        drop_ship_address("organization", [f.address().model_dump()], True)


def test_po_numbers_have_six_digits() -> None:
    assert po_number(42) == "PO-000042"
    assert po_number(1) == "PO-000001"


def test_the_po_view_only_moves_forward_whatever_order_receiving_reports_arrive_in() -> None:
    assert reported_status("Submitted", "Received Partial") == "Received Partial"
    assert reported_status("Received Full", "Received Partial") == "Received Full"
    assert reported_status("Received Partial", "Received Full") == "Received Full"


def test_open_quantity_is_what_is_neither_received_nor_closed() -> None:
    assert line_open("Received Partial", 5, 2, 0) == 3
    assert line_open("Received Partial", 5, 2, 3) == 0
    assert line_open("Canceled", 5, 0, 0) == 0
