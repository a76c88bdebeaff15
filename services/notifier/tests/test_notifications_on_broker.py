"""The notifier on the real broker and a real SMTP server: each trigger of section 6
reaches exactly its recipients once, whatever redelivers, reorders or interrupts it."""

import asyncio
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import event, func, select

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token
from procure_notifier.app import build
from procure_notifier.models import metadata as notifier_metadata
from procure_notifier.models import notifications
from procure_notifier.sender import Sender
from procure_runtime.db import Database, utcnow

pytestmark = pytest.mark.kafka
S = spec_for_topic


def _people():
    return {
        "carl": f.person("Carl Charger"),  # owner of the ticket charge
        "rita": f.person("Rita Resource"),  # the ticket's primary resource
        "leo": f.person("Leo Lead"),  # owns the project charge and leads the project
        "olive": f.person("Olive Opportunity"),
        "sam": f.person("Sam Sales"),  # sales order owner, not the opportunity owner
        "dora": f.person("Dora Direct"),  # owner of a direct contract charge
    }


def _flow():
    p = _people()
    ticket = f.charge(
        f.product(name="Laptop"), 2, owner=p["carl"], parent=f.parent(primary_resource=p["rita"])
    )
    project = f.charge(
        f.product(name="Switch"),
        4,
        owner=p["leo"],
        parent=f.parent("project", project_lead=p["leo"]),
    )
    won = f.opportunity_won(ticket, project, owner=p["olive"], so_owner=p["sam"])
    direct = f.charge_created(
        f.charge(f.product(name="Cable"), 10, owner=p["dora"], parent=f.parent("contract"))
    )
    return p, ticket, project, won, direct


def _po(lines, number="PO-000042", drop_ship=False) -> ev.POSubmittedV1:
    ship_to = (
        ev.POShipTo(kind="organization", address=f.address())
        if drop_ship
        else (ev.POShipTo(kind="location", location_id="loc-1"))
    )
    return ev.POSubmittedV1(
        po=ev.PORef(id=f"po-{number}", number=number, vendor=f.vendor(), ship_to=ship_to),
        lines=[
            ev.POLine(
                line_id=f"l{n}",
                charge_id=charge.id if charge else None,
                product=charge.product if charge else f.product(),
                quantity=qty,
                unit_cost=Decimal("10.00"),
            )
            for n, (charge, qty) in enumerate(lines)
        ],
        submitted_by=f.person("Bea Buyer"),
    )


def _emails(p, *names):
    return {p[n].email.lower() for n in names}


