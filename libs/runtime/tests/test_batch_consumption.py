"""Batch consumption on the real broker: a backlog is applied many records per
transaction, with exactly the outcomes one record at a time would give: duplicates
(even within one batch) skipped, poison dead-lettered byte for byte, an event that
arrives before what it needs parked then applied, a failing handler retried then
dead-lettered, and offsets committed past everything."""

import json
import math

import pytest
from sqlalchemy import event, select

from probe_service import CREATED, PICKED, READY, RUNS, build, charges, count, notes, readies
from procure_contracts import events as ev
from procure_contracts import new_event
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running
from procure_runtime.consumer import BULK_BYTES, Record, bulk_last

pytestmark = pytest.mark.kafka
N = 40


async def test_a_backlog_applies_in_batches_with_the_same_outcomes(service_settings) -> None:
    settings = service_settings("probe", handler_max_attempts=2, topic_partitions=1)
    app, runtime = build(settings)
    batches: list[tuple[int, int]] = []  # (records in the transaction, applied)
    apply_batch = runtime.consumer._apply_batch

    async def spy(pending):
        applied = await apply_batch(pending)
        batches.append((len(pending), applied))
        return applied

    runtime.consumer._apply_batch = spy  # type: ignore[method-assign]
    singles = 0  # transactions of one record (a failing run replayed, retries, parking)
    apply_one = runtime.consumer._apply

    async def spy_one(record, d, *, from_parking):
        nonlocal singles
        singles += 1
        return await apply_one(record, d, from_parking=from_parking)

    runtime.consumer._apply = spy_one  # type: ignore[method-assign]
    created = [f.charge_created() for _ in range(N)]
    late = created[N // 2]
    poison = b"\x00 not an event \xff"
    async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:
        # The backlog is there before the service starts, so its first fetch is a batch.
        early = await kafka.publish(
            READY,
            ev.ChargeReadyV1(
                charge_id=late.charge.id,
                product=late.charge.product,
                quantity=1,
                destination=f.address(),
            ),
        )
        first = new_event(CREATED.type, created[0], source="/tests", subject="c0")
        for data in created:
            if data is created[0]:
                await kafka.send_raw("charge.created", first.to_bytes())
                await kafka.send_raw("charge.created", first.to_bytes())  # a duplicate
            else:
                await kafka.publish(CREATED, data)
        await kafka.send_raw("charge.created", poison)
        await kafka.publish(PICKED, ev.UnitsPickedV1(charge_id="c", location_id="l", quantity=1))
        async with running(app, runtime):

            async def done() -> bool:
                assert await count(runtime, charges) == N
                assert await count(runtime, notes) == N  # deferred rows: once each
                # each charge's own charge.ready applies, and the early one once
                assert await count(runtime, readies) == N + 1
                assert await runtime.consumer.parked_count() == 0
                return True

            await eventually(done, timeout=60)
            dead = await kafka.read("dlq.probe", until=lambda got: len(got) >= 2, settle=1.0)
            assert await count(runtime, readies, event_id=early.id) == 1
            assert sorted(d.headers["x-error-type"] for d in dead) == [
                "handler-error",
                "invalid-json",
            ]
            assert [d.value for d in dead if d.headers["x-error-type"] == "invalid-json"] == [
                poison
            ]
            emitted = await kafka.read_events("charge.ready", N + 1, settle=1.0)
            assert len(emitted) == N + 1  # the early one and N of its own, once each
            await eventually(
                lambda: _lag_is_zero(kafka, settings), timeout=30
            )  # offsets committed past everything
    # Most of the backlog applied many records per transaction: a park or a failure
    # sends only its own run one record at a time, not the whole batch.
    assert max(applied for _, applied in batches) > 1, batches
    assert singles < N // 2, (singles, batches)


async def _lag_is_zero(kafka: KafkaProbe, settings) -> bool:
    return (
        await kafka.lag(settings.group_id, ["charge.created", "charge.ready", "units.picked"]) == 0
    )


async def test_a_batch_claims_its_event_ids_and_writes_deferred_rows_in_one_statement_each(
    service_settings,
) -> None:
    """The inbox claim and every table's deferred rows cost one statement per batch, not
    one per event; deferred rows keep the order of their events."""
    settings = service_settings("probe", topic_partitions=1)
    app, runtime = build(settings)
    transactions: list[int] = []  # records per applying transaction
    apply_batch, apply_one = runtime.consumer._apply_batch, runtime.consumer._apply

    async def spy_batch(pending):
        transactions.append(len(pending))
        return await apply_batch(pending)

    async def spy_one(record, d, *, from_parking):
        transactions.append(1)
        return await apply_one(record, d, from_parking=from_parking)

    runtime.consumer._apply_batch = spy_batch  # type: ignore[method-assign]
    runtime.consumer._apply = spy_one  # type: ignore[method-assign]
    statements: list[str] = []

    @event.listens_for(runtime.db.engine.sync_engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.split()[:3]).lower())

    created = [f.charge_created() for _ in range(N)]
    RUNS.clear()
    async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:
        for data in created:
            await kafka.publish(CREATED, data)
        async with running(app, runtime):
            await eventually(lambda: _all_noted(runtime), timeout=60)
    # N charge.created, then the N charge.ready they emit (the probe consumes those too).
    assert sum(transactions) == 2 * N, transactions
    assert max(transactions) > 1, transactions  # the backlog came in batches
    # One inbox claim per transaction, not one per event: on PostgreSQL one statement (the
    # rows as arrays), on SQLite SQLAlchemy's pages of the engine's page size; at most that
    # many notes inserts.
    if runtime.db.dialect == "postgresql":
        claims = len(transactions)
    else:
        page = runtime.db.engine.dialect.insertmanyvalues_page_size
        claims = sum(math.ceil(n / page) for n in transactions)
    assert statements.count("insert into inbox") == claims < 2 * N
    assert statements.count("insert into notes") <= claims
    assert statements.count("insert into notes") < N
    # The batch handler got runs of many events: its charges cost one statement a run.
    assert statements.count("insert into charges") < N
    assert max(len(run) for run in RUNS) > 1, RUNS
    async with runtime.db.session() as session:
        noted = (await session.execute(select(notes.c.charge_id).order_by(notes.c.id))).scalars()
        assert sorted(noted) == sorted(c.charge.id for c in created)  # each once


