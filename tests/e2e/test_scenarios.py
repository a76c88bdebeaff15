"""Scenarios 2-6 on the real stack: drop-ship, canceling a posted delivery, another system
driving the flow through the topics, a rejected approval, and picking from the queue."""

import pytest

from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Product
from procure_devstack import factories as f
from procure_devstack.demo import ApiError, address
from procure_devstack.stackclient import StackClient, units
from procure_devstack.testing import eventually

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]


async def test_drop_ship_receipt_delivers_at_once_without_touching_stock(
    client: StackClient,
) -> None:
    c = client
    await c.settings()
    vendor, _ = await c.catalog()
    product = await c.product(vendor["id"], inventory=False, procurement=True, cost="100.00")
    charge_id = await c.direct_charge(product["id"], 2)
    item = await c.queue_item(charge_id, 2)
    po = await c.order(vendor["id"], {"kind": "organization"}, item["item_id"])
    await c.expect_units(charge_id, units(on_order=2))
    page = await c.on_receiving_page(po["id"])
    assert page["drop_ship"] is True
    [line] = po["lines"]

    receipt = await c.post(
        c.cast.receiver,
        "receiving",
        f"/purchase-orders/{po['id']}/receipts",
        {"lines": [{"line_id": line["line_id"], "quantity": 2}]},
    )

    assert receipt["po_status"] == "Received Full"
    await c.expect_units(charge_id, units(delivered=2))
    [delivered] = await c.events(
        "shipment.delivered", 1, lambda e: e.data["items"][0]["charge_id"] == charge_id
    )
    assert delivered.data["drop_ship"] is True and delivered.data["po_number"] == po["number"]
    [shipped] = delivered.data["items"]
    assert (shipped["quantity"], shipped["location_id"], shipped["transfer_id"]) == (2, None, None)
    tab = await c.tab_item("delivered", charge_id, 2)
    assert tab["location_id"] is None
    stock = await c.get("inventory", "/availability", product_id=product["id"])
    assert all(row["on_hand"] == row["picked"] == 0 for row in stock["items"])
    moves = await c.get("inventory", "/transfers", product_id=product["id"])
    assert moves["items"] == [], "drop-ship never touches stock"
    with pytest.raises(ApiError) as refused:
        await c.post(c.cast.shipper, "shipping", f"/deliveries/{tab['delivery_id']}/cancel", {})
    assert refused.value.status == 409
    [received] = await c.events("units.received", 1, lambda e: e.data["po_id"] == po["id"])
    stakeholders = {c.cast.sales.person.email, c.cast.person("Rita Resource").email}
    await c.expect_mail(delivered, "delivered", stakeholders)
    await c.expect_mail(received, "received", [])  # drop-ship: the delivery mail says it all
    await c.expect_units(charge_id, units(delivered=2))


async def test_canceling_a_posted_delivery_restores_stock_and_keeps_the_post(
    client: StackClient,
) -> None:
    c = client
    vendor, location = await c.catalog()
    product = await c.product(vendor["id"], inventory=True, procurement=True, cost="100.00")
    await c.adjust(product["id"], location["id"], 2)
    so_id, charge_id = await _win_reserved(c, product["id"], location["id"], 2)
    await c.expect_units(charge_id, units(ready=2))
    ready = await c.tab_item("ready", charge_id, 2)
    delivery = await c.post(
        c.cast.shipper, "shipping", "/deliveries", {"items": [{"item_id": ready["item_id"]}]}
    )
    await c.expect_units(charge_id, units(delivered=2))
    await c.expect_stock(product["id"], location["id"], on_hand=0, picked=0, available=0)
    await c.post(c.cast.biller, "quotes", f"/charges/{charge_id}/post")

    await c.post(
        c.cast.shipper,
        "shipping",
        f"/deliveries/{delivery['id']}/cancel",
        {"reason": "customer refused"},
    )

    view = await c.expect_units(charge_id, units(ready=2))
    assert (view["posted"], view["delivery_canceled_after_post"]) == (True, True)
    await c.expect_stock(product["id"], location["id"], on_hand=2, picked=2, available=0)
    posted = await c.get(
        "quotes", "/billing/posted", c.cast.biller, delivery_canceled_after_post="true", limit=1000
    )
    assert charge_id in [ch["id"] for ch in posted["items"]]
    [canceled] = await c.events("shipment.canceled", 1, lambda e: e.subject == delivery["id"])
    [item] = canceled.data["items"]
    assert item["original_transfer_id"] == delivery["items"][0]["transfer_id"]
    assert item["transfer_id"] and item["quantity"] == 2
    so = await c.get("quotes", f"/sales-orders/{so_id}")
    assert (so["status"], so["can_fulfill"]) == ("In Progress", False)
    await c.tab_item("ready", charge_id, 2)
    opp_owner = c.cast.person("Olive Sales").email
    await c.expect_mail(
        canceled, "delivery_canceled", {opp_owner, c.cast.person("Rita Resource").email}
    )
    with pytest.raises(ApiError) as twice:
        await c.post(c.cast.biller, "quotes", f"/charges/{charge_id}/post")
    assert twice.value.status == 409