async def _rows(http, settings, **query):
    auth = {"Authorization": f"Bearer {token(settings, 'sales')}"}
    response = await http.get("/notifications", params=query, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _by_event(sink, event_id):
    return [m for m in sink.messages if m.message["X-Procure-Event-Id"] == event_id]


async def _delivered(sink, event_id, count, settle=0.0):
    await eventually(lambda: len(_by_event(sink, event_id)) >= count, timeout=30)
    if settle:
        await asyncio.sleep(settle)
    return _by_event(sink, event_id)


async def test_each_trigger_reaches_exactly_its_recipients_once(
    service_settings, sink, quick_smtp
) -> None:
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port))
    p, ticket, project, won, direct = _flow()
    team = ["buyers@example.com", "Buyers@Example.com", "boss@example.com"]
    triggers = {
        "approval.requested": ev.ApprovalRequestedV1(
            approval_id="ap-1",
            charge_id=ticket.id,
            sales_order_id=won.sales_order.id,
            product=ticket.product,
            quantity=2,
            extended_cost=Decimal("200.00"),
            threshold=Decimal("100.00"),
            purchasing_team=team,
        ),
        "approval.decided": ev.ApprovalDecidedV1(
            approval_id="ap-1",
            charge_id=ticket.id,
            quantity=2,
            approved=False,
            note="Over budget this quarter",
            decided_by=f.person("Ada Approver"),
        ),
        "charge.forwarded": ev.ChargeForwardedV1(
            charge_id=project.id,
            sales_order_id=won.sales_order.id,
            product=project.product,
            quantity=4,
            purchasing_team=["buyers@example.com"],
        ),
        "po.submitted": _po(
            [(ticket, 2), (project, 3), (project, 1), (direct.charge, 10), (None, 5)]
        ),
        "units.received": ev.UnitsReceivedV1(
            receipt_id="r-1",
            po_id="po-PO-000042",
            number="PO-000042",
            drop_ship=False,
            po_status="Received Partial",
            received_by=f.person("Rob Receiver"),
            lines=[
                ev.ReceivedLine(
                    line_id="l1",
                    charge_id=project.id,
                    product_id=project.product.id,
                    quantity=3,
                    location_id="loc-1",
                    open_after=0,
                )
            ],
        ),
        "shipment.delivered": ev.ShipmentDeliveredV1(
            delivery_id="d-1",
            drop_ship=True,
            po_number="PO-000043",
            destination=f.address("Customer site"),
            delivered_by=f.person("Shay Shipper"),
            items=[
                ev.DeliveredItem(
                    item_id="i-1",
                    charge_id=ticket.id,
                    seq=1,
                    sales_order_id=won.sales_order.id,
                    product_id=ticket.product.id,
                    quantity=2,
                ),
                ev.DeliveredItem(
                    item_id="i-2",
                    charge_id=direct.charge.id,
                    seq=1,
                    product_id=direct.charge.product.id,
                    quantity=10,
                ),
            ],
        ),
        "shipment.canceled": f.shipment_canceled(
            "d-2",
            f.canceled_item("i-3", project.id, project.product.id, 1, location_id=None),
            reason="wrong address",
            canceled_by=f.person("Shay Shipper"),
        ),
        "salesorder.ready_to_fulfill": ev.SalesOrderReadyToFulfillV1(
            sales_order_id=won.sales_order.id, owner=p["sam"]
        ),
    }
    expected = {
        "approval.requested": {"buyers@example.com", "boss@example.com"},
        "approval.decided": _emails(p, "carl", "rita", "olive", "sam"),
        "charge.forwarded": {"buyers@example.com"},
        "po.submitted": _emails(p, "carl", "rita", "leo", "olive", "sam", "dora"),
        "units.received": _emails(p, "leo", "olive", "sam"),
        "shipment.delivered": _emails(p, "carl", "rita", "olive", "sam", "dora"),
        "shipment.canceled": _emails(p, "leo", "olive", "sam"),
        "salesorder.ready_to_fulfill": _emails(p, "sam"),
    }
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(S("opportunity.won"), won)
        await kafka.publish(S("charge.created"), direct)
        sent = {topic: await kafka.publish(S(topic), data) for topic, data in triggers.items()}
        await eventually(lambda: len(sink.messages) >= sum(map(len, expected.values())))
        await asyncio.sleep(1.0)  # anything extra would show up now

        for topic, event in sent.items():
            got = _by_event(sink, event.id)
            assert Counter(r for m in got for r in m.rcpt_tos) == Counter(expected[topic]), topic
            assert all(len(m.rcpt_tos) == 1 and m.message["To"] == m.rcpt_tos[0] for m in got)
        assert len(sink.messages) == sum(map(len, expected.values()))

        # One email per person and event listing all of their items.
        on_order = {m.rcpt_tos[0]: m for m in _by_event(sink, sent["po.submitted"].id)}
        olive = on_order[p["olive"].email.lower()]
        assert olive.subject == "On Order: PO-000042"
        assert olive.message["X-Procure-Notification"] == "on_order"
        text = olive.body()
        assert text.count("Laptop") == 1 and text.count("Switch") == 2 and "Cable" not in text
        assert f"Charge: {ticket.id}" in text and f"Sales order: {won.sales_order.id}" in text
        assert f"Ticket {ticket.parent.id}" in text and f"Project {project.parent.id}" in text
        html = olive.message.get_body(preferencelist=("html",)).get_content()
        assert "<table" in html and "Switch" in html and "PO-000042" in html
        assert "Cable" in on_order[p["dora"].email.lower()].body()
        assert "Laptop" not in on_order[p["leo"].email.lower()].body()

        [decided] = _by_event(sink, sent["approval.decided"].id)[:1]
        assert decided.subject == f"Rejected, Canceled: sales order {won.sales_order.id}"
        assert "Note: Over budget this quarter" in decided.body()
        [fulfil] = _by_event(sink, sent["salesorder.ready_to_fulfill"].id)
        assert fulfil.subject == f"Ready to Fulfill: sales order {won.sales_order.id}"
        requested = _by_event(sink, sent["approval.requested"].id)
        assert {m.subject for m in requested} == {
            f"Waiting Approval: sales order {won.sales_order.id}"
        }
        delivered = _by_event(sink, sent["shipment.delivered"].id)
        assert {m.subject for m in delivered} == {"Delivered/Shipped: PO-000043"}

        rows = await _rows(http, settings, limit=1000)
        assert len(rows) == len(sink.messages)
        assert {r["status"] for r in rows} == {"sent"}
        assert all(r["attempts"] == 1 and r["sent_at"] and r["last_error"] is None for r in rows)
        mine = await _rows(http, settings, recipient=p["sam"].email.upper(), type="on_order")
        assert [(r["event_id"], r["subject"]) for r in mine] == [
            (sent["po.submitted"].id, "On Order: PO-000042")
        ]
        page = (
            await http.get(
                "/notifications",
                params={"limit": 2},
                headers={"Authorization": f"Bearer {token(settings)}"},
            )
        ).json()
        assert len(page["items"]) == 2 and page["next_cursor"]
        bad = await http.get(
            "/notifications",
            params={"type": "nope"},
            headers={"Authorization": f"Bearer {token(settings)}"},
        )
        assert bad.status_code == 422


