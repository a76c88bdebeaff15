"""Inventory's pure rules: R1 arithmetic, what may be reserved, serial counts, and how
a won charge's listed reservations become picks."""

import pytest

from procure_inventory.domain import (
    BelowCommitted,
    Conversion,
    InsufficientStock,
    NotReservable,
    ReservationsExceedQuantity,
    SameLocation,
    SerialsMismatch,
    StockLevel,
    check_adjustment,
    check_available,
    check_reservable,
    check_serials,
    check_transfer,
    check_won_charge,
    convert,
)


def test_available_is_on_hand_less_reserved_and_picked() -> None:
    assert StockLevel(on_hand=10, reserved=3, picked=2).available == 5


def test_request_beyond_available_is_a_conflict_naming_what_is_available() -> None:
    with pytest.raises(InsufficientStock) as refused:
        check_available(StockLevel(on_hand=5, reserved=2, picked=1), 3, "reserve")
    assert refused.value.status == 409
    assert refused.value.extra == {"available": 2}
    check_available(StockLevel(on_hand=5, reserved=2, picked=1), 2, "reserve")


def test_adjustment_may_not_take_on_hand_below_reserved_plus_picked() -> None:
    check_adjustment(StockLevel(on_hand=5, reserved=2, picked=1), -2)
    with pytest.raises(BelowCommitted):
        check_adjustment(StockLevel(on_hand=5, reserved=2, picked=1), -3)


def test_only_inventory_products_subject_to_procurement_are_reservable() -> None:
    check_reservable(True, True)
    for flags in [(False, True), (True, False), (False, False)]:
        with pytest.raises(NotReservable) as refused:
            check_reservable(*flags)
        assert refused.value.status == 422


def test_serialized_products_name_exactly_as_many_distinct_serials_as_units() -> None:
    check_serials(True, -2, ["S1", "S2"])
    check_serials(False, 4, [])
    check_serials(None, 2, [])  # a product only known from a receipt
    for serialized, quantity, numbers in [
        (True, 2, ["S1"]),
        (True, 2, ["S1", "S1"]),
        (True, 1, []),
        (False, 1, ["S1"]),
        (None, 2, ["S1"]),
        (True, 1, [" "]),
    ]:
        with pytest.raises(SerialsMismatch):
            check_serials(serialized, quantity, numbers)


def test_transfer_needs_a_different_destination() -> None:
    check_transfer("loc-a", "loc-b")
    with pytest.raises(SameLocation):
        check_transfer("loc-a", "loc-a")


def test_listed_reservation_is_picked_in_full() -> None:
    assert convert(2, 2) == Conversion(pick=2, shortfall=0, release=0)


def test_missing_reservation_fails_the_whole_listed_quantity() -> None:
    assert convert(3, None) == Conversion(pick=0, shortfall=3, release=0)


def test_reservation_holding_less_fails_the_shortfall() -> None:
    assert convert(3, 1) == Conversion(pick=1, shortfall=2, release=0)


def test_reservation_holding_more_releases_the_excess() -> None:
    assert convert(2, 5) == Conversion(pick=2, shortfall=0, release=3)


def test_listed_reservations_may_not_exceed_the_charge_quantity() -> None:
    check_won_charge(3, [1, 2])
    with pytest.raises(ReservationsExceedQuantity):
        check_won_charge(3, [2, 2])
