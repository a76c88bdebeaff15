"""Quotes on the real broker: routing of won and direct charges from any producer, the
Won Opportunity Wizard, the ledger across topics, can_fulfill, Approve & Post."""

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import create_async_engine

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token, unique
from procure_quotes.app import build

pytestmark = pytest.mark.kafka
T = spec_for_topic


def probe(settings) -> KafkaProbe:
    return KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix)


def auth(settings, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, *roles)}"}


def nonzero(units: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in units.items() if v}


async def get_json(http, url: str, headers: dict[str, str]):
    response = await http.get(url, headers=headers)
    return response.json() if response.status_code == 200 else None


async def test_an_external_won_opportunity_routes_every_charge(service_settings) -> None:
    """Every charge routed (R3/R4), its events built from the documents the opportunity
    carried: the new charges' rows come back without them (no decode per document)."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    service_item = f.charge(f.product(procurement=False), 2)
    reserved_item = f.charge(f.product(inventory=True), 5, reservations=[("res-1", "loc-1", 2)])
    bought_item = f.charge(f.product(unit_cost="40.00"), 3)
    won = f.opportunity_won(service_item, reserved_item, bought_item)
    inserts: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CHARGES "):
            inserts.append(" ".join(statement.lower().split()))

    event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", seen)
    async with running(app, runtime) as http, probe(settings) as kafka:
        sent = await kafka.publish(T("opportunity.won"), won)
        ready = await kafka.read_events("charge.ready", 1, settle=1.0)
        need = await kafka.read_events("charge.need_order", 2, settle=1.0)

        [insert] = inserts
        returned = {c.removeprefix("charges.") for c in insert.split(" returning ")[1].split(", ")}
        assert "id" in returned
        assert not returned & {"product", "organization", "destination", "parent", "owner"}
        for e in need:
            bought = next(c for c in won.charges if c.id == e.data["charge_id"])
            assert e.data["product"] == bought.product.model_dump(mode="json")
            assert e.data["organization"] == won.organization.model_dump(mode="json")

        assert [(e.data["charge_id"], e.data["quantity"]) for e in ready] == [(service_item.id, 2)]
        assert sorted(
            (e.data["charge_id"], e.data["quantity"], e.data["extended_cost"]) for e in need
        ) == sorted([(reserved_item.id, 3, "300.00"), (bought_item.id, 3, "120.00")])
        for e in ready + need:
            assert e.correlationid == won.sales_order.id
            assert e.causationid == sent.id
            assert e.data["destination"] == won.sales_order.ship_to.model_dump(mode="json")

        so = await get_json(http, f"/sales-orders/{won.sales_order.id}", auth(settings, "sales"))
        assert so["status"] == "New"
        assert so["can_fulfill"] is False
        units = {c["id"]: nonzero(c["units"]) for c in so["charges"]}
        assert units == {
            service_item.id: {"Ready to Deliver/Ship": 2},
            reserved_item.id: {"Need to Order/Fulfill": 5},  # 2 await their pick, 3 to procurement
            bought_item.id: {"Need to Order/Fulfill": 3},
        }
        assert all(len(c["units"]) == 6 for c in so["charges"])  # zeros included
        assert [t["type"] for t in so["timeline"]] == ["procurement.opportunity.won.v1"] * 3


async def test_ids_another_system_made_with_slashes_are_reached_by_their_routes(
    service_settings,
) -> None:
    """An ERP's numbers ("SO/2026/0042") come in `opportunity.won` as they are: a person
    reads the order and its charge, and acts on them, with the "/" sent as %2F."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    charge = f.charge(f.product(procurement=False), 1, id=f"CH/{unique()}/1")
    won = f.opportunity_won(charge, sales_order_id=f"SO/2026/{unique()}")
    so_url, charge_url = (
        f"/sales-orders/{quote(won.sales_order.id, safe='')}",
        f"/charges/{quote(charge.id, safe='')}",
    )
    async with running(app, runtime) as http, probe(settings) as kafka:
        await kafka.publish(T("opportunity.won"), won)
        so = await eventually(lambda: get_json(http, so_url, auth(settings, "sales")))
        assert so["id"] == won.sales_order.id
        assert [c["id"] for c in so["charges"]] == [charge.id]
        got = await get_json(http, charge_url, auth(settings, "billing"))
        assert got["id"] == charge.id and got["sales_order_id"] == won.sales_order.id
        # Acting on it: a person marks the order Fulfilled.
        fulfill = await http.post(f"{so_url}/fulfill", headers=auth(settings, "sales"))
        assert fulfill.status_code == 200, fulfill.text
        assert fulfill.json()["id"] == won.sales_order.id
        assert fulfill.json()["status"] == "Fulfilled"
        posted = await http.post(f"{charge_url}/post", headers=auth(settings, "billing"))
        assert posted.status_code == 200, posted.text
        assert (posted.json()["id"], posted.json()["posted"]) == (charge.id, True)