async def _win_reserved(
    c: StackClient, product_id: str, location_id: str, quantity: int
) -> tuple[str, str]:
    """An opportunity with one quote item, all of it reserved, won: (sales order, charge)."""
    org = {"id": f"org-{c.cast.run}", "name": "Acme", "address": address("Acme", "Springfield")}
    opp = await c.post(
        c.cast.sales,
        "quotes",
        "/opportunities",
        {"name": "Deal", "owner": c.cast.sales.person.model_dump(), "organization": org},
    )
    item = await c.post(
        c.cast.sales,
        "quotes",
        f"/opportunities/{opp['id']}/items",
        {"product_id": product_id, "quantity": quantity},
    )
    await c.post(
        c.cast.sales,
        "inventory",
        "/reservations",
        {
            "opportunity_id": opp["id"],
            "quote_item_id": item["id"],
            "product_id": product_id,
            "location_id": location_id,
            "quantity": quantity,
        },
    )

    async def reserved() -> bool:
        seen = await c.get("quotes", f"/opportunities/{opp['id']}")
        return bool(seen["items"][0]["reservations"])

    await eventually(reserved, timeout=30)
    won = await c.post(
        c.cast.sales,
        "quotes",
        f"/opportunities/{opp['id']}/win",
        {
            "sales_order": {"ship_to": address("Acme HQ", "Springfield")},
            "items": [{"quote_item_id": item["id"], "parent": c.ticket()}],
        },
    )
    return won["sales_order_id"], won["charge_ids"][0]


def _product(view: dict) -> Product:
    return Product.model_validate({k: view[k] for k in Product.model_fields if k in view})


async def test_another_system_publishing_won_and_charge_created_drives_the_flow(
    client: StackClient,
) -> None:
    c = client
    await c.settings()
    vendor, location = await c.catalog()
    bought = await c.product(vendor["id"], inventory=False, procurement=True, cost="100.00")
    service = await c.product(None, inventory=False, procurement=False, cost="0.00")
    bought_p, service_p = _product(bought), _product(service)
    won = f.opportunity_won(f.charge(bought_p, 2), f.charge(service_p, 1))
    direct = f.charge_created(f.charge(service_p, 1))
    so_id = won.sales_order.id
    bought_id, service_id = (ch.id for ch in won.charges)
    direct_id = direct.charge.id

    await c.kafka.publish(spec_for_topic("opportunity.won"), won, correlationid=so_id)
    await c.kafka.publish(spec_for_topic("charge.created"), direct)

    await c.expect_units(bought_id, units(need=2))
    await c.expect_units(service_id, units(ready=1))
    await c.expect_units(direct_id, units(ready=1))
    item = await c.queue_item(bought_id, 2)
    po = await c.order(
        vendor["id"], {"kind": "location", "location_id": location["id"]}, item["item_id"]
    )
    await c.on_receiving_page(po["id"])
    await c.post(
        c.cast.receiver,
        "receiving",
        f"/purchase-orders/{po['id']}/receipts",
        {
            "lines": [
                {"line_id": po["lines"][0]["line_id"], "quantity": 2, "location_id": location["id"]}
            ]
        },
    )
    for charge_id, quantity in ((bought_id, 2), (service_id, 1), (direct_id, 1)):
        ready = await c.tab_item("ready", charge_id, quantity)
        await c.post(
            c.cast.shipper, "shipping", "/deliveries", {"items": [{"item_id": ready["item_id"]}]}
        )
        await c.expect_units(charge_id, units(delivered=quantity))

    async def can_fulfill() -> bool:
        return (await c.get("quotes", f"/sales-orders/{so_id}"))["can_fulfill"]

    await eventually(can_fulfill, timeout=30)
    await c.events("salesorder.ready_to_fulfill", 1, lambda e: e.data["sales_order_id"] == so_id)
    so = await c.api.call(
        c.cast.sales, "PATCH", "quotes", f"/sales-orders/{so_id}", json={"status": "Fulfilled"}
    )
    assert so["status"] == "Fulfilled"
    assert {ch["id"] for ch in so["charges"]} == {bought_id, service_id}


