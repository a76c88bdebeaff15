"""Scenario 1: the seed's whole workflow on the real stack (the `procure demo` story), with
every charge's units checked after each step, then the topic events and the emails."""

import io
import re

import pytest

from procure_devstack.cli import main
from procure_devstack.demo import SeedResult, run_seed_workflow
from procure_devstack.stack import Stack
from procure_devstack.stackclient import StackClient, units

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

# Each charge's units once the step has settled.
EXPECTED = {
    "won": {
        "laptops": units(ready=2, need=1),
        "firewalls": units(waiting=2),
        "install": units(ready=1),
    },
    "approved": {"firewalls": units(need=2)},
    "second_won": {"laptop2": units(need=1)},
    "po_created": {
        "laptops": units(ready=2, need=1),
        "firewalls": units(need=2),
        "laptop2": units(need=1),
    },
    "submitted": {
        "laptops": units(ready=2, on_order=1),
        "firewalls": units(on_order=2),
        "laptop2": units(on_order=1),
    },
    "received_partial": {
        "laptops": units(ready=3),
        "firewalls": units(ready=1, need=1),
        "laptop2": units(on_order=1),
    },
    "received_full": {"firewalls": units(ready=2), "laptop2": units(ready=1)},
    "delivered": {
        "laptops": units(delivered=3),
        "firewalls": units(delivered=2),
        "install": units(delivered=1),
        "laptop2": units(delivered=1),
    },
}
# Laptop stock at the warehouse (on hand, reserved, picked) after each step.
LAPTOP_STOCK = {
    "catalog": (2, 0, 0),
    "won": (2, 0, 2),
    "received_partial": (3, 0, 3),
    "received_full": (4, 0, 4),
    "delivered": (0, 0, 0),
}


def checker(c: StackClient, seen: list[str]):  # type: ignore[no-untyped-def]
    async def on_step(step: str, r: SeedResult) -> None:
        seen.append(step)
        for name, expected in EXPECTED.get(step, {}).items():
            await c.expect_units(r.charges[name], expected)
        if step in LAPTOP_STOCK:
            on_hand, reserved, picked = LAPTOP_STOCK[step]
            await c.expect_stock(
                r.products["laptop"]["id"],
                r.location["id"],
                on_hand=on_hand,
                reserved=reserved,
                picked=picked,
            )
        so1 = r.sales_orders.get("first")
        if step == "won":
            so = await c.get("quotes", f"/sales-orders/{so1}")
            assert (so["status"], so["can_fulfill"]) == ("New", False)
            assert so["owner"]["id"] == r.people["so_owner"].id
        if step == "po_created":
            assert r.po["status"] == "New" and re.fullmatch(r"PO-\d{6}", r.po["number"])
            assert sorted(ln["charge_id"] for ln in r.po["lines"]) == sorted(
                r.charges[n] for n in ("laptops", "firewalls", "laptop2")
            )
            queue = await c.get("purchasing", "/fulfillment", vendor_id=r.vendor["id"])
            assert queue["items"] == [], "ordered units left the queue"
        if step == "received_partial":
            po = await c.get("purchasing", f"/purchase-orders/{r.po['id']}")
            assert po["status"] in ("Received Partial",), po["status"]
            assert r.receipts[0]["po_status"] == "Received Partial"
        if step == "received_full":
            assert r.receipts[1]["po_status"] == "Received Full"
            await c.expect_stock(
                r.products["firewall"]["id"], r.location["id"], on_hand=2, picked=2
            )
        if step == "delivered":
            for lists in (r.pick_lists, r.packing_lists):
                cities = sorted(d["destination"]["city"] for d in lists["documents"])
                assert cities == ["Shelbyville", "Springfield"], "one document per destination"
                items = [i for d in lists["documents"] for i in d["items"]]
                assert len(items) == 4
            assert sum(len(d["items"]) for d in r.deliveries) == 4
            so = await c.get("quotes", f"/sales-orders/{so1}")
            assert so["status"] == "In Progress"
        if step == "fulfilled":
            so = await c.get("quotes", f"/sales-orders/{so1}")
            assert (so["status"], so["can_fulfill"]) == ("Fulfilled", True)
        if step == "posted":
            for name in ("laptops", "firewalls", "install"):
                view = await c.charge(r.charges[name])
                assert view["posted"] is True and view["delivery_canceled_after_post"] is False
                assert view["units"] == EXPECTED["delivered"][name], "posting moves no units"

    return on_step


async def test_seed_workflow_from_quote_to_posted(client: StackClient) -> None:
    c, seen, out = client, [], io.StringIO()
    r = await run_seed_workflow(c.api, out, run=c.cast.run, on_step=checker(c, seen))
    assert seen == [
        "catalog",
        "won",
        "approved",
        "second_won",
        "po_created",
        "submitted",
        "received_partial",
        "received_full",
        "delivered",
        "fulfilled",
        "posted",
    ]
    assert r.sales_order["status"] == "Fulfilled"
    assert len(r.sales_order["timeline"]) >= 8
    assert "timeline:" in out.getvalue()
    await check_events_and_mail(c, r)


