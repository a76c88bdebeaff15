"""The framework-overhead reference: a hand-written aiokafka + SQLAlchemy loop making
purchasing's writes for `charge.need_order` (inbox row, the charge's counters, one
outbox row for `charge.forwarded`) in one transaction per event, then publishing each
fetched batch, deleting its rows from the outbox and committing the offsets. No savepoint, no dedupe
SELECT, no parking, no DLQ, no metrics: what someone would write by hand for one topic.
The batched variant (one transaction per fetched batch) shows what batch consumption
would buy; it is not the reference the ratios use."""

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import delete, select, update

from bench import env
from bench.baseline import PRODUCER, create_topics
from bench.events import Msg
from bench.services import publish
from procure_contracts import CloudEvent, new_event
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_devstack.testing import unique
from procure_purchasing.models import charges, metadata, procurement_settings
from procure_runtime.db import insert_ignore, make_engine, utcnow

FORWARDED = spec_for_topic("charge.forwarded")
INBOX, OUTBOX = metadata.tables["inbox"], metadata.tables["outbox"]


async def apply(conn: Any, dialect: str, event: CloudEvent, topic: str) -> CloudEvent | None:
    """One event's writes; None when it was applied before (the inbox said so)."""
    new = await conn.execute(
        insert_ignore(INBOX, dialect).values(event_id=event.id, topic=topic, processed_at=utcnow())
    )
    if new.rowcount == 0:
        return None
    data = ev.ChargeNeedOrderV1.model_validate(event.data)
    await conn.execute(
        insert_ignore(charges, dialect).values(
            id=data.charge_id,
            sales_order_id=data.sales_order_id,
            product=data.product.model_dump(mode="json"),
            vendor_id=data.product.vendor.id if data.product.vendor else None,
            organization=data.organization.model_dump(mode="json"),
            destination=data.destination.model_dump(mode="json"),
            sent=0,
            waiting=0,
            queued=0,
            ordered=0,
            picking=0,
            done=0,
            canceled=0,
            first_sent_at=utcnow(),
        )
    )
    # the threshold in force decides between waiting and queued (none set here: queued)
    await conn.scalar(
        select(procurement_settings.c.approval_threshold).where(
            procurement_settings.c.id == "procurement"
        )
    )
    c = charges.c
    await conn.execute(
        update(charges)
        .where(c.id == data.charge_id)
        .values(sent=c.sent + data.quantity, queued=c.queued + data.quantity)
    )
    forwarded = ev.ChargeForwardedV1(
        charge_id=data.charge_id,
        sales_order_id=data.sales_order_id,
        product=data.product,
        quantity=data.quantity,
    )
    out = new_event(
        FORWARDED.type,
        forwarded,
        source="/procure/purchasing",
        subject=data.charge_id,
        correlationid=event.correlationid,
        causationid=event.id,
    )
    await conn.execute(
        OUTBOX.insert().values(
            event_id=out.id,
            topic=FORWARDED.topic,
            key=data.charge_id,
            value=out.to_bytes(),
            created_at=utcnow(),
        )
    )
    return out


async def apply_all(
    engine: Any, dialect: str, records: list[Any], *, batched: bool
) -> list[CloudEvent]:
    """A fetched batch's events, each in a transaction of its own or all in one."""
    events = [CloudEvent.from_bytes(r.value) for r in records]
    if batched:
        async with engine.begin() as conn:
            outs = [await apply(conn, dialect, e, "charge.need_order") for e in events]
    else:
        outs = []
        for e in events:
            async with engine.begin() as conn:
                outs.append(await apply(conn, dialect, e, "charge.need_order"))
    return [out for out in outs if out is not None]


async def run(
    bootstrap: str, url: str, backend: str, msgs: list[Msg], *, batched: bool = False
) -> dict[str, Any]:
    """`batched`: one transaction per fetched batch instead of one per event (what batch
    consumption in the runtime would give; per-partition order is kept)."""
    settings = env.settings("purchasing", url, bootstrap, env.Path("."))
    source, target = settings.topic("charge.need_order"), settings.topic("charge.forwarded")
    await create_topics(bootstrap, [source, target], env.PARTITIONS)
    await publish(settings, msgs)
    engine = make_engine(url)  # the runtime's engine settings (pool, SQLite pragmas)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=unique("bench-minimal-"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    await asyncio.gather(consumer.start(), producer.start())
    n, done, started = len(msgs), 0, time.perf_counter()  # again at the first record fetched
    first = True
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=1000)
            if batch and first:
                started, first = time.perf_counter(), False
            for tp, records in batch.items():
                sent = await apply_all(engine, backend, records, batched=batched)
                futures = [
                    await producer.send(
                        target, out.to_bytes(), key=(out.subject or out.id).encode()
                    )
                    for out in sent
                ]
                await asyncio.gather(*futures)
                async with engine.begin() as conn:
                    await conn.execute(  # published: gone from the outbox, as the relay does
                        delete(OUTBOX).where(OUTBOX.c.event_id.in_([out.id for out in sent]))
                    )
                await consumer.commit({tp: records[-1].offset + 1})
                done += len(records)
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(consumer.stop(), producer.stop())
        await engine.dispose()
    return {
        "scenario": "minimal-loop-batched:purchasing" if batched else "minimal-loop:purchasing",
        "database": backend,
        "events": done,
        "seconds": round(seconds, 4),
        "events_per_s": round(done / seconds, 1),
    }