async def test_a_direct_charge_without_sales_order_is_routed_and_correlated_by_charge(
    service_settings,
) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    created = f.charge_created(
        f.charge(f.product(unit_cost="10.00"), 4, ship_to=f.address("Site B"))
    )

    async with running(app, runtime) as http, probe(settings) as kafka:
        await kafka.publish(T("charge.created"), created)
        [need] = await kafka.read_events("charge.need_order", 1, settle=1.0)
        assert need.correlationid == created.charge.id
        assert need.data["sales_order_id"] is None
        assert need.data["destination"]["name"] == "Site B"  # the charge's own ship_to wins (R4)
        charge = await eventually(
            lambda: get_json(http, f"/charges/{created.charge.id}", auth(settings, "billing"))
        )
        assert charge["sales_order_id"] is None
        assert nonzero(charge["units"]) == {"Need to Order/Fulfill": 4}
        assert charge["history"][0]["type"] == "procurement.charge.created.v1"


async def test_the_won_opportunity_wizard_publishes_reservations_and_creates_the_sales_order(
    service_settings,
) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    stocked = f.product(inventory=True, unit_price="20.00")
    service = f.product(procurement=False, unit_price="90.00")
    owner = f.person("Olive Opportunity")
    so_owner = f.person("Sam Salesorder")
    sales = auth(settings, "sales")
    async with running(app, runtime) as http, probe(settings) as kafka:
        for p in (stocked, service):
            await kafka.publish(T("catalog.products"), p)
        opp = (
            await http.post(
                "/opportunities",
                headers=sales,
                json={
                    "name": "Fit-out",
                    "owner": owner.model_dump(),
                    "organization": f.organization().model_dump(),
                },
            )
        ).json()
        item = await eventually(
            lambda: _created(
                http.post(
                    f"/opportunities/{opp['id']}/items",
                    headers=sales,
                    json={"product_id": stocked.id, "quantity": 3},
                )
            )
        )
        assert item["unit_price"] == "20.00"
        other = await eventually(
            lambda: _created(
                http.post(
                    f"/opportunities/{opp['id']}/items",
                    headers=sales,
                    json={"product_id": service.id, "quantity": 1, "unit_price": "80.00"},
                )
            )
        )
        await kafka.publish(
            T("stock.reserved"),
            ev.StockReservationV1(
                reservation_id="r-1",
                opportunity_id=opp["id"],
                quote_item_id=item["id"],
                product_id=stocked.id,
                location_id="loc-A",
                quantity=2,
            ),
        )
        await eventually(lambda: _has_reservation(http, opp["id"], sales))

        ticket = f.parent("ticket")
        project = f.parent("project")
        body = {
            "sales_order": {
                "owner": so_owner.model_dump(),
                "ship_to": f.address("Dock 4").model_dump(),
            },
            "items": [
                {"quote_item_id": item["id"], "parent": ticket.model_dump()},
                {"quote_item_id": other["id"], "parent": project.model_dump()},
            ],
        }
        accepted = await http.post(f"/opportunities/{opp['id']}/win", headers=sales, json=body)
        assert accepted.status_code == 202, accepted.text
        result = accepted.json()
        assert (
            await http.post(f"/opportunities/{opp['id']}/win", headers=sales, json=body)
        ).status_code == 409
        assert (
            await http.post(f"/opportunities/{opp['id']}/lose", headers=sales)
        ).status_code == 409

        [won] = await kafka.read_events("opportunity.won", 1, settle=1.0)
        charges = {c["quote_item_id"]: c for c in won.data["charges"]}
        assert charges[item["id"]]["reservations"] == [
            {"id": "r-1", "location_id": "loc-A", "quantity": 2}
        ]
        assert charges[other["id"]]["reservations"] == []
        assert charges[other["id"]]["unit_price"] == "80.00"
        assert won.data["sales_order"]["owner"]["id"] == so_owner.id
        assert won.data["opportunity"]["owner"]["id"] == owner.id

        so = await eventually(
            lambda: get_json(http, f"/sales-orders/{result['sales_order_id']}", sales)
        )
        by_id = {c["id"]: c for c in so["charges"]}
        assert set(by_id) == set(result["charge_ids"])
        ticket_charge = by_id[charges[item["id"]]["id"]]
        assert ticket_charge["parent"]["primary_resource"]["id"] == ticket.primary_resource.id
        assert (
            by_id[charges[other["id"]]["id"]]["parent"]["project_lead"]["id"]
            == project.project_lead.id
        )
        assert ticket_charge["owner"]["id"] == "u-tester"  # the person who ran the wizard
        assert so["owner"]["id"] == so_owner.id
        assert nonzero(ticket_charge["units"]) == {"Need to Order/Fulfill": 3}
        [need] = await kafka.read_events("charge.need_order", 1, settle=0.5)
        assert need.data["quantity"] == 1  # 2 of 3 are reserved and await their pick

        # inventory could not pick the reservation: those units go to procurement
        await kafka.publish(
            T("pick.failed"),
            ev.PickFailedV1(
                charge_id=ticket_charge["id"],
                quantity=2,
                reason="reservation gone",
                reservation_id="r-1",
            ),
        )
        needs = await kafka.read_events("charge.need_order", 2, settle=0.5)
        assert [(n.data["quantity"], n.data.get("reservation_id")) for n in needs] == [
            (1, None),
            (2, "r-1"),
        ]
        charge = await get_json(http, f"/charges/{ticket_charge['id']}", sales)
        assert nonzero(charge["units"]) == {"Need to Order/Fulfill": 3}  # no ledger change