async def test_drop_ship_receipt_is_left_to_the_delivery_email(
    service_settings, sink, quick_smtp
) -> None:
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port))
    p, ticket, _project, won, _direct = _flow()
    receipt = ev.UnitsReceivedV1(
        receipt_id="r-9",
        po_id="po-9",
        number="PO-000009",
        drop_ship=True,
        po_status="Received Full",
        received_by=f.person("Rob Receiver"),
        lines=[
            ev.ReceivedLine(
                line_id="l0",
                charge_id=ticket.id,
                product_id=ticket.product.id,
                quantity=2,
                open_after=0,
            )
        ],
    )
    marker = ev.SalesOrderReadyToFulfillV1(sales_order_id=won.sales_order.id, owner=p["sam"])
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(S("opportunity.won"), won)
        await kafka.publish(S("units.received"), receipt)
        done = await kafka.publish(S("salesorder.ready_to_fulfill"), marker)
        await _all_applied(kafka, runtime)
        await _delivered(sink, done.id, 1, settle=1.0)  # a mail queued is sent meanwhile
        assert [m.message["X-Procure-Notification"] for m in sink.messages] == ["ready_to_fulfill"]
        assert await _rows(http, settings, type="received") == []


async def test_disabled_type_and_forwarding_without_team_send_nothing(
    service_settings, sink, quick_smtp
) -> None:
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port))
    p, ticket, _project, won, _direct = _flow()
    admin = {"Authorization": f"Bearer {token(settings, 'admin')}"}
    sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        initial = (await http.get("/settings", headers=sales)).json()
        assert initial == {
            "enabled": dict.fromkeys(
                [
                    "approval_requested",
                    "approval_decided",
                    "forwarded_to_purchasing",
                    "on_order",
                    "received",
                    "delivered",
                    "delivery_canceled",
                    "ready_to_fulfill",
                ],
                True,
            )
        }

        refused = await http.put("/settings", json={"enabled": {"on_order": False}}, headers=sales)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        unknown = await http.put(
            "/settings", json={"enabled": {"on_order": False, "teleported": False}}, headers=admin
        )
        assert unknown.status_code == 422
        assert "teleported" in unknown.json()["detail"]
        not_bool = await http.put("/settings", json={"enabled": {"on_order": "no"}}, headers=admin)
        assert not_bool.status_code == 422
        assert (await http.get("/settings", headers=sales)).json() == initial  # unchanged

        changed = await http.put("/settings", json={"enabled": {"on_order": False}}, headers=admin)
        assert changed.status_code == 200
        assert changed.json()["enabled"] == {**initial["enabled"], "on_order": False}
        assert (await http.get("/settings", headers=sales)).json() == changed.json()
        # Rows are upserted (locked) in one order whatever the body's: two admins sending
        # the same types in opposite orders could otherwise deadlock (one gets a 503).
        both = {"received": True, "delivered": True}
        written: list[str] = []

        def seen(conn, cursor, statement: str, parameters, *args) -> None:
            if statement.startswith("INSERT INTO notification_settings"):
                written.extend(p for p in parameters if p in both)

        event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            again = await http.put("/settings", json={"enabled": both}, headers=admin)
        finally:
            event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", seen)
        assert again.status_code == 200
        assert written == sorted(both)

        await kafka.publish(S("opportunity.won"), won)
        await kafka.publish(S("po.submitted"), _po([(ticket, 2)]))
        no_team = ev.ChargeForwardedV1(
            charge_id=ticket.id,
            sales_order_id=won.sales_order.id,
            product=ticket.product,
            quantity=2,
            purchasing_team=[],
        )
        await kafka.publish(S("charge.forwarded"), no_team)
        marker = ev.SalesOrderReadyToFulfillV1(sales_order_id=won.sales_order.id, owner=p["sam"])
        done = await kafka.publish(S("salesorder.ready_to_fulfill"), marker)

        await _all_applied(kafka, runtime)
        await _delivered(sink, done.id, 1, settle=1.5)  # a mail queued is sent meanwhile
        assert [m.message["X-Procure-Notification"] for m in sink.messages] == ["ready_to_fulfill"]
        rows = await _rows(http, settings)
        assert [r["type"] for r in rows] == ["ready_to_fulfill"]
        assert await runtime.consumer.parked_count() == 0


