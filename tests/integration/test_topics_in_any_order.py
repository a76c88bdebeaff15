"""Topics are not ordered with each other: a service fed one flow's events in any order
that keeps each topic's own order ends in the same state, once what it parked has been
applied. One won deal, from routing to a delivery canceled and delivered again, fed to
each service that reads it in seeded random orders; the end states (the service's
tables, with what differs by nature left out: times, and the keys and ids a service
numbers or makes itself) and the events it sends are compared with those of the flow
in its own order."""

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import DateTime, Integer, select

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.shapes import Location, Shape
from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_runtime.db import UTCDateTime
from procure_runtime.service import ServiceRuntime

ORDERS = 6
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: The runtime's own tables: what they hold differs by order (inbox times, parked rows).
RUNTIME = {"inbox", "parked", "outbox"}


def flow() -> list[tuple[str, Shape]]:
    """ch-1 is bought (approved, ordered, received in two parts), ch-2 picked from its
    reservation; both delivered, ch-2's delivery canceled and delivered again."""
    vendor = f.vendor(id="v-1")
    laptop = f.product(id="p-1", vendor=vendor, inventory=True)
    bought = f.charge(laptop, 4, id="ch-1")
    reserved = f.charge(laptop, 2, id="ch-2", reservations=[("rs-1", "loc-1", 2)])
    won = f.opportunity_won(bought, reserved, opportunity_id="opp-1", sales_order_id="so-1")
    forwarded = ev.ChargeForwardedV1(
        charge_id="ch-1", sales_order_id="so-1", product=laptop, quantity=4, purchasing_team=[]
    )
    picked = ev.UnitsPickedV1(
        charge_id="ch-2", location_id="loc-1", quantity=2, reservation_id="rs-1"
    )

    def received(n: int, units: int, open_after: int, status: POStatus) -> ev.UnitsReceivedV1:
        line = f.received_line("ln-1", "p-1", units, charge_id="ch-1")
        line = line.model_copy(update={"open_after": open_after})
        return f.units_received(n, line, po=1, po_status=status)

    first = f.delivered_item("it-1", "ch-1", "p-1", 4, transfer_id="tr-1")
    second = f.delivered_item("it-2", "ch-2", "p-1", 2, transfer_id="tr-2")
    again = f.delivered_item("it-3", "ch-2", "p-1", 2, seq=3, transfer_id="tr-4")
    back = f.canceled_item(
        "it-2", "ch-2", "p-1", 2, transfer_id="tr-3", original_transfer_id="tr-2"
    )
    return [
        ("catalog.vendors", vendor),
        ("catalog.products", laptop),
        ("catalog.locations", Location(id="loc-1", name="Main", address=f.address())),
        ("opportunity.won", won),
        ("units.picked", picked),
        ("approval.requested", f.approval_requested(bought, "so-1")),
        ("approval.decided", f.approval_decided(bought, True)),
        ("charge.forwarded", forwarded),
        ("po.submitted", f.po_submitted(1, f.po_line(bought, "ln-1"))),
        ("units.received", received(1, 1, 3, POStatus.RECEIVED_PARTIAL)),
        ("units.received", received(2, 3, 0, POStatus.RECEIVED_FULL)),
        ("shipment.delivered", f.shipment_delivered(1, first, second)),
        ("shipment.canceled", f.shipment_canceled(1, back)),
        ("shipment.delivered", f.shipment_delivered(2, again)),
    ]


def shuffled(events: list[tuple[str, Shape]], seed: int) -> list[tuple[str, Shape]]:
    """`events` in a random order that keeps each topic's events in their order."""
    rng = random.Random(seed)
    queues: dict[str, list[tuple[str, Shape]]] = {}
    for event in events:
        queues.setdefault(event[0], []).append(event)
    out = []
    while queues:
        topic = rng.choice(sorted(queues))
        out.append(queues[topic].pop(0))
        if not queues[topic]:
            del queues[topic]
    return out