async def _created(call):
    response = await call
    return response.json() if response.status_code == 201 else None


async def _has_reservation(http, opp_id: str, headers) -> bool:
    opp = (await http.get(f"/opportunities/{opp_id}", headers=headers)).json()
    return any(i["reservations"] for i in opp["items"])


async def test_the_ledger_follows_events_from_every_topic_until_a_person_fulfills(
    service_settings,
) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    bought = f.charge(f.product(unit_cost="50.00"), 4)
    service = f.charge(f.product(procurement=False), 1)
    won = f.opportunity_won(bought, service)
    so_id = won.sales_order.id
    approver = f.person("Ann Approver")
    po = ev.PORef(
        id="po-1",
        number="PO-000001",
        vendor=f.vendor(),
        ship_to=ev.POShipTo(kind="location", location_id="loc-1"),
    )
    line = ev.POLine(
        line_id="line-1",
        charge_id=bought.id,
        product=bought.product,
        quantity=4,
        unit_cost=Decimal("50.00"),
    )
    sales, billing = auth(settings, "sales"), auth(settings, "billing")

    def received(n: int, rid: str) -> ev.UnitsReceivedV1:
        return ev.UnitsReceivedV1(
            receipt_id=rid,
            po_id="po-1",
            number="PO-000001",
            drop_ship=False,
            po_status="Received Partial",
            received_by=approver,
            lines=[
                ev.ReceivedLine(
                    line_id="line-1",
                    charge_id=bought.id,
                    product_id=bought.product.id,
                    quantity=n,
                    location_id="loc-1",
                    open_after=0,
                )
            ],
        )

    def delivered(delivery_id: str, items: list[tuple[str, int, int]]) -> ev.ShipmentDeliveredV1:
        return ev.ShipmentDeliveredV1(
            delivery_id=delivery_id,
            drop_ship=False,
            destination=f.address(),
            delivered_by=approver,
            items=[
                ev.DeliveredItem(
                    item_id=f"it-{c}",
                    charge_id=c,
                    seq=s,
                    sales_order_id=so_id,
                    product_id="p",
                    quantity=q,
                )
                for c, s, q in items
            ],
        )

    async def units(charge_id: str):
        charge = await get_json(http, f"/charges/{charge_id}", sales)
        return nonzero(charge["units"]) if charge else None

    async def units_are(charge_id: str, want: dict[str, int]) -> bool:
        got = await units(charge_id)
        assert got == want
        return True

    async with running(app, runtime) as http, probe(settings) as kafka:
        # A delivery seen before the receipt that stocked it waits (parked), never goes negative.
        await kafka.publish(T("shipment.delivered"), delivered("d-early", [(service.id, 1, 1)]))
        await kafka.publish(T("opportunity.won"), won)
        await eventually(lambda: units_are(service.id, {"Delivered/Shipped": 1}))

        await kafka.publish(
            T("approval.requested"),
            ev.ApprovalRequestedV1(
                approval_id="a-1",
                charge_id=bought.id,
                sales_order_id=so_id,
                product=bought.product,
                quantity=4,
                extended_cost=Decimal("200.00"),
                threshold=Decimal("100.00"),
            ),
        )
        await eventually(lambda: units_are(bought.id, {"Waiting Approval": 4}))
        await kafka.publish(
            T("approval.decided"),
            ev.ApprovalDecidedV1(
                approval_id="a-1",
                charge_id=bought.id,
                quantity=4,
                approved=True,
                decided_by=approver,
            ),
        )
        await kafka.publish(
            T("po.submitted"), ev.POSubmittedV1(po=po, lines=[line], submitted_by=approver)
        )
        await eventually(lambda: units_are(bought.id, {"On Order": 4}))
        await kafka.publish(T("units.received"), received(1, "rc-1"))
        await eventually(
            lambda: units_are(bought.id, {"Ready to Deliver/Ship": 1, "Need to Order/Fulfill": 3})
        )
        await kafka.publish(T("units.received"), received(3, "rc-2"))
        await eventually(lambda: units_are(bought.id, {"Ready to Deliver/Ship": 4}))

        so = await get_json(http, f"/sales-orders/{so_id}", sales)
        assert so["status"] == "In Progress"  # a unit was delivered
        assert so["can_fulfill"] is False

        await kafka.publish(T("shipment.delivered"), delivered("d-1", [(bought.id, 1, 4)]))
        await eventually(lambda: units_are(bought.id, {"Delivered/Shipped": 4}))
        so = await get_json(http, f"/sales-orders/{so_id}", sales)
        assert so["can_fulfill"] is True
        assert so["status"] == "In Progress"  # never Fulfilled by the system
        [ready_event] = await kafka.read_events("salesorder.ready_to_fulfill", 1, settle=1.0)
        assert ready_event.data == {
            "sales_order_id": so_id,
            "owner": won.sales_order.owner.model_dump(mode="json"),
            "charge_ids": sorted(c.id for c in won.charges),  # the order's, at that moment
        }

        posted = await http.post(f"/charges/{bought.id}/post", headers=billing)
        assert posted.status_code == 200
        assert posted.json()["posted"] is True
        again = await http.post(f"/charges/{bought.id}/post", headers=billing)
        assert again.status_code == 409
        [posted_event] = await kafka.read_events("charge.posted", 1, settle=0.5)
        assert posted_event.data["amount"] == "600.00"

        # cancel the delivery after posting: stays posted, flagged; can_fulfill false again
        await kafka.publish(
            T("shipment.canceled"),
            f.shipment_canceled(
                "d-1",
                f.canceled_item("it", bought.id, "p", 4, location_id=None),
                canceled_by=approver,
            ),
        )
        await eventually(lambda: units_are(bought.id, {"Ready to Deliver/Ship": 4}))
        charge = await get_json(http, f"/charges/{bought.id}", sales)
        assert charge["posted"] is True
        assert charge["delivery_canceled_after_post"] is True
        flagged = (
            await http.get("/billing/posted?delivery_canceled_after_post=true", headers=billing)
        ).json()
        assert [c["id"] for c in flagged["items"]] == [bought.id]
        assert (await get_json(http, f"/sales-orders/{so_id}", sales))["can_fulfill"] is False

        await kafka.publish(T("shipment.delivered"), delivered("d-2", [(bought.id, 3, 4)]))
        # Fulfillable again after the cancel: a second ready_to_fulfill, and it says so.
        assert len(await kafka.read_events("salesorder.ready_to_fulfill", 2, settle=1.0)) == 2
        assert (await get_json(http, f"/sales-orders/{so_id}", sales))["can_fulfill"] is True
        fulfilled = await http.post(f"/sales-orders/{so_id}/fulfill", headers=sales)
        assert fulfilled.json()["status"] == "Fulfilled"
        assert (await http.post(f"/sales-orders/{so_id}/fulfill", headers=sales)).status_code == 409
        [done] = await kafka.read_events("salesorder.fulfilled", 1, settle=0.5)
        assert done.data["fulfilled_by"]["id"] == "u-tester"
        timeline = (await get_json(http, f"/sales-orders/{so_id}", sales))["timeline"]
        assert len({t["event_id"] for t in timeline}) >= 11
        types = [t["type"] for t in timeline]
        assert "procurement.charge.posted.v1" in types
        assert types[-1] == "procurement.salesorder.fulfilled.v1"  # the person's act, last