async def test_an_unmailable_address_is_skipped_and_the_others_still_get_their_mail(
    service_settings, sink, quick_smtp
) -> None:
    """An address too long for the log (on PostgreSQL its insert would fail the event's
    every row and dead-letter it), empty, or not a plain mailbox is not recorded."""
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port))
    p = _people()
    long = f.person("Lon Long", email="l" * 400 + "@example.com")
    ticket = f.charge(owner=long, parent=f.parent(primary_resource=p["rita"]))
    won = f.opportunity_won(ticket, owner=p["olive"], so_owner=p["sam"])
    asked = f.approval_requested(
        ticket,
        won.sales_order.id,
        purchasing_team=["buyers@example.com", "Boss <boss@example.com>", "a b@example.com"],
    )
    no_email = ev.SalesOrderReadyToFulfillV1(
        sales_order_id=won.sales_order.id, owner=f.person("Nemo", email=" ")
    )
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(S("opportunity.won"), won)
        submitted = await kafka.publish(S("po.submitted"), _po([(ticket, 2)]))
        requested = await kafka.publish(S("approval.requested"), asked)
        await kafka.publish(S("salesorder.ready_to_fulfill"), no_email)
        got = await _delivered(sink, submitted.id, 3)
        await _delivered(sink, requested.id, 1, settle=1.5)
        assert Counter(m.rcpt_tos[0] for m in got) == Counter(_emails(p, "rita", "olive", "sam"))
        assert [m.rcpt_tos for m in _by_event(sink, requested.id)] == [["buyers@example.com"]]
        assert len(sink.messages) == 4
        rows = await _rows(http, settings, limit=1000)
        assert sorted((r["type"], r["status"]) for r in rows) == [
            ("approval_requested", "sent"),
            *[("on_order", "sent")] * 3,
        ]
        await _all_applied(kafka, runtime)
        assert await runtime.consumer.parked_count() == 0
        dead = await kafka.read("dlq.notifier", to_end=True)
        assert dead == []


@pytest.mark.faults(checks=("lost", "emails"))
async def test_smtp_outage_delays_mail_but_loses_and_doubles_none(
    service_settings, sink, quick_smtp
) -> None:
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port))
    p, ticket, project, won, _direct = _flow()
    po = _po([(ticket, 2), (project, 4)])
    recipients = _emails(p, "carl", "rita", "leo", "olive", "sam")
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        sink.stop()
        await kafka.publish(S("opportunity.won"), won)
        submitted = await kafka.publish(S("po.submitted"), po)

        async def retried():
            rows = await _rows(http, settings, event_id=submitted.id)
            return len(rows) == len(recipients) and all(
                r["status"] == "pending" and r["attempts"] >= 2 and r["last_error"] for r in rows
            )

        await eventually(retried, timeout=30)
        sink.fail_next(1)  # back, but the first message meets a 451 and is retried too
        sink.start()
        got = await _delivered(sink, submitted.id, len(recipients), settle=2.0)
        assert Counter(m.rcpt_tos[0] for m in got) == Counter(recipients)
        rows = await _rows(http, settings, event_id=submitted.id)
        assert {r["status"] for r in rows} == {"sent"}
        assert any("451" in r["last_error"] for r in rows)  # kept after the later success