async def _all_noted(runtime) -> bool:
    """Every charge noted, and every charge.ready it emitted consumed back."""
    assert await count(runtime, notes) == N
    assert await count(runtime, readies) == N
    return True


async def test_a_batch_handler_never_gets_two_events_of_one_key_in_a_run(service_settings) -> None:
    """Events of one key stay in order across runs: a run holds one event per key, so a
    batch handler can treat its events as independent."""
    settings = service_settings("probe", topic_partitions=1)
    app, runtime = build(settings)
    created = [f.charge_created() for _ in range(6)]
    RUNS.clear()
    async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:
        # a, b, c, then a, b, c again under the same keys (new event ids, other charges)
        for i, data in enumerate(created):
            key = f"k{i % 3}"
            event = new_event(CREATED.type, data, source="/tests", subject=key)
            await kafka.send_raw("charge.created", event.to_bytes(), key=key.encode())
        async with running(app, runtime):

            async def all_in() -> bool:
                assert await count(runtime, charges) == 6
                return True

            await eventually(all_in, timeout=60)
    ids = [c.charge.id for c in created]
    handed = [i for run in RUNS for i in run]
    assert sorted(handed) == sorted(ids)  # each once
    key_of = {charge_id: i % 3 for i, charge_id in enumerate(ids)}
    for key in range(3):  # in order per key (the order that Kafka keeps)
        assert [i for i in handed if key_of[i] == key] == [i for i in ids if key_of[i] == key]
    for run in RUNS:  # split where a key repeats
        assert len({key_of[i] for i in run}) == len(run), RUNS
    assert max(len(run) for run in RUNS) > 1, RUNS  # the backlog came in batches


def _record(data: ev.ChargeCreatedV1, partition: int, offset: int) -> Record:
    event = new_event(CREATED.type, data, source="/tests", subject=data.charge.id)
    return Record("charge.created", partition, offset, data.charge.id.encode(), event.to_bytes())


async def test_the_streams_fetched_with_a_bulk_event_commit_before_it(service_settings) -> None:
    """A batch holding a bulk event (a PO, a receipt, a delivery of many lines) applies
    its other streams first, in a transaction of their own, and wakes the relay with
    their outgoing events before the bulk event is applied; each stream keeps its order,
    and every event applies once."""
    settings = service_settings("probe", topic_partitions=1)
    _, runtime = build(settings)
    await runtime._migrate()
    big = f.charge_created(f.charge(f.product(name="x" * BULK_BYTES)))
    after_big, other, another = (f.charge_created() for _ in range(3))
    # Fetch order: the bulk event first; `after_big` follows it in its partition.
    records = [_record(big, 0, 0), _record(other, 1, 0), _record(after_big, 0, 1)]
    records.append(_record(another, 2, 0))
    assert len(records[0].value) >= BULK_BYTES > max(len(r.value) for r in records[1:])
    steps: list[object] = []
    apply_batch = runtime.consumer._apply_batch

    async def spy(pending):
        steps.append([json.loads(r.value)["data"]["charge"]["id"] for r, _ in pending])
        return await apply_batch(pending)

    runtime.consumer._apply_batch = spy  # type: ignore[method-assign]
    runtime.consumer.on_commit = lambda: steps.append("relay woken")

    await runtime.consumer.process_batch(records)

    ids = [d.charge.id for d in (other, another, big, after_big)]
    assert steps == [ids[:2], "relay woken", ids[2:], "relay woken"]
    assert await count(runtime, charges) == 4
    assert await count(runtime, notes) == 4
    assert await count(runtime, runtime.metadata.tables["outbox"]) == 4
    await runtime.db.dispose()


def test_bulk_last_keeps_a_batch_without_a_bulk_event_whole() -> None:
    small = [(Record("a", p, o, None, b"{}"), None) for p in (0, 1) for o in (0, 1)]
    assert bulk_last(small) == [small]
    bulky = [(Record("a", 0, o, None, b"x" * BULK_BYTES), None) for o in (0, 1)]
    assert bulk_last(bulky) == [bulky]  # nothing to go before it
    mixed = [small[0], bulky[0], small[2], bulky[1], small[1]]
    # partition 0 holds the bulk events: its records keep their order, after partition 1
    assert bulk_last(mixed) == [[small[2]], [small[0], bulky[0], bulky[1], small[1]]]