async def test_posting_works_in_every_status_and_refusals_change_nothing(service_settings) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    waiting = f.charge(f.product(), 2)
    won = f.opportunity_won(waiting)
    sales, billing = auth(settings, "sales"), auth(settings, "billing")
    async with running(app, runtime) as http, probe(settings) as kafka:
        await kafka.publish(T("opportunity.won"), won)
        await eventually(lambda: get_json(http, f"/charges/{waiting.id}", billing))
        listed = (await http.get("/billing/approve-post", headers=billing)).json()
        assert [c["id"] for c in listed["items"]] == [waiting.id]

        assert (await http.post(f"/charges/{waiting.id}/post", headers=sales)).status_code == 403
        assert (await http.post("/charges/nope/post", headers=billing)).status_code == 404
        assert (
            await http.post(f"/charges/{waiting.id}/post", headers=billing)
        ).status_code == 200  # Need to Order
        assert (await http.get("/billing/approve-post", headers=billing)).json()["items"] == []

        unknown = await http.post(
            "/charges",
            headers=sales,
            json={
                "parent": f.parent().model_dump(),
                "product_id": "no-such-product",
                "quantity": 1,
                "organization": f.organization().model_dump(),
                "ship_to": f.address().model_dump(),
            },
        )
        assert unknown.status_code == 422
        assert unknown.json()["type"].endswith("unknown-reference")
        bad = await http.post("/charges", headers=sales, json={"quantity": -1})
        assert bad.status_code == 422
        assert "quantity" in bad.json()["detail"]
        missing = await http.post(
            "/opportunities/nope/win",
            headers=sales,
            json={
                "sales_order": {"ship_to": f.address().model_dump()},
                "items": [{"quote_item_id": "x", "parent": f.parent().model_dump()}],
            },
        )
        assert missing.status_code == 404
        assert (await http.get("/sales-orders/nope", headers=sales)).status_code == 404
        assert (await http.get("/sales-orders?limit=0", headers=sales)).status_code == 422
        page = (await http.get("/sales-orders?limit=1", headers=sales)).json()
        assert [s["id"] for s in page["items"]] == [won.sales_order.id]
        assert page["next_cursor"] is None
        assert (
            await kafka.read("charge.created", timeout=1.0) == []
        )  # refused requests published nothing


