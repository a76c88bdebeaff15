"""R3/R4 routing as a pure rule."""

from decimal import Decimal

import pytest

from procure_quotes.domain import ReservationsExceedQuantity, Routing, extended_cost, route_charge


def test_not_subject_to_procurement_is_all_ready_and_ignores_reservations() -> None:
    assert route_charge(4, False, [2]) == Routing(ready=4, awaiting_pick=0, to_procurement=0)


def test_reserved_units_await_their_pick_and_the_rest_goes_to_procurement() -> None:
    assert route_charge(5, True, [2, 1]) == Routing(ready=0, awaiting_pick=3, to_procurement=2)


def test_fully_reserved_charge_sends_nothing_to_procurement() -> None:
    assert route_charge(3, True, [3]) == Routing(ready=0, awaiting_pick=3, to_procurement=0)


def test_reservations_over_the_quantity_are_refused() -> None:
    with pytest.raises(ReservationsExceedQuantity):
        route_charge(2, True, [2, 1])


def test_extended_cost_is_units_times_unit_cost() -> None:
    assert extended_cost(3, Decimal("33.335")) == Decimal("100.00")
