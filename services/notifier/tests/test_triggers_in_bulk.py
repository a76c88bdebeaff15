"""A run of one trigger's events (a PO, a receipt, a delivery, a cancellation, an
approval asked for or decided, a charge made) queues its mails in the statements of one
event, and queues what one event at a time queues: the same mails to the same people,
word for word; a run naming a charge not known yet parks only the event that names it.
Topics are not ordered with each other: the mails are the same whether the stakeholder
directory (`opportunity.won`, `charge.created`) comes before the triggers that need it
or after them, as a trigger parks until its charges, and the sales orders they name,
are known."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import both_ways, counted, fed_directly, record
from procure_notifier.models import notifications
from procure_runtime.consumer import Record


def po(n: int, *charges: Any) -> ev.POSubmittedV1:
    return f.po_submitted(n, *(f.po_line(c, f"l-{n}-{c.id}") for c in charges))


def receipt(n: int, charge: Any, **kw: Any) -> ev.UnitsReceivedV1:
    line = f.received_line(f"l-{n}", charge.product.id, charge.quantity, charge_id=charge.id)
    return f.units_received(n, line, **kw)


def delivery(n: int, charge: Any) -> ev.ShipmentDeliveredV1:
    item = f.delivered_item(f"it-{n}", charge.id, charge.product.id, charge.quantity)
    return f.shipment_delivered(n, item)


def scenario() -> tuple[list[Record], list[list[Record]]]:
    c1, c2, c3 = (f.charge(f.product(), quantity=q) for q in (2, 1, 1))
    direct = f.charge(f.product(), quantity=1)
    before = [
        record("opportunity.won", f.opportunity_won(c1, c2, sales_order_id="so-1"), 0),
        record("opportunity.won", f.opportunity_won(c3, sales_order_id="so-2"), 1),
    ]
    decided = [f.approval_decided(c1, True), f.approval_decided(c3, False)]
    asked = [f.approval_requested(c, "so-1", purchasing_team=["pat@example.com"]) for c in (c1, c2)]
    canceled = f.shipment_canceled(
        9,
        f.canceled_item("it-9", c2.id, c2.product.id, 1, location_id=None),
        reason="wrong address",
    )
    runs = [
        ("charge.created", [f.charge_created(direct, sales_order_id="so-1")]),
        ("approval.requested", asked),
        ("approval.decided", decided),
        ("po.submitted", [po(1, c1, c2), po(2, c3), po(3, direct)]),
        ("units.received", [receipt(1, c1), receipt(2, c3), receipt(3, c2, drop_ship=True)]),
        ("shipment.delivered", [delivery(1, c1), delivery(2, c3), delivery(3, direct)]),
        ("shipment.canceled", [canceled]),
    ]
    out, offset = [], 2
    for topic, events in runs:
        out.append([record(topic, data, offset + i) for i, data in enumerate(events)])
        offset += len(events)
    return before, out


async def queued(runtime: Any) -> list[tuple[Any, ...]]:
    async with runtime.db.session() as session:
        rows = await session.execute(
            select(
                notifications.c.event_id,
                notifications.c.type,
                notifications.c.recipient,
                notifications.c.subject,
                notifications.c.body_text,
                notifications.c.body_html,
            )
        )
        return sorted(tuple(r) for r in rows)


async def test_a_run_of_triggers_queues_what_one_at_a_time_queues(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    before, runs = scenario()
    together, ran, ran_each = await both_ways(
        "notifier", database_url, tmp_path, before, runs, queued
    )
    types = [t for _, t, *_ in together]
    assert {t: types.count(t) for t in set(types)} == {
        # Three stakeholders a charge (its owner, its parent's resource, the sales
        # order's owner), one mail each per event; the team for an approval request.
        "approval_requested": 2,
        "approval_decided": 6,
        "on_order": 11,  # PO-1's two charges share their sales order's owner
        "received": 6,  # the drop-ship receipt is announced by its delivery
        "delivered": 9,
        "delivery_canceled": 3,
    }, types
    # Runs of three read the directory's charges once, where each event did.
    threes = [i for i, run in enumerate(runs) if len(run) == 3]
    assert [counted(ran[i], "SELECT", "charges") for i in threes] == [1, 1, 1]
    # (a drop-ship receipt reads none)
    assert [counted(ran_each[i], "SELECT", "charges") for i in threes] == [
        3,
        2,
        3,
    ]  # a drop-ship receipt reads none


async def test_a_trigger_naming_an_unknown_charge_parks_alone(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    before, runs = scenario()
    stranger = f.charge(f.product(), quantity=1)
    runtime = await fed_directly("notifier", database_url("early"), tmp_path)
    try:
        await runtime.consumer.process_batch(before)
        pos = runs[3]
        await runtime.consumer.process_batch([pos[0], record("po.submitted", po(8, stranger), 20)])
        assert await runtime.consumer.parked_count() == 1
        mails = await queued(runtime)
    finally:
        await runtime.db.engine.dispose()
    assert {event_id for event_id, *_ in mails} == {CloudEvent.from_bytes(pos[0].value).id}


SO_OWNER = f.person("Sally Order")


def events() -> dict[str, Record]:
    quoted = f.charge(f.product(), quantity=2)
    direct = f.charge(f.product(), quantity=1)
    won = f.opportunity_won(quoted, sales_order_id="so-1", so_owner=SO_OWNER)
    team = ["pat@example.com"]
    named = {
        "won": ("opportunity.won", won),
        "created": ("charge.created", f.charge_created(direct, sales_order_id="so-1")),
        "asked": ("approval.requested", f.approval_requested(quoted, "so-1", purchasing_team=team)),
        "forwarded": (
            "charge.forwarded",
            ev.ChargeForwardedV1(
                charge_id=quoted.id,
                sales_order_id="so-1",
                product=quoted.product,
                quantity=2,
                purchasing_team=team,
            ),
        ),
        "direct on order": ("po.submitted", po(1, direct)),  # names only the direct charge
        "quoted on order": ("po.submitted", po(2, quoted)),
        "ready": (
            "salesorder.ready_to_fulfill",
            ev.SalesOrderReadyToFulfillV1(sales_order_id="so-1", owner=won.sales_order.owner),
        ),
    }
    return {name: record(topic, data, n) for n, (name, (topic, data)) in enumerate(named.items())}


async def mails_in_order(
    records: list[Record], database_url: Callable[[str], str], name: str, tmp_path: Path
) -> tuple[list[tuple[Any, ...]], int]:
    runtime = await fed_directly("notifier", database_url(name), tmp_path / name)
    try:
        for r in records:  # one event a fetch, the order the topics happened to deliver
            await runtime.consumer.process_batch([r])
        while await runtime.consumer.sweep_parked():
            pass
        return sorted(await queued(runtime)), await runtime.consumer.parked_count()
    finally:
        await runtime.db.engine.dispose()


async def test_the_mails_do_not_depend_on_when_the_directory_arrives(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    r = events()
    natural = [r[n] for n in r]
    # The direct charge first, every trigger, and its sales order's opportunity.won last.
    late = [r["created"], *(r[n] for n in r if n not in ("won", "created")), r["won"]]
    first, parked_first = await mails_in_order(natural, database_url, "natural", tmp_path)
    second, parked_second = await mails_in_order(late, database_url, "late", tmp_path)
    assert (parked_first, parked_second) == (0, 0)
    assert first == second
    by_type: dict[str, set[str]] = {}
    for _, kind, recipient, *_ in first:
        by_type.setdefault(kind, set()).add(recipient)
    assert SO_OWNER.email in by_type["on_order"]  # the direct charge's sales order owner
    ready = [body for _, kind, _, _, body, _ in first if kind == "ready_to_fulfill"]
    assert len(ready) == 1 and all(c in ready[0] for c in ("Ticket", "so-1"))


async def test_a_won_retry_under_new_charge_ids_adds_nothing_to_its_sales_order(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Quotes ignores an `opportunity.won` whose sales order exists (an outside producer's
    retry that made new charge ids): its charges never exist, so the owner's
    ready-to-fulfill mail must not list them, whether the retry shares a batch or not."""
    real = f.charge(f.product(name="Real laptop"), quantity=2)
    phantom = f.charge(f.product(name="Phantom printer"), quantity=5)
    first = f.opportunity_won(real, sales_order_id="so-1", so_owner=SO_OWNER)
    retry = f.opportunity_won(
        phantom, sales_order_id="so-1", so_owner=SO_OWNER, opportunity_id=first.opportunity.id
    )
    ready = ev.SalesOrderReadyToFulfillV1(sales_order_id="so-1", owner=first.sales_order.owner)
    records = [
        record("opportunity.won", first, 0),
        record("opportunity.won", retry, 1),
        record("salesorder.ready_to_fulfill", ready, 2),
    ]
    # One run: in one batch, and one record at a time (`both_ways` compares the two).
    together, _, _ = await both_ways("notifier", database_url, tmp_path, [], [records], queued)
    [body] = [text for _, kind, _, _, text, _ in together if kind == "ready_to_fulfill"]
    assert "Real laptop" in body and "Phantom printer" not in body