async def test_a_bulk_event_reads_each_charge_and_sales_order_once(service_settings) -> None:
    """A PO of many lines loads its charges (with their PO lines and approvals) once, and
    leaves their sales order unread: ordering changes nothing an order reads of a charge.
    A delivery of many items does too; its refresh of their sales order uses the ledgers
    just saved and reads only the order's other charge, and only the order columns it
    needs (not their address documents)."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    bought = [f.charge(f.product(unit_cost="5.00"), 2) for _ in range(3)]
    won = f.opportunity_won(*bought, f.charge(f.product(procurement=False), 1))
    po = ev.PORef(
        id="po-9",
        number="PO-9",
        vendor=f.vendor(),
        ship_to=ev.POShipTo(kind="location", location_id="loc-1"),
    )
    lines = [
        ev.POLine(
            line_id=f"line-{n}",
            charge_id=c.id,
            product=c.product,
            quantity=2,
            unit_cost=Decimal("5.00"),
        )
        for n, c in enumerate(bought)
    ]
    received = f.units_received(
        9,
        *(
            f.received_line(f"line-{n}", c.product.id, 2, charge_id=c.id)
            for n, c in enumerate(bought)
        ),
    )
    delivered = f.shipment_delivered(
        9, *(f.delivered_item(f"item-{n}", c.id, c.product.id, 2) for n, c in enumerate(bought))
    )
    sales = auth(settings, "sales")
    statements: list[tuple[str, int]] = []  # (the statement, how many values it binds)

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        # On PostgreSQL a list of ids travels as one array parameter (`among`).
        values = sum(len(p) if isinstance(p, list) else 1 for p in parameters)
        statements.append((" ".join(statement.lower().split()), values))

    async def reads_of(topic: str, data: Any) -> list[tuple[str, int]]:
        engine = runtime.db.engine.sync_engine
        statements.clear()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            await kafka.publish(T(topic), data)
            await eventually(lambda: _inbox_has(settings.database_url, topic))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        return list(statements)

    def ledger_loads(reads: list[tuple[str, int]]) -> list[str]:
        return [s for s, _ in reads if s.startswith("select charges.id, charges.sales_order_id,")]

    async with running(app, runtime) as http, probe(settings) as kafka:
        await kafka.publish(T("opportunity.won"), won)

        async def routed() -> bool:
            assert await get_json(http, f"/charges/{bought[-1].id}", sales)
            return True

        await eventually(routed)
        ordered = await reads_of(
            "po.submitted", ev.POSubmittedV1(po=po, lines=lines, submitted_by=f.person())
        )
        for c in bought:
            charge = await get_json(http, f"/charges/{c.id}", sales)
            assert nonzero(charge["units"]) == {"On Order": 2}
        await kafka.publish(T("units.received"), received)
        await eventually(lambda: _inbox_has(settings.database_url, "units.received"))
        shipped = await reads_of("shipment.delivered", delivered)
        for c in bought:
            charge = await get_json(http, f"/charges/{c.id}", sales)
            assert nonzero(charge["units"]) == {"Delivered/Shipped": 2}
    # The PO's lines are inserted as ordered, not inserted empty and then updated.
    assert not [s for s, _ in ordered if s.startswith("update charge_po_lines")], ordered
    ordered = [(s, n) for s, n in ordered if s.startswith("select")]
    shipped = [(s, n) for s, n in shipped if s.startswith("select")]
    for table in ("charge_po_lines", "approvals"):
        assert [n for s, n in ordered if f" from {table} " in s] == [3], ordered
    assert len(ledger_loads(ordered)) == 1, ordered
    assert not [s for s, _ in ordered if " from sales_orders" in s], ordered
    # The delivery: PO lines and approvals of its 3 charges, then of the order's fourth
    # charge alone (not of all 4 again).
    for table in ("charge_po_lines", "approvals"):
        assert [n for s, n in shipped if f" from {table} " in s] == [3, 1], shipped
    loads = ledger_loads(shipped)
    assert len(loads) == 2, loads
    assert all(" where charges.id in " in s or " where charges.id = any " in s for s in loads)
    orders = [s for s, _ in shipped if " from sales_orders" in s]
    assert orders and not any("organization" in s or "ship_to" in s for s in orders), orders


async def _inbox_has(url: str, topic: str) -> bool:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT count(*) FROM inbox WHERE topic = :t"), {"t": topic}
            )
    finally:
        await engine.dispose()
    assert found == 1
    return True


PICK_TYPES = (T("pick.requested").type, T("units.picked").type)


async def test_a_picks_history_names_its_location_whichever_event_came_first(
    service_settings,
) -> None:
    """A pick's history line names its location as the catalog replica has it when the
    line is read: by id until `catalog.locations` brings the location, by name after,
    and the same whichever of the pick and the location came first (topics are not
    ordered with each other)."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    known, later = unique("loc-"), unique("loc-")
    first = f.charge(f.product(), 2, reservations=[(unique("r-"), known, 2)])
    second = f.charge(f.product(), 1, reservations=[(unique("r-"), later, 1)])
    won = f.opportunity_won(first, second)
    sales = auth(settings, "sales")

    def location(id_: str, name: str) -> ev.LocationV1:
        return ev.LocationV1(id=id_, name=name, address=f.address())

    async def picks(charge_id: str) -> list[str] | None:
        charge = await get_json(http, f"/charges/{charge_id}", sales)
        history = (charge or {}).get("history", [])
        lines = [h["summary"] for h in history if h["type"].startswith(PICK_TYPES)]
        return lines if len(lines) == 2 else None

    async with running(app, runtime) as http, probe(settings) as kafka:
        await kafka.publish(T("catalog.locations"), location(known, "Main warehouse"))
        await kafka.publish(T("opportunity.won"), won)
        for charge, place in ((first, known), (second, later)):
            n = charge.quantity
            await kafka.publish(
                T("pick.requested"),
                ev.PickRequestedV1(
                    request_id=unique("pr-"),
                    charge_id=charge.id,
                    product_id=charge.product.id,
                    location_id=place,
                    quantity=n,
                ),
            )
            await kafka.publish(
                T("units.picked"),
                ev.UnitsPickedV1(charge_id=charge.id, location_id=place, quantity=n),
            )
        assert await eventually(lambda: picks(first.id)) == [
            "pick of 2 requested at Main warehouse",
            "2 picked at Main warehouse",
        ]
        # Its location not replicated yet: named by id, until its catalog event comes.
        assert await eventually(lambda: picks(second.id)) == [
            "pick of 1 requested at " + later,
            "1 picked at " + later,
        ]
        await kafka.publish(T("catalog.locations"), location(later, "Back depot"))

        async def renamed() -> bool:
            return await picks(second.id) == [
                "pick of 1 requested at Back depot",
                "1 picked at Back depot",
            ]

        await eventually(renamed)
        order = await get_json(http, f"/sales-orders/{won.sales_order.id}", sales)
        timeline = {(t["charge_id"], t["summary"]) for t in order["timeline"]}
        assert {
            (first.id, "2 picked at Main warehouse"),
            (second.id, "1 picked at Back depot"),
        } <= (timeline)


