"""Stock over HTTP: availability at every location, adjustments with serials,
reservations for quote items (R2, also under concurrency) and transfers; every refused
request answers the spec's 4xx and changes nothing."""

import asyncio

import pytest

pytestmark = pytest.mark.kafka


def stock(on_hand: int = 0, reserved: int = 0, picked: int = 0) -> dict[str, int]:
    available = on_hand - reserved - picked
    return {"on_hand": on_hand, "reserved": reserved, "picked": picked, "available": available}


async def test_availability_answers_every_location_with_zeros(inventory) -> None:
    north = await inventory.location("North")
    south = await inventory.location("South")
    product = await inventory.product()
    adjusted = await inventory.adjust(product["id"], north, 7)
    assert adjusted["cause"] == "adjustment"
    assert adjusted["to_location_id"] == north
    assert adjusted["stock"] == stock(7)

    answer = await inventory.get("/availability", product_id=product["id"])
    assert answer["next_cursor"] is None
    assert sorted(answer["items"], key=lambda i: i["location_name"]) == [
        {"location_id": north, "location_name": "North", **stock(7)},
        {"location_id": south, "location_name": "South", **stock(0)},
    ]
    unknown = await inventory.http.get(
        "/availability", params={"product_id": "nope"}, headers=inventory.auth("sales")
    )
    assert unknown.status_code == 422
    assert unknown.json()["type"].endswith("unknown-reference")


async def test_reservation_holds_units_until_deleted(inventory) -> None:
    loc = await inventory.location()
    product = await inventory.product()
    await inventory.adjust(product["id"], loc, 5)

    created = await inventory.reserve(product["id"], loc, 3, opportunity_id="opp-7")
    assert created.status_code == 201, created.text
    reservation = created.json()
    assert reservation["status"] == "active"
    assert reservation["opportunity_id"] == "opp-7"
    assert await inventory.level(product["id"], loc) == stock(5, reserved=3)
    listed = await inventory.get("/reservations", opportunity_id="opp-7")
    assert [r["id"] for r in listed["items"]] == [reservation["id"]]

    deleted = await inventory.http.delete(
        f"/reservations/{reservation['id']}", headers=inventory.auth("sales")
    )
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "released"
    assert await inventory.level(product["id"], loc) == stock(5)
    again = await inventory.http.delete(
        f"/reservations/{reservation['id']}", headers=inventory.auth("sales")
    )
    assert again.status_code == 409

    [reserved] = await inventory.kafka.read_events("stock.reserved", 1)
    [released] = await inventory.kafka.read_events("stock.released", 1, settle=1.0)
    expected = {
        "reservation_id": reservation["id"],
        "opportunity_id": "opp-7",
        "quote_item_id": reservation["quote_item_id"],
        "product_id": product["id"],
        "location_id": loc,
        "quantity": 3,
    }
    assert reserved.data == expected
    assert released.data == expected
    assert reserved.subject == reservation["quote_item_id"]  # keyed by quote item


async def test_refused_reservations_change_nothing(inventory) -> None:
    loc = await inventory.location()
    product = await inventory.product()
    service = await inventory.product(is_inventory=False)
    not_procured = await inventory.product(subject_to_procurement=False)
    await inventory.adjust(product["id"], loc, 2)

    beyond = await inventory.reserve(product["id"], loc, 3)
    assert beyond.status_code == 409
    assert beyond.json()["available"] == 2
    assert "only 2 available" in beyond.json()["detail"]
    for other in (service, not_procured):
        refused = await inventory.reserve(other["id"], loc, 1)
        assert refused.status_code == 422, refused.text
    unknown = await inventory.reserve("no-such-product", loc, 1)
    assert unknown.json()["type"].endswith("unknown-reference")
    assert (await inventory.reserve(product["id"], "no-such-location", 1)).status_code == 422
    for quantity in (0, -1):
        assert (await inventory.reserve(product["id"], loc, quantity)).status_code == 422
    body = {
        "opportunity_id": "o",
        "quote_item_id": "q",
        "product_id": product["id"],
        "location_id": loc,
        "quantity": 1,
    }
    wrong_role = await inventory.http.post(
        "/reservations", json=body, headers=inventory.auth("inventory")
    )
    assert wrong_role.status_code == 403
    missing = await inventory.http.delete("/reservations/nope", headers=inventory.auth("sales"))
    assert missing.status_code == 404

    assert await inventory.level(product["id"], loc) == stock(2)
    assert (await inventory.get("/reservations"))["items"] == []
    assert await inventory.kafka.read_events("stock.reserved", 1, timeout=2.0) == []