def _fulfillable(*named: Any) -> tuple[Record, Record, Record]:
    """so-1's won (a laptop), a direct charge added to it (a printer), and its
    ready-to-fulfill naming the charges `named` (what quotes saw when it was published)."""
    quoted = f.charge(f.product(name="Quoted laptop"), quantity=2)
    direct = f.charge(f.product(name="Direct printer"), quantity=1)
    won = f.opportunity_won(quoted, sales_order_id="so-1", so_owner=SO_OWNER)
    ids = [{"quoted": quoted, "direct": direct}[n].id for n in named]
    ready = ev.SalesOrderReadyToFulfillV1(
        sales_order_id="so-1", owner=won.sales_order.owner, charge_ids=ids
    )
    return (
        record("opportunity.won", won, 0),
        record("charge.created", f.charge_created(direct, sales_order_id="so-1"), 1),
        record("salesorder.ready_to_fulfill", ready, 2),
    )


def _ready_body(mails: list[tuple[Any, ...]]) -> str:
    [body] = [body for _, kind, _, _, body, _ in mails if kind == "ready_to_fulfill"]
    return str(body)


async def test_the_ready_to_fulfill_mail_lists_the_charges_the_event_names(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A charge added to the order after it became fulfillable is not on that mail,
    whether its `charge.created` reaches the notifier before the event or after it."""
    won, created, ready = _fulfillable("quoted")
    before, _ = await mails_in_order([won, created, ready], database_url, "before", tmp_path)
    after, _ = await mails_in_order([won, ready, created], database_url, "after", tmp_path)
    assert before == after
    assert "Quoted laptop" in _ready_body(before) and "Direct printer" not in _ready_body(before)


async def test_the_ready_to_fulfill_mail_waits_for_every_charge_it_names(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A charge the event names whose own event comes later: the mail waits for it,
    instead of going out without it."""
    won, created, ready = _fulfillable("quoted", "direct")
    late, parked = await mails_in_order([won, ready, created], database_url, "late", tmp_path)
    assert parked == 0
    assert all(name in _ready_body(late) for name in ("Quoted laptop", "Direct printer"))
    first, _ = await mails_in_order([won, created, ready], database_url, "first", tmp_path)
    assert first == late