def _kept(column: Any) -> bool:
    """A column whose value does not depend on the order: not a time, nor a key or an
    id the service numbers or makes itself."""
    if isinstance(column.type, (DateTime, UTCDateTime)) or column.name.endswith("_at"):
        return False
    if column.primary_key and isinstance(column.type, Integer) and column.autoincrement:
        return False
    # A history line's summary says what the event did when it came: its words, not
    # the counts, may differ by order.
    return not column.name.endswith("event_id") and column.name not in ("n", "summary")


def _made_ids(text: str) -> str:
    """`text` with the UUIDs a service made (`ri-<uuid>`) blotted out: the flow's own
    ids are not UUIDs."""
    return UUID.sub("<uuid>", text)


async def _state(runtime: ServiceRuntime) -> dict[str, Any]:
    tables = [t for name, t in runtime.metadata.tables.items() if name not in RUNTIME]
    state: dict[str, Any] = {}
    async with runtime.db.session() as session:
        for table in tables:
            columns = [c for c in table.columns if _kept(c)]
            rows = (await session.execute(select(*columns))).all()
            state[table.name] = sorted(_made_ids(json.dumps(list(r), default=str)) for r in rows)
        outbox = runtime.metadata.tables["outbox"]
        sent = []
        for topic, key, value in await session.execute(
            select(outbox.c.topic, outbox.c.key, outbox.c.value)
        ):
            data = CloudEvent.model_validate_json(value).data
            sent.append(json.dumps([topic, key, data], sort_keys=True))
        state["sent"] = sorted(sent)
    return state


async def _applied(
    service: str, url: str, data_dir: Path, events: list[tuple[str, Shape]]
) -> dict[str, Any]:
    runtime = await fed_directly(service, url, data_dir, handler_max_attempts=1)
    letters: list[str] = []

    async def dead_letter(value: bytes, topic: str, **kw: Any) -> None:
        letters.append(dict(kw["headers"])["x-error-message"].decode())

    runtime.consumer.publish = dead_letter
    try:
        topics = set(runtime.handlers.topics)
        for offset, (topic, data) in enumerate(events):
            if topic in topics:
                await runtime.consumer.process(record(topic, data, offset))
                while await runtime.consumer.sweep_parked():
                    pass  # what waited on it may apply now
        assert letters == []
        assert await runtime.consumer.parked_count() == 0
        return await _state(runtime)
    finally:
        await runtime.db.engine.dispose()


#: The services whose part of the flow comes by events alone. Inventory's reservations
#: and stock and purchasing's POs are made over HTTP; their orders are tested where they
#: are decided (`services/inventory/tests/test_loss_in_any_place.py`, purchasing's domain).
SERVICES = ["quotes", "receiving", "shipping", "notifier"]


@pytest.mark.parametrize("service", SERVICES)
async def test_a_flow_in_any_order_of_its_topics_ends_in_one_state(
    service: str, database_url: Callable[[str], str], tmp_path: Path
) -> None:
    events = flow()
    expected = await _applied(service, database_url("in_order"), tmp_path / "in_order", events)
    assert any(rows for name, rows in expected.items() if name != "sent"), expected
    for seed in range(ORDERS):
        order = shuffled(events, seed)
        got = await _applied(service, database_url(f"o{seed}"), tmp_path / str(seed), order)
        differ = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
        assert not differ, f"{service}, order {[t for t, _ in order]}: {differ}"


def test_shuffled_keeps_each_topics_order_and_varies_the_rest() -> None:
    events = flow()
    orders = {tuple(id(e) for e in shuffled(events, seed)) for seed in range(ORDERS)}
    assert len(orders) == ORDERS
    for seed in range(ORDERS):
        got = shuffled(events, seed)
        assert sorted(map(id, got)) == sorted(map(id, events))
        for topic in {t for t, _ in events}:
            assert [e for e in got if e[0] == topic] == [e for e in events if e[0] == topic]
