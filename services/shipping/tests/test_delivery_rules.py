"""R13/R14/R15 as pure rules: units and serials taken from an item, one destination per
delivery, one document per destination."""

import pytest

from procure_shipping.domain import (
    BadSerials,
    NotEnoughUnits,
    SeveralDestinations,
    Units,
    by_destination,
    one_destination,
    take,
    without,
)

ITEM = Units("ri-1", "ch-1", "loc-1", 3, ["S1", "S2", "S3"])


def test_no_quantity_takes_every_unit_with_its_serials() -> None:
    assert take(ITEM, None, None) == (3, ["S1", "S2", "S3"])


def test_partial_quantity_lets_the_system_choose_the_oldest_serials() -> None:
    assert take(ITEM, 2, None) == (2, ["S1", "S2"])


def test_chosen_serials_are_taken_and_set_the_quantity() -> None:
    assert take(ITEM, None, ["S3"]) == (1, ["S3"])
    assert take(ITEM, 2, ["S3", "S1"]) == (2, ["S3", "S1"])
    assert without(ITEM.serials, ["S3", "S1"]) == ["S2"]


def test_more_than_ready_is_a_conflict() -> None:
    with pytest.raises(NotEnoughUnits):
        take(ITEM, 4, None)
    with pytest.raises(NotEnoughUnits):
        take(Units("ri-2", "ch-1", None, 0), None, None)


@pytest.mark.parametrize(
    ("quantity", "serials"),
    [(1, ["S9"]), (2, ["S1"]), (2, ["S1", "S1"])],
    ids=["not-held", "count", "duplicate"],
)
def test_serials_must_be_distinct_held_and_one_per_unit(quantity, serials) -> None:
    with pytest.raises(BadSerials):
        take(ITEM, quantity, serials)


def test_units_without_serials_deliver_without_serials() -> None:
    assert take(Units("ri-3", "ch-2", None, 5), 2, None) == (2, [])


def test_a_delivery_goes_to_one_destination() -> None:
    home, office = {"name": "Home", "city": "A"}, {"city": "A", "name": "Office"}
    assert one_destination([home, {"city": "A", "name": "Home"}]) == home
    with pytest.raises(SeveralDestinations):
        one_destination([home, office])


def test_documents_one_per_destination_in_selection_order() -> None:
    home, office = {"name": "Home"}, {"name": "Office"}
    docs = by_destination(
        [
            {"item_id": "a", "destination": office},
            {"item_id": "b", "destination": home},
            {"item_id": "c", "destination": office},
        ]
    )
    assert [(d["destination"], [i["item_id"] for i in d["items"]]) for d in docs] == [
        (office, ["a", "c"]),
        (home, ["b"]),
    ]