async def test_compacted_topics_it_consumes_are_created_compacted(service_settings) -> None:
    """Quotes only consumes the catalog, and `procure up` starts it first:
    when it creates those topics they must be compacted as their producers would make
    them, or the broker's retention deletes products a consumer started later needs."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    async with running(app, runtime):
        pass
    consumed = {"catalog.products", "catalog.locations"}
    assert consumed <= set(runtime.handlers.topics)
    policies = await cleanup_policies(settings, [*consumed, "opportunity.won"])
    assert policies == {t: "compact" for t in consumed} | {"opportunity.won": "delete"}


async def cleanup_policies(settings, topics: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, settings.topic(t), {"cleanup.policy": None}
                )
                for t in topics
            ]
        )
    finally:
        await admin.close()
    found = {
        name.removeprefix(settings.topic_prefix): dict(e[:2] for e in entries)["cleanup.policy"]
        for response in responses
        for _code, _message, _type, name, entries in response.resources
    }
    return found


async def test_an_opportunity_lost_by_another_system_is_lost_here(service_settings) -> None:
    """`opportunity.lost` comes from quotes or any system: lost in a CRM, the opportunity
    takes no more items and cannot be won here. One won already stays Won."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    product = f.product(unit_price="20.00")
    sales = auth(settings, "sales")

    async def opportunity(http) -> str:
        body = {
            "name": "Deal",
            "owner": f.person("Olive").model_dump(),
            "organization": f.organization().model_dump(),
        }
        made = await http.post("/opportunities", headers=sales, json=body)
        assert made.status_code == 201, made.text
        return made.json()["id"]

    async def status(http, opp_id: str) -> str:
        return (await http.get(f"/opportunities/{quote(opp_id, safe='')}", headers=sales)).json()[
            "status"
        ]

    async with running(app, runtime) as http, probe(settings) as kafka:
        await kafka.publish(T("catalog.products"), product)
        lost, won = await opportunity(http), await opportunity(http)
        item = await eventually(
            lambda: _created(
                http.post(
                    f"/opportunities/{won}/items",
                    headers=sales,
                    json={"product_id": product.id, "quantity": 1},
                )
            )
        )
        body = {
            "sales_order": {"ship_to": f.address("Dock").model_dump()},
            "items": [{"quote_item_id": item["id"], "parent": f.parent("ticket").model_dump()}],
        }
        accepted = await http.post(f"/opportunities/{won}/win", headers=sales, json=body)
        assert accepted.status_code == 202, accepted.text
        # One partition: the second event is applied after the first.
        await kafka.publish(T("opportunity.lost"), ev.OpportunityLostV1(opportunity_id=won))
        await kafka.publish(T("opportunity.lost"), ev.OpportunityLostV1(opportunity_id=lost))

        async def is_lost() -> bool:
            assert await status(http, lost) == "Lost"
            return True

        await eventually(is_lost)
        assert await status(http, won) == "Won"
        add = await http.post(
            f"/opportunities/{lost}/items",
            headers=sales,
            json={"product_id": product.id, "quantity": 1},
        )
        assert add.status_code == 409, add.text
        win = await http.post(f"/opportunities/{lost}/win", headers=sales, json=body)
        assert win.status_code == 409, win.text