@pytest.mark.faults(checks=("lost", "emails"))
async def test_redelivered_event_sends_nothing_new(service_settings, sink, quick_smtp) -> None:
    settings = service_settings("notifier")
    p, ticket, _project, won, _direct = _flow()
    po = _po([(ticket, 2)])
    recipients = _emails(p, "carl", "rita", "olive", "sam")
    app, runtime = build(settings, quick_smtp(sink.port))
    async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:
        async with running(app, runtime):
            won_event = await kafka.publish(S("opportunity.won"), won)
            submitted = await kafka.publish(S("po.submitted"), po)
            await kafka.send_raw("po.submitted", submitted.to_bytes(), b"po")  # same bytes again
            await _delivered(sink, submitted.id, len(recipients), settle=1.5)

        # A restarted instance (same database) is handed both events again, as a consumer
        # restarted from an earlier offset would be.
        app, runtime = build(settings, quick_smtp(sink.port))
        async with running(app, runtime) as http:
            await kafka.send_raw("opportunity.won", won_event.to_bytes(), b"won")
            await kafka.send_raw("po.submitted", submitted.to_bytes(), b"po")
            marker = ev.SalesOrderReadyToFulfillV1(
                sales_order_id=won.sales_order.id, owner=p["sam"]
            )
            done = await kafka.publish(S("salesorder.ready_to_fulfill"), marker)
            await _all_applied(kafka, runtime)
            await _delivered(sink, done.id, 1, settle=1.5)  # a mail queued is sent meanwhile
            got = _by_event(sink, submitted.id)
            assert Counter(m.rcpt_tos[0] for m in got) == Counter(recipients)
            assert len(sink.messages) == len(recipients) + 1
            rows = await _rows(http, settings, event_id=submitted.id)
            assert len(rows) == len(recipients) and all(r["attempts"] == 1 for r in rows)


async def test_status_event_before_its_charge_data_still_mails_once_it_arrives(
    service_settings, sink, quick_smtp
) -> None:
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port))
    p, ticket, project, won, _direct = _flow()
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        submitted = await kafka.publish(S("po.submitted"), _po([(ticket, 2), (project, 4)]))
        await eventually(lambda: _parked(runtime), timeout=30)
        await asyncio.sleep(0.5)
        assert sink.messages == []
        assert await _rows(http, settings) == []

        await kafka.publish(S("opportunity.won"), won)
        recipients = _emails(p, "carl", "rita", "leo", "olive", "sam")
        got = await _delivered(sink, submitted.id, len(recipients), settle=1.5)
        assert Counter(m.rcpt_tos[0] for m in got) == Counter(recipients)
        assert await runtime.consumer.parked_count() == 0


async def _all_applied(kafka: KafkaProbe, runtime) -> None:
    """Every event sent so far is applied (its offset committed). A check that nothing
    was mailed follows it: a mail for an event of another topic says nothing of these,
    since topics are not ordered with each other."""
    topics = runtime.handlers.topics

    async def caught_up() -> bool:
        return await kafka.lag(runtime.settings.group_id, topics) == 0

    await eventually(caught_up, timeout=30)


async def _parked(runtime) -> bool:
    return await runtime.consumer.parked_count() == 1