async def test_concurrent_reservations_of_the_last_units_one_wins(inventory) -> None:
    loc = await inventory.location()
    product = await inventory.product()
    await inventory.adjust(product["id"], loc, 3)
    await inventory.reserve(product["id"], loc, 1)

    first, second = await asyncio.gather(
        inventory.reserve(product["id"], loc, 2, opportunity_id="opp-a"),
        inventory.reserve(product["id"], loc, 2, opportunity_id="opp-b"),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    assert await inventory.level(product["id"], loc) == stock(3, reserved=3)
    events = await inventory.kafka.read_events("stock.reserved", 2, settle=1.0)
    assert len(events) == 2


async def test_adjustments_keep_on_hand_at_or_above_reserved_plus_picked(inventory) -> None:
    loc = await inventory.location()
    product = await inventory.product()
    await inventory.adjust(product["id"], loc, 4)
    await inventory.reserve(product["id"], loc, 3)
    body = {"product_id": product["id"], "location_id": loc, "reason": "damaged"}
    keeper = inventory.auth("inventory")

    below = await inventory.http.post(
        "/stock/adjustments", json={**body, "quantity": -2}, headers=keeper
    )
    assert below.status_code == 409
    assert "below" in below.json()["detail"]
    zero = await inventory.http.post(
        "/stock/adjustments", json={**body, "quantity": 0}, headers=keeper
    )
    assert zero.status_code == 422
    no_reason = await inventory.http.post(
        "/stock/adjustments", json={**body, "quantity": 1, "reason": ""}, headers=keeper
    )
    assert no_reason.status_code == 422
    sales = await inventory.http.post(
        "/stock/adjustments", json={**body, "quantity": 1}, headers=inventory.auth("sales")
    )
    assert sales.status_code == 403
    assert (
        await inventory.http.post("/stock/adjustments", json={**body, "quantity": 1})
    ).status_code == 401
    elsewhere = await inventory.http.post(
        "/stock/adjustments", json={**body, "location_id": "nope", "quantity": 1}, headers=keeper
    )
    assert elsewhere.json()["type"].endswith("unknown-reference")

    assert await inventory.level(product["id"], loc) == stock(4, reserved=3)
    down = await inventory.http.post(
        "/stock/adjustments", json={**body, "quantity": -1}, headers=keeper
    )
    assert down.status_code == 201
    assert down.json()["stock"] == stock(3, reserved=3)
    causes = [(t["cause"], t["quantity"], t["reason"]) for t in await inventory.transfers()]
    assert causes == [("adjustment", 4, "cycle count"), ("adjustment", 1, "damaged")]


async def test_serialized_adjustments_need_exactly_one_serial_per_unit(inventory) -> None:
    loc = await inventory.location()
    product = await inventory.product(serialized=True)
    plain = await inventory.product()
    keeper = inventory.auth("inventory")
    body = {"product_id": product["id"], "location_id": loc, "reason": "count"}

    for quantity, numbers in [(2, ["S1"]), (2, []), (2, ["S1", "S1"]), (-1, [])]:
        refused = await inventory.http.post(
            "/stock/adjustments",
            json={**body, "quantity": quantity, "serials": numbers},
            headers=keeper,
        )
        assert refused.status_code in (409, 422), refused.text
        assert refused.json()["detail"]
    not_serialized = await inventory.http.post(
        "/stock/adjustments",
        json={**body, "product_id": plain["id"], "quantity": 1, "serials": ["X"]},
        headers=keeper,
    )
    assert not_serialized.status_code == 422
    assert await inventory.level(product["id"], loc) == stock(0)

    await inventory.adjust(product["id"], loc, 2, ["S1", "S2"])
    duplicate = await inventory.http.post(
        "/stock/adjustments", json={**body, "quantity": 1, "serials": ["S2"]}, headers=keeper
    )
    assert duplicate.status_code == 409
    unknown_serial = await inventory.http.post(
        "/stock/adjustments", json={**body, "quantity": -1, "serials": ["S9"]}, headers=keeper
    )
    assert unknown_serial.status_code == 409
    assert await inventory.level(product["id"], loc) == stock(2)

    out = await inventory.adjust(product["id"], loc, -1, ["S1"])
    assert out["serials"] == ["S1"]
    assert out["stock"] == stock(1)


async def test_transfer_moves_available_units_and_their_serials(inventory) -> None:
    north = await inventory.location("North")
    south = await inventory.location("South")
    product = await inventory.product(serialized=True)
    await inventory.adjust(product["id"], north, 3, ["A", "B", "C"])
    await inventory.reserve(product["id"], north, 1)
    keeper = inventory.auth("inventory")
    body = {"product_id": product["id"], "from_location_id": north, "to_location_id": south}

    for bad, code in [
        ({"quantity": 3, "serials": ["A", "B", "C"]}, 409),  # one is reserved
        ({"quantity": 1, "serials": ["A"], "to_location_id": north}, 422),
        ({"quantity": 0, "serials": []}, 422),
        ({"quantity": 2, "serials": ["A"]}, 422),
        ({"quantity": 1, "serials": ["Z"]}, 409),
        ({"quantity": 1, "serials": ["A"], "to_location_id": "nope"}, 422),
    ]:
        refused = await inventory.http.post("/transfers", json={**body, **bad}, headers=keeper)
        assert refused.status_code == code, (bad, refused.text)
    assert await inventory.level(product["id"], north) == stock(3, reserved=1)
    assert await inventory.level(product["id"], south) == stock(0)

    moved = await inventory.http.post(
        "/transfers", json={**body, "quantity": 2, "serials": ["A", "C"]}, headers=keeper
    )
    assert moved.status_code == 201, moved.text
    assert moved.json()["cause"] == "transfer"
    assert await inventory.level(product["id"], north) == stock(1, reserved=1)
    assert await inventory.level(product["id"], south) == stock(2)
    reverse = {"from_location_id": south, "to_location_id": north, "quantity": 1}
    back = await inventory.http.post(
        "/transfers", json={**body, **reverse, "serials": ["B"]}, headers=keeper
    )
    assert back.status_code == 409  # B never left North
    trail = await inventory.transfers(product_id=product["id"])
    assert [(t["cause"], t["from_location_id"], t["to_location_id"]) for t in trail] == [
        ("adjustment", None, north),
        ("transfer", north, south),
    ]
    assert trail[1]["serials"] == ["A", "C"]
