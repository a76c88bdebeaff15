"""Fault: each service in turn is SIGKILLed while the work it consumes is in flight, then
started again, as charges go through approval, PO, receipt and delivery. The end state
is exact: every unit Delivered/Shipped, the PO Received
Full, stock back to zero, one email per triggering event and recipient, no dead letter.
`PROCURE_FAULT_CHARGES` sets the stream's size (`make faults` runs 200)."""

import os
from collections import Counter

import pytest

from procure_devstack.stackclient import StackClient, units
from procure_devstack.testing import eventually

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.faults(checks=("lost", "duplicates", "emails", "dead_letters")),
]
CHARGES = int(os.environ.get("PROCURE_FAULT_CHARGES", "12"))


async def test_sigkill_each_service_mid_stream_loses_and_doubles_nothing(
    client: StackClient, stack
) -> None:
    c = client
    await c.settings(threshold="20.00")  # every charge (2 x 10.00) waits for approval
    vendor, location = await c.catalog()
    product = await c.product(vendor["id"], inventory=False, procurement=True, cost="10.00")

    charge_ids = [await c.direct_charge(product["id"], 2) for _ in range(CHARGES)]
    stack.kill_and_restart("purchasing")  # charge.need_order in flight to it
    approvals = [
        await eventually(lambda cid=cid: _pending(c, cid), timeout=60) for cid in charge_ids
    ]
    half = len(approvals) // 2
    for approval in approvals[:half]:
        await c.post(c.cast.approver, "purchasing", f"/approvals/{approval['id']}/approve", {})
    stack.kill_and_restart("quotes")  # approval.decided in flight to its ledger
    stack.kill_and_restart("notifier")  # ... and to the notifier
    for approval in approvals[half:]:
        await c.post(c.cast.approver, "purchasing", f"/approvals/{approval['id']}/approve", {})
    items = [await c.queue_item(cid, 2) for cid in charge_ids]

    ship_to = {"kind": "location", "location_id": location["id"]}
    po = await c.order(vendor["id"], ship_to, *(i["item_id"] for i in items))
    stack.kill_and_restart("receiving")  # po.submitted in flight to it
    stack.kill_and_restart("quotes")  # ... and to quotes' ledger
    page = await c.on_receiving_page(po["id"])
    assert len(page["lines"]) == CHARGES

    receipt = {
        "lines": [
            {"line_id": line["line_id"], "quantity": 2, "location_id": location["id"]}
            for line in page["lines"]
        ]
    }
    done = await c.post(
        c.cast.receiver, "receiving", f"/purchase-orders/{po['id']}/receipts", receipt
    )
    assert done["po_status"] == "Received Full"
    stack.kill_and_restart("inventory")  # units.received in flight to it
    stack.kill_and_restart("shipping")  # ... and to shipping
    ready = [await c.tab_item("ready", cid, 2) for cid in charge_ids]

    delivery = await c.post(
        c.cast.shipper,
        "shipping",
        "/deliveries",
        {"items": [{"item_id": r["item_id"]} for r in ready]},
    )
    stack.kill_and_restart("notifier")  # shipment.delivered in flight to it
    stack.kill_and_restart("quotes")  # ... and to quotes again

    for cid in charge_ids:
        await c.expect_units(cid, units(delivered=2))
    await c.expect_stock(product["id"], location["id"], on_hand=0, reserved=0, picked=0)
    purchasing_po = await c.get("purchasing", f"/purchase-orders/{po['id']}")
    assert purchasing_po["status"] == "Received Full"
    assert len(delivery["items"]) == CHARGES

    # One email per triggering event and recipient, even with the notifier killed.
    people = {c.cast.sales.person.email, c.cast.person("Rita Resource").email}  # owner, resource
    for topic, kind in (
        ("po.submitted", "on_order"),
        ("units.received", "received"),
        ("shipment.delivered", "delivered"),
    ):
        [event] = await c.events(topic, 1, where=lambda e: _touches(e, po["id"], delivery["id"]))
        await c.expect_mail(event, kind, people)
    decided = await c.events(
        "approval.decided", CHARGES, where=lambda e: e.data["charge_id"] in charge_ids
    )
    for event in decided:
        await c.expect_mail(event, "approval_decided", people)
    sent = Counter(
        (m.message["X-Procure-Event-Id"], rcpt) for m in stack.sink.messages for rcpt in m.rcpt_tos
    )
    assert [key for key, n in sent.items() if n > 1] == []


async def _pending(c: StackClient, charge_id: str) -> dict:
    page = await c.get("purchasing", "/approvals", status="Pending", limit=1000)
    [approval] = [a for a in page["items"] if a["charge_id"] == charge_id]
    return approval


def _touches(event, po_id: str, delivery_id: str) -> bool:
    data = event.data
    return (
        data.get("po", {}).get("id") == po_id
        or data.get("po_id") == po_id
        or data.get("delivery_id") == delivery_id
    )