async def test_two_instances_mail_each_row_once(service_settings, sink, quick_smtp) -> None:
    settings = service_settings("notifier")
    owners = [f.person(f"Owner {n}") for n in range(10)]
    lines = [f.charge(owner=o, parent=f.parent("contract")) for o in owners]
    boss = f.person("Olive Opportunity")
    won = f.opportunity_won(*lines, owner=boss)
    first, second = build(settings, quick_smtp(sink.port)), build(settings, quick_smtp(sink.port))
    async with (
        running(*first) as http,
        running(*second),
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(S("opportunity.won"), won)
        submitted = await kafka.publish(S("po.submitted"), _po([(c, 1) for c in lines]))
        got = await _delivered(sink, submitted.id, 11, settle=2.0)
        assert Counter(m.rcpt_tos[0] for m in got) == Counter(
            p.email.lower() for p in [*owners, boss]
        )
        assert len(sink.messages) == 11
        rows = await _rows(http, settings, event_id=submitted.id)
        assert [(r["status"], r["attempts"]) for r in rows] == [("sent", 1)] * 11


async def test_mails_due_together_share_one_smtp_connection(
    service_settings, sink, quick_smtp
) -> None:
    """A sender keeps its SMTP connection while rows are due."""
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port, connections=1))
    p, ticket, project, won, _direct = _flow()
    recipients = _emails(p, "carl", "rita", "leo", "olive", "sam")
    async with (
        running(app, runtime),
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(S("opportunity.won"), won)
        first = await kafka.publish(S("po.submitted"), _po([(ticket, 2), (project, 4)]))
        got = await _delivered(sink, first.id, len(recipients))
        assert len({m.peer for m in got}) == 1, [m.peer for m in got]


async def test_queued_mails_go_out_at_once_over_a_connection_kept_while_they_flow(
    service_settings, sink, quick_smtp
) -> None:
    """The consumer's commit wakes the sender: with a poll far longer than the wait
    below, the mails still go out, and mails of a later event share the connection.
    Each mail's delay since it was queued is measured."""
    settings = service_settings("notifier")
    app, runtime = build(settings, quick_smtp(sink.port, poll_s=120.0, connections=1))
    p, ticket, project, won, _direct = _flow()
    recipients = _emails(p, "carl", "rita", "leo", "olive", "sam")
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        delays_before = await _mail_delays(http)
        await kafka.publish(S("opportunity.won"), won)
        first = await kafka.publish(S("po.submitted"), _po([(ticket, 2), (project, 4)]))
        got = await _delivered(sink, first.id, len(recipients))
        second = await kafka.publish(S("po.submitted"), _po([(ticket, 1)], number="PO-000043"))
        later = await _delivered(sink, second.id, 1)
        assert len({m.peer for m in got + later}) == 1, [m.peer for m in got + later]
        await asyncio.sleep(0.5)  # any further mail of the second event
        mailed = len(_by_event(sink, first.id)) + len(_by_event(sink, second.id))

        async def measured() -> bool:  # each is measured once marked sent, after the sink
            return await _mail_delays(http) - delays_before == mailed

        await eventually(measured, timeout=10)


async def _mail_delays(http) -> float:
    """How many mails `procure_mail_delay_seconds` has measured (in this process)."""
    text = (await http.get("/metrics")).text
    return next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("procure_mail_delay_seconds_count")
    )


async def test_a_kept_connection_the_server_dropped_is_replaced(sink, quick_smtp) -> None:
    sender = Sender(None, quick_smtp(sink.port))  # type: ignore[arg-type]

    def mail(n: int) -> SimpleNamespace:
        return SimpleNamespace(
            event_id=f"e{n}",
            type="delivered",
            recipient="olive@example.com",
            subject=f"mail {n}",
            body_text="x",
            body_html="<p>x</p>",
        )

    try:
        await sender.deliver(mail(1))
        await sender.deliver(mail(2))
        sink.stop()  # closes every session; the sender does not know yet
        sink.start()
        await sender.deliver(mail(3))  # fails on the old connection, sent on a new one
    finally:
        await sender._close()
    got = sink.wait_for(3)
    assert [m.subject for m in got] == ["mail 1", "mail 2", "mail 3"]
    assert got[0].peer == got[1].peer != got[2].peer


async def test_stopping_mid_stream_finishes_the_mail_in_hand(tmp_path, sink, quick_smtp) -> None:
    """A stop while mails are going out returns promptly, again and again, and leaves no
    row claimed: the sender finishes the mail in hand instead of being cancelled in the
    middle of a database call (which could leave its connection busy and hang the next
    stop)."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'notifier.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(notifier_metadata.create_all)
    ROWS = 5000  # more than the trials' time can mail
    row = {
        "type": "delivered",
        "recipient": "olive@example.com",
        "subject": "s",
        "body_text": "t",
        "body_html": "<p>h</p>",
        "status": "pending",
        "attempts": 0,
    }
    async with db.session() as session:
        now = utcnow()
        await session.execute(
            notifications.insert(),
            [
                {**row, "event_id": f"e{i}", "next_attempt_at": now, "created_at": now}
                for i in range(ROWS)
            ],
        )
    try:
        for trial in range(6):
            sender = Sender(db, quick_smtp(sink.port))
            sender.start()
            await asyncio.sleep(0.2 + 0.07 * trial)
            await asyncio.wait_for(sender.stop(), timeout=10)
            async with db.session() as session:
                leased = await session.scalar(
                    select(func.count())
                    .select_from(notifications)
                    .where(
                        notifications.c.status == "pending",
                        notifications.c.next_attempt_at > utcnow(),
                    )
                )
            assert leased == 0, f"trial {trial}: {leased} rows left claimed"
        assert 0 < len(sink.messages) < ROWS  # every stop came mid-stream
    finally:
        await db.engine.dispose()