async def check_events_and_mail(c: StackClient, r: SeedResult) -> None:
    ch = r.charges
    ours = set(ch.values())
    so1, so2 = r.sales_orders["first"], r.sales_orders["second"]
    p = r.people
    stake = {
        "laptops": {p["sales"].email, p["rita"].email, p["so_owner"].email},
        "firewalls": {p["sales"].email, p["leo"].email, p["so_owner"].email},
        "install": {p["sales"].email, p["so_owner"].email},
        "laptop2": {p["sales"].email, p["tom"].email, p["oscar"].email},
    }
    by_id = {cid: name for name, cid in ch.items()}

    def of(*names: str) -> set[str]:
        return set().union(*(stake[n] for n in names))

    won = await c.events("opportunity.won", 2, lambda e: e.data["sales_order"]["id"] in (so1, so2))
    assert sorted(len(e.data["charges"]) for e in won) == [1, 3]
    [ready] = await c.charge_events("charge.ready", ours, 1)
    assert (ready.data["charge_id"], ready.data["quantity"]) == (ch["install"], 1)
    need = await c.charge_events("charge.need_order", ours, 3)
    assert {(by_id[e.data["charge_id"]], e.data["quantity"]) for e in need} == {
        ("laptops", 1),
        ("firewalls", 2),
        ("laptop2", 1),
    }
    [picked] = await c.charge_events("units.picked", ours, 1)
    assert (picked.data["charge_id"], picked.data["quantity"]) == (ch["laptops"], 2)
    [requested] = await c.charge_events("approval.requested", ours, 1)
    [decided] = await c.charge_events("approval.decided", ours, 1)
    assert decided.data["approved"] is True and decided.data["quantity"] == 2
    forwarded = await c.charge_events("charge.forwarded", ours, 3)
    submitted = await c.events("po.submitted", 1, lambda e: e.subject == r.po["id"])
    received = await c.events("units.received", 2, lambda e: e.data["po_id"] == r.po["id"])
    delivered = await c.events(
        "shipment.delivered", 2, lambda e: e.data["items"][0]["charge_id"] in ours
    )
    to_fulfill = await c.events(
        "salesorder.ready_to_fulfill", 2, lambda e: e.data["sales_order_id"] in (so1, so2)
    )
    await c.events("salesorder.fulfilled", 1, lambda e: e.data["sales_order_id"] == so1)
    posted = await c.charge_events("charge.posted", ours, 3)
    assert {e.data["amount"] for e in posted} == {"3600.00", "4200.00", "300.00"}

    expected = [
        (requested, "approval_requested", {r.cast.team}),
        (decided, "approval_decided", of("firewalls")),
        *[(e, "forwarded_to_purchasing", {r.cast.team}) for e in forwarded],
        (submitted[0], "on_order", of("laptops", "firewalls", "laptop2")),
        *[
            (e, "received", of(*{by_id[ln["charge_id"]] for ln in e.data["lines"]}))
            for e in received
        ],
        *[
            (e, "delivered", of(*{by_id[i["charge_id"]] for i in e.data["items"]}))
            for e in delivered
        ],
        *[
            (
                e,
                "ready_to_fulfill",
                {p["so_owner"].email if e.data["sales_order_id"] == so1 else p["oscar"].email},
            )
            for e in to_fulfill
        ],
    ]
    for event, kind, recipients in expected:
        await c.expect_mail(event, kind, recipients)
    everyone = {*of("laptops", "firewalls", "install", "laptop2"), r.cast.team}
    assert len(c.mail_to(*everyone)) == sum(len(rcpt) for _, _, rcpt in expected), "no other mail"


def test_procure_demo_command_runs_against_the_stack(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, url in stack.urls.items():
        monkeypatch.setenv(f"{name.upper()}_PORT", url.rsplit(":", 1)[1])
    monkeypatch.setenv("PROCURE_JWT_SECRET", stack.secret)

    assert main(["demo"]) == 0

    text = capsys.readouterr().out
    for line in ("catalog: vendor", "approved: 2 firewalls", "submitted: PO-", "posted:"):
        assert line in text
    so_line = next(ln for ln in text.splitlines() if ln.endswith("Fulfilled, timeline:"))
    assert so_line.startswith("sales order ")
    timeline = text.split("timeline:")[1].strip().splitlines()
    assert len(timeline) >= 8
    assert "procurement.opportunity.won.v1" in timeline[0]
    assert any("procurement.shipment.delivered.v1" in ln for ln in timeline)
