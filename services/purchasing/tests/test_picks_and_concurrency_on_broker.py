"""Pick instead of order (R7) and concurrent POs (R8) on the real broker: a failed pick
returns its units to the queue; two people ordering the same units at the same moment
never over-commit them; PO numbers stay unique and sequential."""

import asyncio

import pytest

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import eventually

pytestmark = pytest.mark.kafka


async def test_a_failed_pick_returns_its_units_and_a_done_pick_does_not(purchasing) -> None:
    p = purchasing
    shelf = p.location("Shelf A")
    toner = f.product(inventory=True, unit_cost="20.00")
    await p.catalog(shelf)
    charge = await p.need_order(toner, 3, sales_order_id="so-pick")
    await p.until_queued(charge.charge_id, 3)
    pick_url = f"/fulfillment/{charge.charge_id}/pick"

    refusals = [
        (pick_url, {"location_id": "loc-unknown", "quantity": 1}, p.buyer, 422),
        (pick_url, {"location_id": shelf.id, "quantity": 4}, p.buyer, 409),
        (pick_url, {"location_id": shelf.id, "quantity": 0}, p.buyer, 422),
        ("/fulfillment/ch-nope/pick", {"location_id": shelf.id, "quantity": 1}, p.buyer, 404),
        (pick_url, {"location_id": shelf.id, "quantity": 1}, p.auth("purchasing.approve"), 403),
    ]
    for url, body, headers, status in refusals:
        refused = await p.http.post(url, json=body, headers=headers)
        assert refused.status_code == status, (body, refused.text)
    assert await p.queued(charge.charge_id) == 3

    picked = await p.http.post(
        pick_url, json={"location_id": shelf.id, "quantity": 2}, headers=p.buyer
    )
    assert picked.status_code == 202, picked.text
    request_id = picked.json()["request_id"]
    assert await p.queued(charge.charge_id) == 1  # off the queue at once
    [requested] = await p.events("pick.requested", 1)
    assert requested.data == {
        "request_id": request_id,
        "charge_id": charge.charge_id,
        "product_id": toner.id,
        "location_id": shelf.id,
        "quantity": 2,
    }
    assert requested.correlationid == "so-pick"

    failed = ev.PickFailedV1(
        charge_id=charge.charge_id,
        quantity=2,
        reason="not on the shelf",
        pick_request_id=request_id,
    )
    await p.kafka.publish(spec_for_topic("pick.failed"), failed)
    await p.until_queued(charge.charge_id, 3)  # the same item, merged
    forwarded = await p.events("charge.forwarded", 2, charge_id=charge.charge_id)
    assert [e.data["quantity"] for e in forwarded] == [3, 2]
    assert len(await p.queue()) == 1

    again = await p.http.post(
        pick_url, json={"location_id": shelf.id, "quantity": 1}, headers=p.buyer
    )
    assert again.status_code == 202
    done = ev.UnitsPickedV1(
        charge_id=charge.charge_id,
        product_id=toner.id,
        location_id=shelf.id,
        quantity=1,
        pick_request_id=again.json()["request_id"],
    )
    await p.kafka.publish(spec_for_topic("units.picked"), done)
    detail = await eventually(lambda: _units(p, charge.charge_id, "received_or_picked", 1))
    assert detail["quantity"] == 2
    assert detail["units"] == {
        "sent": 3,
        "waiting_approval": 0,
        "queued": 2,
        "on_po": 0,
        "awaiting_pick": 0,
        "received_or_picked": 1,
        "canceled": 0,
    }


async def test_two_simultaneous_pos_over_the_same_units_never_over_commit(purchasing) -> None:
    p = purchasing
    vendor, warehouse = f.vendor(), p.location()
    await p.catalog(vendor, warehouse)
    contested = await p.need_order(f.product(vendor=vendor), 5)
    spare = await p.need_order(f.product(vendor=vendor), 3)
    await p.until_queued(contested.charge_id, 5)
    await p.until_queued(spare.charge_id, 3)

    def body(item_id: str, quantity: int) -> dict:
        return {
            "vendor_id": vendor.id,
            "ship_to": {"kind": "location", "location_id": warehouse.id},
            "items": [{"item_id": item_id, "quantity": quantity}],
        }

    first, second = await asyncio.gather(
        p.http.post("/purchase-orders", json=body(contested.charge_id, 4), headers=p.buyer),
        p.http.post("/purchase-orders", json=body(contested.charge_id, 4), headers=p.buyer),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    loser = first if first.status_code == 409 else second
    assert loser.json()["type"].endswith("conflict")
    assert await p.queued(contested.charge_id) == 1
    pos = (await p.http.get("/purchase-orders", headers=p.buyer)).json()["items"]
    assert [(po["number"], po["lines"][0]["quantity"]) for po in pos] == [("PO-000001", 4)]

    many = await asyncio.gather(
        *[
            p.http.post("/purchase-orders", json=body(spare.charge_id, 1), headers=p.buyer)
            for _ in range(3)
        ]
    )
    assert [r.status_code for r in many] == [201, 201, 201]
    assert sorted(r.json()["number"] for r in many) == ["PO-000002", "PO-000003", "PO-000004"]
    assert await p.queued(spare.charge_id) == 0


async def _units(p, item_id: str, counter: str, expected: int):
    detail = (await p.http.get(f"/fulfillment/{item_id}", headers=p.buyer)).json()
    return detail if detail["units"][counter] == expected else None
