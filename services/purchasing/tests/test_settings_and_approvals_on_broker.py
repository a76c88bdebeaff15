"""Procurement settings and purchase approval (R5) on the real broker: the threshold in
force when `charge.need_order` is handled decides; only `purchasing.approve` decides,
once; a rejection needs a note."""

import pytest

from procure_devstack import factories as f

pytestmark = pytest.mark.kafka
TEAM = ["buyers@example.com", "olga@example.com"]


async def test_settings_need_admin_and_are_published_compacted(purchasing) -> None:
    p = purchasing
    before = (await p.http.get("/settings", headers=p.buyer)).json()
    assert before == {"approval_threshold": None, "purchasing_team": []}

    body = {"approval_threshold": "750.00", "purchasing_team": TEAM}
    forbidden = await p.http.put("/settings", json=body, headers=p.buyer)
    assert forbidden.status_code == 403
    for bad in (
        {"approval_threshold": "-1", "purchasing_team": []},
        {"approval_threshold": "10.005", "purchasing_team": []},
        {"approval_threshold": "10", "purchasing_team": ["not-an-email"]},
        {"purchasing_team": TEAM},  # the threshold is stated, even when null
    ):
        refused = await p.http.put("/settings", json=bad, headers=p.admin)
        assert refused.status_code == 422, bad
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert (await p.http.get("/settings", headers=p.buyer)).json() == before  # unchanged

    saved = await p.http.put("/settings", json=body, headers=p.admin)
    assert saved.status_code == 200
    assert saved.json() == body
    assert (await p.http.get("/settings", headers=p.buyer)).json() == body
    [published] = await p.events("settings.procurement", 1, settle=1.0)
    assert published.data == body
    assert published.subject == "procurement"
    records = await p.kafka.read("settings.procurement", until=lambda got: len(got) >= 1)
    assert [r.key for r in records] == [b"procurement"]

    asyncapi = (await p.http.get("/asyncapi.json")).json()
    channels = " ".join(asyncapi["channels"])
    for topic in ("settings.procurement", "approval.requested", "po.submitted", "pick.requested"):
        assert topic in channels
    paths = (await p.http.get("/openapi.json")).json()["paths"]
    assert {"/settings", "/approvals", "/fulfillment", "/purchase-orders"} <= set(paths)


async def test_threshold_edges_and_a_change_applies_to_later_charges_only(purchasing) -> None:
    p = purchasing
    await p.set_threshold("500.00", TEAM)
    widget = f.product(unit_cost="0.01")
    below = await p.need_order(widget, 49_999)  # 499.99
    at = await p.need_order(widget, 50_000)  # 500.00: waits
    above = await p.need_order(widget, 50_001)  # 500.01: waits

    [forwarded] = await p.events("charge.forwarded", 1, charge_id=below.charge_id)
    assert forwarded.data["quantity"] == 49_999
    assert forwarded.data["purchasing_team"] == TEAM
    await p.until_queued(below.charge_id, 49_999)
    requested = await p.events("approval.requested", 2)
    assert {e.data["charge_id"]: e.data["extended_cost"] for e in requested} == {
        at.charge_id: "500.00",
        above.charge_id: "500.01",
    }
    for e in requested:
        assert e.data["threshold"] == "500.00"
        assert e.data["purchasing_team"] == TEAM
    assert await p.queued(at.charge_id) == 0 and await p.queued(above.charge_id) == 0
    pending = await p.pending_for(at.charge_id)
    assert pending["status"] == "Pending"
    assert pending["quantity"] == 50_000 and pending["extended_cost"] == "500.00"

    await p.set_threshold(None)  # no threshold: nothing waits from now on
    big = await p.need_order(f.product(unit_cost="9999.00"), 10)
    await p.until_queued(big.charge_id, 10)
    waiting = {a["charge_id"] for a in await p.approvals("Pending")}
    assert waiting == {at.charge_id, above.charge_id}  # earlier charges still wait

    await p.set_threshold("1000.00")
    later = await p.need_order(f.product(unit_cost="600.00"), 1)  # under the new threshold
    await p.until_queued(later.charge_id, 1)
    assert {a["charge_id"] for a in await p.approvals("Pending")} == waiting
    all_requested = await p.events("approval.requested", 2, settle=1.0)
    assert len(all_requested) == 2  # nothing else asked for approval

    # Both lists are keyed by a time and an id: one row a page, the cursors lead through all.
    for path in ("/approvals", "/fulfillment"):
        whole = (await p.http.get(path, headers=p.buyer)).json()["items"]
        assert len(whole) >= 2
        assert await one_by_one(p, path) == whole


