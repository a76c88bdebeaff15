"""A batch of `charge.need_order` is stored in one statement on the charges table, with
what one event at a time gives: a charge named twice in a batch, or again in a later
one, adds to its counters; units under the threshold join the queue and are announced,
units at or over it wait for approval."""

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert, select

from procure_contracts import events as ev
from procure_contracts import new_event
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import unique
from procure_purchasing.app import build
from procure_purchasing.models import charges, procurement_settings
from procure_runtime.consumer import Record
from procure_runtime.settings import load_settings

NEED_ORDER = spec_for_topic("charge.need_order")


def need_order(charge_id: str, quantity: int, unit_cost: str) -> ev.ChargeNeedOrderV1:
    product = f.product().model_copy(update={"unit_cost": Decimal(unit_cost)})
    return ev.ChargeNeedOrderV1(
        charge_id=charge_id,
        sales_order_id="so-1",
        product=product,
        quantity=quantity,
        extended_cost=product.unit_cost * quantity,
        organization=f.organization(),
        destination=f.address(),
    )


def records(offset: int, *orders: tuple[ev.ChargeNeedOrderV1, str]) -> list[Record]:
    """(event, Kafka key) pairs as records."""
    out = []
    for i, (data, key) in enumerate(orders):
        event_ = new_event(NEED_ORDER.type, data, source="/test", subject=data.charge_id)
        out.append(Record(NEED_ORDER.topic, 0, offset + i, key.encode(), event_.to_bytes()))
    return out


async def test_a_batch_adds_to_each_charge_once_and_announces_each_event(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    url = database_url("needorders")
    settings = load_settings(
        "purchasing",
        database_url=url,
        kafka_bootstrap_servers="127.0.0.1:9",  # never dialled: records go in directly
        topic_prefix=f"{unique('t')}.",
        data_dir=tmp_path,
    )
    _, runtime = build(settings)
    await runtime._migrate()
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    try:
        async with runtime.db.session() as session:
            await session.execute(
                insert(procurement_settings).values(
                    id="procurement", approval_threshold=Decimal("100"), purchasing_team=[]
                )
            )
        event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", record)
        first_a = need_order("ch-a", 2, "10")
        await runtime.consumer.process_batch(
            records(
                0,
                (first_a, "ch-a"),  # 20: the queue
                (need_order("ch-b", 1, "150"), "ch-b"),  # 150: waits for approval
                # The same charges again in the same batch, from a publisher that keys
                # them otherwise (records of one key are never in one run).
                (need_order("ch-a", 3, "10"), "other-a"),
                (need_order("ch-b", 1, "50"), "other-b"),  # this one joins the queue
            )
        )
        event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", record)
        await runtime.consumer.process_batch(records(4, (need_order("ch-a", 1, "10"), "ch-a")))
        async with runtime.db.session() as session:
            rows = {r.id: r for r in await session.execute(select(charges))}
            outbox = runtime.metadata.tables["outbox"]
            sent = (await session.execute(select(outbox.c.topic, outbox.c.value))).all()
    finally:
        await runtime.db.engine.dispose()
    counters = {cid: (r.sent, r.waiting, r.queued) for cid, r in rows.items()}
    assert counters == {"ch-a": (6, 0, 6), "ch-b": (2, 1, 1)}
    topics = [t.removeprefix(settings.topic_prefix) for t, _ in sent]
    forwarded = [json.loads(v)["data"] for t, v in sent if t.endswith("charge.forwarded")]
    assert [(d["charge_id"], d["quantity"]) for d in forwarded] == [
        ("ch-a", 2),
        ("ch-a", 3),
        ("ch-b", 1),
        ("ch-a", 1),
    ]
    assert topics.count("approval.requested") == 1
    # Each announces the charge's first product: the one its row was made with, in the
    # batch that made it and in a later one alike.
    assert {d["product"]["id"] for d in forwarded if d["charge_id"] == "ch-a"} == {
        first_a.product.id
    }
    # One statement on the charges table for the batch: an upsert, where an insert, an
    # update per row and a read of the queued charges were three (bench/levers.md, lever 30).
    on_charges = [s for s in statements if "charges" in s]
    assert len(on_charges) == 1 and "ON CONFLICT" in on_charges[0], on_charges
    # It returns no document: the rows it made take the batch's product as it is, with
    # no JSON to decode and validate (bench/levers.md, lever 65).
    returning = on_charges[0].split("RETURNING", 1)[1]
    assert "product" not in returning and "sent" in returning, returning
