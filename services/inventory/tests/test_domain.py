"""Inventory's pure rules: R1 arithmetic, what may be reserved, serial counts, and how
a won charge's listed reservations become picks, and the order deliveries apply in."""

from types import SimpleNamespace

import pytest

from procure_inventory.domain import (
    BelowCommitted,
    Claim,
    Conversion,
    InsufficientStock,
    NotReservable,
    OpportunityClosed,
    OutOfOrder,
    ReservationsExceedQuantity,
    SameLocation,
    SerialsMismatch,
    StockLevel,
    check_adjustment,
    check_available,
    check_open,
    check_reservable,
    check_serials,
    check_transfer,
    check_won_charge,
    convert,
    in_seq_order,
    per_reservation,
    why_not_usable,
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


def test_a_closed_opportunity_takes_no_new_reservation() -> None:
    check_open("opp-1", None)
    with pytest.raises(OpportunityClosed) as refused:
        check_open("opp-1", "won")
    assert refused.value.status == 409


def test_a_reservation_listed_twice_on_a_charge_is_claimed_for_both_listings() -> None:
    listed = [("r-1", 2), ("r-2", 1), ("r-1", 2)]
    assert per_reservation(listed) == [("r-1", 4), ("r-2", 1)]


def _reservation(**kw: str) -> SimpleNamespace:
    row = {"opportunity_id": "opp-1", "status": "active", "product_id": "p-1"}
    return SimpleNamespace(**{**row, "quote_item_id": "qi-1", **kw})


def test_a_won_charge_takes_its_opportunitys_active_reservations_of_its_product() -> None:
    claim = Claim("ch-1", "p-1", "qi-1", "opp-1")
    assert why_not_usable(_reservation(), claim) is None
    assert why_not_usable(_reservation(), Claim("ch-1", "p-1", None, "opp-1")) is None
    refusals = {
        "does not exist": None,
        "belongs to opportunity opp-2": _reservation(opportunity_id="opp-2"),
        "was released already": _reservation(status="released"),
        "is of product p-2": _reservation(product_id="p-2"),
        "is for quote item qi-2": _reservation(quote_item_id="qi-2"),
    }
    for reason, row in refusals.items():
        assert reason in str(why_not_usable(row, claim))


def test_a_direct_charge_takes_any_opportunitys_reservation_of_its_product() -> None:
    direct = Claim("ch-1", "p-1", None, None)
    assert why_not_usable(_reservation(opportunity_id="opp-2"), direct) is None
    assert "product" in str(why_not_usable(_reservation(product_id="p-2"), direct))
    assert "picked" in str(why_not_usable(_reservation(status="picked"), direct))
    with_item = Claim("ch-1", "p-1", "qi-1", None)
    assert "quote item" in str(why_not_usable(_reservation(quote_item_id="qi-2"), with_item))


def test_a_charges_deliveries_apply_in_seq_order_without_a_gap() -> None:
    last: dict[str, int | None] = {"ch-1": 2}
    assert in_seq_order(last, [("ch-1", 3), ("ch-2", 1)]) == [True, True]
    assert last == {"ch-1": 3, "ch-2": 1}
    # two items of one charge in one event, listed in any order
    assert in_seq_order(last, [("ch-1", 5), ("ch-1", 4)]) == [True, True]
    assert last["ch-1"] == 5


def test_a_seq_applied_already_is_not_new() -> None:
    last: dict[str, int | None] = {"ch-1": 3}
    assert in_seq_order(last, [("ch-1", 2), ("ch-1", 3), ("ch-1", 4)]) == [False, False, True]
    assert last == {"ch-1": 4}


def test_a_gap_parks_the_whole_event_and_changes_nothing() -> None:
    last: dict[str, int | None] = {"ch-1": 1}
    with pytest.raises(OutOfOrder, match="seq 3 waits for seq 2"):
        in_seq_order(last, [("ch-2", 1), ("ch-1", 3)])
    assert last == {"ch-1": 1}  # ch-2's seq 1 is not taken either


def test_a_charge_delivered_before_seqs_were_followed_applies_as_it_comes() -> None:
    last: dict[str, int | None] = {"ch-old": None}
    assert in_seq_order(last, [("ch-old", 7), ("ch-old", 2)]) == [True, True]
    assert last == {"ch-old": None}