async def one_by_one(p, path: str) -> list[dict]:
    rows, params = [], {"limit": 1}
    while True:
        page = await p.http.get(path, params=params, headers=p.buyer)
        assert page.status_code == 200, page.text
        rows += page.json()["items"]
        if not page.json()["next_cursor"]:
            return rows
        params = {"limit": 1, "cursor": page.json()["next_cursor"]}


async def test_approval_decisions_by_role_once_and_reject_needs_a_note(purchasing) -> None:
    p = purchasing
    await p.set_threshold("100.00", TEAM)
    so = "so-approvals"
    kept = await p.need_order(f.product(unit_cost="60.00"), 2, sales_order_id=so)
    dropped = await p.need_order(f.product(unit_cost="300.00"), 1, sales_order_id=so)
    to_approve = await p.pending_for(kept.charge_id)
    to_reject = await p.pending_for(dropped.charge_id)
    approver = p.auth("purchasing.approve", sub="u-approver")
    url = f"/approvals/{to_approve['id']}"

    forbidden = await p.http.post(f"{url}/approve", json={}, headers=p.buyer)
    assert forbidden.status_code == 403
    assert forbidden.json()["type"].endswith("forbidden")
    reject_url = f"/approvals/{to_reject['id']}/reject"
    for body in ({}, {"note": ""}, {"note": "   "}, None):
        refused = await p.http.post(reject_url, json=body, headers=approver)
        assert refused.status_code == 422, body
        assert refused.headers["content-type"].startswith("application/problem+json")
    missing = await p.http.post("/approvals/apr-nope/approve", json={}, headers=approver)
    assert missing.status_code == 404
    assert {a["id"] for a in await p.approvals("Pending")} == {to_approve["id"], to_reject["id"]}

    approved = await p.http.post(f"{url}/approve", json={"note": "ok"}, headers=approver)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "Approved"
    assert approved.json()["decided_by"] == {
        "id": "u-approver",
        "name": "Tess Tester",
        "email": "tess@example.com",
    }
    item = await p.until_queued(kept.charge_id, 2)
    assert item["sales_order_id"] == so and item["extended_cost"] == "120.00"
    [forwarded] = await p.events("charge.forwarded", 1, charge_id=kept.charge_id)
    assert forwarded.data["quantity"] == 2 and forwarded.correlationid == so

    rejected = await p.http.post(reject_url, json={"note": "too dear"}, headers=approver)
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "Rejected" and rejected.json()["note"] == "too dear"

    for again in (f"{url}/approve", f"{url}/reject", reject_url):
        twice = await p.http.post(again, json={"note": "again"}, headers=approver)
        assert twice.status_code == 409, again
        assert twice.json()["type"].endswith("conflict")

    decided = await p.events("approval.decided", 2, settle=1.0)
    by_charge = {e.data["charge_id"]: e.data for e in decided}
    assert len(decided) == 2
    assert by_charge[kept.charge_id]["approved"] is True
    assert by_charge[dropped.charge_id] | {"decided_by": None} == {
        "approval_id": to_reject["id"],
        "charge_id": dropped.charge_id,
        "quantity": 1,
        "approved": False,
        "note": "too dear",
        "decided_by": None,
    }
    assert await p.queued(dropped.charge_id) == 0  # rejected units never join the queue
    assert await p.events("charge.forwarded", 1, timeout=2.0, charge_id=dropped.charge_id) == []
    assert await p.approvals("Pending") == []
