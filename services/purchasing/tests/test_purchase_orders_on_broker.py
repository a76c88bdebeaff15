"""The queue and purchase orders (R6, R8, R9) on the real broker: from `charge.need_order`
through approval to a submitted PO of one vendor, edits and cancel while New, drop-ship
rules, refused requests that change nothing, and receiving's reports."""

import re

import pytest

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import eventually

pytestmark = pytest.mark.kafka
TEAM = ["buyers@example.com"]


async def test_need_order_through_approval_to_a_submitted_po_of_one_vendor(purchasing) -> None:
    p = purchasing
    await p.set_threshold("1000.00", TEAM)
    parts, cables = f.vendor(name="Parts Inc"), f.vendor(name="Cables Ltd")
    warehouse = p.location()
    cable = f.product(unit_cost="100.00", vendor=parts)
    switch = f.product(unit_cost="800.00", vendor=cables)
    toner = f.product(inventory=True, unit_cost="5.25", vendor=parts)
    await p.catalog(parts, cables, warehouse, toner)
    a = await p.need_order(cable, 3, sales_order_id="so-1")  # 300.00: straight to the queue
    b = await p.need_order(switch, 2, sales_order_id="so-2")  # 1600.00: waits
    approval = await p.pending_for(b.charge_id)
    approver = p.auth("purchasing.approve")
    decided = await p.http.post(f"/approvals/{approval['id']}/approve", headers=approver)
    assert decided.status_code == 200

    await p.until_queued(a.charge_id, 3)
    item_b = await p.until_queued(b.charge_id, 2)
    assert item_b == {
        "item_id": b.charge_id,
        "charge_id": b.charge_id,
        "sales_order_id": "so-2",
        "product": switch.model_dump(mode="json"),
        "vendor": cables.model_dump(mode="json"),
        "quantity": 2,
        "extended_cost": "1600.00",
        "organization": b.organization.model_dump(mode="json"),
        "destination": b.destination.model_dump(mode="json"),
    }

    created = await p.http.post(
        "/purchase-orders",
        headers=p.buyer,
        json={
            "vendor_id": parts.id,
            "ship_to": {"kind": "location", "location_id": warehouse.id},
            "items": [{"item_id": a.charge_id}, {"item_id": b.charge_id, "quantity": 1}],
            "stock_lines": [{"product_id": toner.id, "quantity": 10}],
        },
    )
    assert created.status_code == 201, created.text
    po = created.json()
    assert re.fullmatch(r"PO-\d{6}", po["number"])
    assert po["status"] == "New"
    assert po["vendor"] == parts.model_dump(mode="json")
    assert po["ship_to"] == {"kind": "location", "location_id": warehouse.id, "address": None}
    assert [(ln["charge_id"], ln["quantity"], ln["unit_cost"]) for ln in po["lines"]] == [
        (a.charge_id, 3, "100.00"),
        (b.charge_id, 1, "800.00"),
        (None, 10, "5.25"),
    ]
    assert all(ln["received"] == 0 and not ln["closed"] for ln in po["lines"])
    queue = {i["item_id"]: i["quantity"] for i in await p.queue()}
    assert queue == {b.charge_id: 1}  # the rest of b stays on the queue: a split charge

    submitted = await p.http.post(f"/purchase-orders/{po['id']}/submit", headers=p.buyer)
    assert submitted.status_code == 200 and submitted.json()["status"] == "Submitted"
    [event] = await p.events("po.submitted", 1)
    assert event.subject == po["id"]
    assert event.data["po"] == {
        "id": po["id"],
        "number": po["number"],
        "vendor": parts.model_dump(mode="json"),
        "ship_to": {"kind": "location", "location_id": warehouse.id, "address": None},
    }
    # Each line names its charge's sales order: receiving correlates what a line's
    # receipt or close publishes with it (a PO may span sales orders).
    orders = {a.charge_id: "so-1", b.charge_id: "so-2", None: None}
    assert event.data["lines"] == [
        {
            "line_id": ln["line_id"],
            "charge_id": ln["charge_id"],
            "sales_order_id": orders[ln["charge_id"]],
            "product": ln["product"],
            "quantity": ln["quantity"],
            "unit_cost": ln["unit_cost"],
        }
        for ln in po["lines"]
    ]
    assert event.data["submitted_by"]["id"] == "u-buyer"
    url = f"/purchase-orders/{po['id']}"
    for refused in (
        p.http.post(f"{url}/submit", headers=p.buyer),
        p.http.post(f"{url}/cancel", headers=p.buyer),
        p.http.post(f"{url}/lines", json={"item_id": b.charge_id}, headers=p.buyer),
        p.http.delete(f"{url}/lines/{po['lines'][0]['line_id']}", headers=p.buyer),
    ):
        assert (await refused).status_code == 409
    listed = (await p.http.get("/purchase-orders?status=Submitted", headers=p.buyer)).json()
    assert [x["id"] for x in listed["items"]] == [po["id"]]

    # receiving reports: part of a's line arrives, then the rest of it is closed
    line_a = po["lines"][0]
    await p.kafka.publish(
        spec_for_topic("units.received"),
        ev.UnitsReceivedV1(
            receipt_id="rcpt-1",
            po_id=po["id"],
            number=po["number"],
            drop_ship=False,
            po_status="Received Partial",
            received_by=f.person("Rick Receiver"),
            lines=[
                ev.ReceivedLine(
                    line_id=line_a["line_id"],
                    charge_id=a.charge_id,
                    product_id=cable.id,
                    quantity=1,
                    location_id=warehouse.id,
                    open_after=2,
                )
            ],
        ),
    )
    view = await eventually(lambda: _po_where(p, url, lambda v: v["lines"][0]["received"] == 1))
    assert view["status"] == "Received Partial"
    assert (view["lines"][0]["open"], view["lines"][0]["closed"]) == (2, False)
    await p.kafka.publish(
        spec_for_topic("po.line_closed"),
        ev.POLineClosedV1(
            po_id=po["id"],
            number=po["number"],
            line_id=line_a["line_id"],
            charge_id=a.charge_id,
            quantity=2,
            po_status="Received Partial",
            closed_by=f.person("Rick Receiver"),
        ),
    )
    returned = await p.until_queued(a.charge_id, 2)  # the closed rest is back on the queue
    assert returned["extended_cost"] == "200.00"
    forwarded = await p.events("charge.forwarded", 2, charge_id=a.charge_id)
    assert [e.data["quantity"] for e in forwarded] == [3, 2]
    view = (await p.http.get(url, headers=p.buyer)).json()
    assert (view["lines"][0]["open"], view["lines"][0]["closed"]) == (0, True)
    assert [ln["open"] for ln in view["lines"][1:]] == [1, 10]