async def test_rejected_approval_cancels_units_and_tells_stakeholders_the_note(
    client: StackClient,
) -> None:
    c = client
    await c.settings()
    vendor, _ = await c.catalog()
    product = await c.product(vendor["id"], inventory=False, procurement=True, cost="600.00")
    charge_id = await c.direct_charge(product["id"], 2)
    await c.expect_units(charge_id, units(waiting=2))
    page = await c.get("purchasing", "/approvals", status="Pending", charge_id=charge_id)
    [approval] = page["items"]
    assert approval["extended_cost"] == "1200.00"
    with pytest.raises(ApiError) as no_note:
        await c.post(c.cast.approver, "purchasing", f"/approvals/{approval['id']}/reject", {})
    assert no_note.value.status == 422

    note = "Over budget this quarter"
    decided = await c.post(
        c.cast.approver, "purchasing", f"/approvals/{approval['id']}/reject", {"note": note}
    )

    assert (decided["status"], decided["note"]) == ("Rejected", note)
    await c.expect_units(charge_id, units(canceled=2))
    [event] = await c.charge_events("approval.decided", [charge_id], 1)
    assert (event.data["approved"], event.data["note"]) == (False, note)
    stakeholders = {c.cast.sales.person.email, c.cast.person("Rita Resource").email}
    mails = await c.expect_mail(event, "approval_decided", stakeholders)
    assert all(note in m.body() for m in mails)
    await c.charge_events("charge.forwarded", [charge_id], 0)
    await c.not_queued(charge_id)
    with pytest.raises(ApiError) as again:
        await c.post(c.cast.approver, "purchasing", f"/approvals/{approval['id']}/approve")
    assert again.value.status == 409


async def test_pick_from_the_queue_readies_units_and_a_failed_pick_requeues_them(
    client: StackClient,
) -> None:
    c = client
    await c.settings()
    vendor, location = await c.catalog()
    product = await c.product(vendor["id"], inventory=True, procurement=True, cost="100.00")
    await c.adjust(product["id"], location["id"], 3)
    charge_id = await c.direct_charge(product["id"], 2)
    item = await c.queue_item(charge_id, 2)

    await c.post(
        c.cast.buyer,
        "purchasing",
        f"/fulfillment/{item['item_id']}/pick",
        {"location_id": location["id"], "quantity": 2},
    )

    await c.not_queued(charge_id)  # at once, before inventory answers
    await c.expect_units(charge_id, units(ready=2))
    await c.expect_stock(product["id"], location["id"], on_hand=3, picked=2, available=1)
    ready = await c.tab_item("ready", charge_id, 2)
    assert ready["location_id"] == location["id"]
    [picked] = await c.charge_events("units.picked", [charge_id], 1)
    assert picked.data["quantity"] == 2

    # The stock goes before the pick reaches inventory: all its units return to the queue.
    gone = await c.product(vendor["id"], inventory=True, procurement=True, cost="100.00")
    await c.adjust(gone["id"], location["id"], 2)
    other = await c.direct_charge(gone["id"], 2)
    queued = await c.queue_item(other, 2)
    await c.adjust(gone["id"], location["id"], -2)
    await c.post(
        c.cast.buyer,
        "purchasing",
        f"/fulfillment/{queued['item_id']}/pick",
        {"location_id": location["id"], "quantity": 2},
    )

    [failed] = await c.charge_events("pick.failed", [other], 1)
    assert failed.data["quantity"] == 2
    back = await c.queue_item(other, 2)
    assert back["item_id"] == queued["item_id"], "the queue item keeps its id"
    await c.expect_units(other, units(need=2))
    await c.charge_events("charge.forwarded", [other], 2)  # joined, then rejoined
    await c.expect_stock(gone["id"], location["id"], on_hand=0, picked=0)