async def test_edit_and_cancel_a_new_drop_ship_po_returns_its_units(purchasing) -> None:
    p = purchasing
    vendor, warehouse = f.vendor(), p.location()
    widget = f.product(unit_cost="10.00", vendor=vendor)
    paper = f.product(inventory=True, vendor=vendor)
    await p.catalog(vendor, warehouse, paper)
    site, elsewhere = f.address("Customer site"), f.address("Branch office", city="Shelbyville")
    c1 = await p.need_order(widget, 4, sales_order_id="so-3", destination=site)
    c2 = await p.need_order(widget, 2, sales_order_id="so-3", destination=site)
    c3 = await p.need_order(widget, 1, sales_order_id="so-4", destination=elsewhere)
    for charge in (c1, c2, c3):
        await p.until_queued(charge.charge_id, charge.quantity)
    queue_before = await p.queue()
    drop_ship = {"kind": "organization"}
    to_warehouse = {"kind": "location", "location_id": warehouse.id}

    def po(items, ship_to=drop_ship, vendor_id=vendor.id, **more):
        return {"vendor_id": vendor_id, "ship_to": ship_to, "items": items, **more}

    refusals = [
        (po([{"item_id": "ch-never-sent"}]), 422, "unknown-reference"),
        (po([{"item_id": c1.charge_id}], vendor_id="v-unknown"), 422, "unknown-reference"),
        (
            po([{"item_id": c1.charge_id}], {"kind": "location", "location_id": "loc-x"}),
            422,
            "unknown-reference",
        ),
        (po([{"item_id": c1.charge_id, "quantity": 5}]), 409, "conflict"),
        (po([{"item_id": c1.charge_id}, {"item_id": c3.charge_id}]), 422, "invalid"),
        (
            po([{"item_id": c1.charge_id}], stock_lines=[{"product_id": paper.id, "quantity": 1}]),
            422,
            "invalid",
        ),
        (po([], to_warehouse), 422, "invalid"),
        (po([{"item_id": c1.charge_id}], {"kind": "location"}), 422, "invalid"),
    ]
    for body, status, kind in refusals:
        refused = await p.http.post("/purchase-orders", json=body, headers=p.buyer)
        assert refused.status_code == status, (body, refused.text)
        assert refused.json()["type"].endswith(kind)
    body = po([{"item_id": c1.charge_id}])
    approver_only = p.auth("purchasing.approve")
    assert (
        await p.http.post("/purchase-orders", json=body, headers=approver_only)
    ).status_code == 403
    assert await p.queue() == queue_before  # nothing changed
    assert (await p.http.get("/purchase-orders", headers=p.buyer)).json()["items"] == []

    created = await p.http.post(
        "/purchase-orders",
        json=po([{"item_id": c1.charge_id, "quantity": 3}, {"item_id": c2.charge_id}]),
        headers=p.buyer,
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["ship_to"] == {
        "kind": "organization",
        "location_id": None,
        "address": site.model_dump(mode="json"),
    }
    url = f"/purchase-orders/{order['id']}"
    other_destination = await p.http.post(
        f"{url}/lines", json={"item_id": c3.charge_id}, headers=p.buyer
    )
    assert other_destination.status_code == 422
    stock_on_drop_ship = {"product_id": paper.id, "quantity": 1}
    assert (
        await p.http.post(f"{url}/lines", json=stock_on_drop_ship, headers=p.buyer)
    ).status_code == 422
    added = await p.http.post(f"{url}/lines", json={"item_id": c1.charge_id}, headers=p.buyer)
    assert added.status_code == 201
    lines = {ln["charge_id"]: ln for ln in added.json()["lines"]}
    assert {c: ln["quantity"] for c, ln in lines.items()} == {c1.charge_id: 4, c2.charge_id: 2}
    assert {i["item_id"] for i in await p.queue()} == {c3.charge_id}

    removed = await p.http.delete(f"{url}/lines/{lines[c2.charge_id]['line_id']}", headers=p.buyer)
    assert removed.status_code == 200
    assert [ln["charge_id"] for ln in removed.json()["lines"]] == [c1.charge_id]
    assert await p.queued(c2.charge_id) == 2
    assert (await p.http.delete(f"{url}/lines/pol-nope", headers=p.buyer)).status_code == 404

    canceled = await p.http.post(f"{url}/cancel", headers=p.buyer)
    assert canceled.status_code == 200 and canceled.json()["status"] == "Canceled"
    assert {i["item_id"]: i["quantity"] for i in await p.queue()} == {
        c1.charge_id: 4,
        c2.charge_id: 2,
        c3.charge_id: 1,
    }
    [event] = await p.events("po.canceled", 1)
    assert event.data == {"po_id": order["id"], "number": order["number"]}
    forwarded = await p.events("charge.forwarded", 2, charge_id=c1.charge_id)
    assert [e.data["quantity"] for e in forwarded] == [4, 4]  # sent, then returned by cancel
    assert (await p.http.post(f"{url}/cancel", headers=p.buyer)).status_code == 409
    assert (await p.http.post(f"{url}/submit", headers=p.buyer)).status_code == 409
    assert (await p.http.get("/purchase-orders/po-nope", headers=p.buyer)).status_code == 404


async def test_a_drop_ship_po_emptied_of_its_charges_takes_another_destination(
    purchasing,
) -> None:
    """R8: every charge on a drop-ship PO shares one destination, that of the charges on
    it now: once its last charge line is removed, a charge of another destination may be
    added, and the PO's ship-to (its view, `po.submitted`) is that charge's."""
    p = purchasing
    vendor = f.vendor()
    widget = f.product(unit_cost="10.00", vendor=vendor)
    await p.catalog(vendor)
    site, elsewhere = f.address("Customer site"), f.address("Branch office", city="Shelbyville")
    first = await p.need_order(widget, 2, destination=site)
    second = await p.need_order(widget, 1, destination=elsewhere)
    await p.until_queued(first.charge_id, 2)
    await p.until_queued(second.charge_id, 1)
    created = await p.http.post(
        "/purchase-orders",
        json={
            "vendor_id": vendor.id,
            "ship_to": {"kind": "organization"},
            "items": [{"item_id": first.charge_id}],
        },
        headers=p.buyer,
    )
    assert created.status_code == 201, created.text
    url = f"/purchase-orders/{created.json()['id']}"
    [line] = created.json()["lines"]

    removed = await p.http.delete(f"{url}/lines/{line['line_id']}", headers=p.buyer)
    assert removed.status_code == 200, removed.text
    assert removed.json()["lines"] == []
    assert removed.json()["ship_to"]["address"] is None  # no charge left to take it from
    added = await p.http.post(f"{url}/lines", json={"item_id": second.charge_id}, headers=p.buyer)
    assert added.status_code == 201, added.text
    ship_to = {
        "kind": "organization",
        "location_id": None,
        "address": elsewhere.model_dump(mode="json"),
    }
    assert added.json()["ship_to"] == ship_to
    mixed = await p.http.post(f"{url}/lines", json={"item_id": first.charge_id}, headers=p.buyer)
    assert mixed.status_code == 422, mixed.text
    assert await p.queued(first.charge_id) == 2

    submitted = await p.http.post(f"{url}/submit", headers=p.buyer)
    assert submitted.status_code == 200, submitted.text
    [event] = await p.events("po.submitted", 1)
    assert event.data["po"]["ship_to"] == ship_to
    assert [ln["charge_id"] for ln in event.data["lines"]] == [second.charge_id]


async def _po_where(p, url, check):
    view = (await p.http.get(url, headers=p.buyer)).json()
    return view if check(view) else None


async def test_units_of_one_item_share_one_line_however_they_are_added(purchasing) -> None:
    """R8: one line per charge. The same item named twice in a new PO, and added again
    later, adds to its line; positions follow the order asked; the queue gives exactly
    the units taken, and asking for more than is left changes nothing."""
    p = purchasing
    parts = f.vendor(name="Parts Inc")
    warehouse = p.location()
    cable, plug = f.product(unit_cost="10.00", vendor=parts), f.product(vendor=parts)
    await p.catalog(parts, warehouse)
    a = await p.need_order(cable, 5)
    b = await p.need_order(plug, 2)
    await p.until_queued(a.charge_id, 5)
    await p.until_queued(b.charge_id, 2)
    created = await p.http.post(
        "/purchase-orders",
        headers=p.buyer,
        json={
            "vendor_id": parts.id,
            "ship_to": {"kind": "location", "location_id": warehouse.id},
            "items": [
                {"item_id": a.charge_id, "quantity": 1},
                {"item_id": b.charge_id},
                {"item_id": a.charge_id, "quantity": 2},
            ],
        },
    )
    assert created.status_code == 201, created.text
    po = created.json()
    assert [(ln["charge_id"], ln["quantity"]) for ln in po["lines"]] == [
        (a.charge_id, 3),
        (b.charge_id, 2),
    ]
    assert await p.queued(a.charge_id) == 2 and await p.queued(b.charge_id) == 0
    url = f"/purchase-orders/{po['id']}"
    too_many = await p.http.post(
        f"{url}/lines", headers=p.buyer, json={"item_id": a.charge_id, "quantity": 3}
    )
    assert too_many.status_code == 409
    added = await p.http.post(f"{url}/lines", headers=p.buyer, json={"item_id": a.charge_id})
    assert added.status_code == 201, added.text
    view = (await p.http.get(url, headers=p.buyer)).json()
    assert [(ln["charge_id"], ln["quantity"]) for ln in view["lines"]] == [
        (a.charge_id, 5),
        (b.charge_id, 2),
    ]
    assert await p.queued(a.charge_id) == 0


async def test_a_po_created_with_the_clients_id_takes_its_units_once(purchasing) -> None:
    """A buyer's tool that sends the PO's `id` can retry a create whose answer it lost:
    the retry is a 409 and the queue gives the units once. Without a client id every
    create is a new PO."""
    p = purchasing
    parts = f.vendor(name="Parts Inc")
    warehouse = p.location()
    cable = f.product(unit_cost="10.00", vendor=parts)
    await p.catalog(parts, warehouse)
    a = await p.need_order(cable, 5)
    await p.until_queued(a.charge_id, 5)
    po_id = f"po-client-{a.charge_id}"
    body = {
        "id": po_id,
        "vendor_id": parts.id,
        "ship_to": {"kind": "location", "location_id": warehouse.id},
        "items": [{"item_id": a.charge_id, "quantity": 2}],
    }
    created = await p.http.post("/purchase-orders", headers=p.buyer, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["id"] == po_id
    retried = await p.http.post("/purchase-orders", headers=p.buyer, json=body)
    assert retried.status_code == 409, retried.text
    assert retried.headers["content-type"].startswith("application/problem+json")
    assert retried.json()["detail"] == f"PO {po_id!r} exists already"
    assert await p.queued(a.charge_id) == 3
    view = (await p.http.get(f"/purchase-orders/{po_id}", headers=p.buyer)).json()
    assert [(ln["charge_id"], ln["quantity"]) for ln in view["lines"]] == [(a.charge_id, 2)]

    del body["id"]
    again = await p.http.post("/purchase-orders", headers=p.buyer, json=body)
    assert again.status_code == 201 and again.json()["id"] != po_id
    assert await p.queued(a.charge_id) == 1
