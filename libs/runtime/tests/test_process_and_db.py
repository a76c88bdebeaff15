"""A service process settles its heap once started and runs on uvloop; single statements can skip the
BEGIN/COMMIT round trips on PostgreSQL; the consumer gathers records for a while."""

import asyncio
import gc
import time
from typing import Any

import pytest
import uvicorn
import uvloop
from aiokafka.protocol.fetch import FetchRequest
from fast_depends import utils as fast_depends_utils
from pydantic import ValidationError
from sqlalchemy import JSON, Column, Integer, String, Table, event, func, select, text

from probe_service import CREATED, build, charges, count
from procure_contracts.shapes import Address, Person
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running
from procure_runtime import gc_tuning, service
from procure_runtime.db import (
    Database,
    among,
    among_param,
    insert_many,
    new_metadata,
    plain_insert,
    update_many,
)
from procure_runtime.kafka import GATHER_BYTES, leaderless
from procure_runtime.settings import load_settings

pytestmark = pytest.mark.kafka

metadata = new_metadata()
marks = Table("marks", metadata, Column("id", Integer, primary_key=True))
tags = Table("tags", metadata, Column("id", String(20), primary_key=True))
docs = Table("docs", metadata, Column("id", Integer, primary_key=True), Column("doc", JSON))


def test_settle_heap_freezes_the_startup_heap_and_collects_the_young_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc_tuning.settle_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] >= gc_tuning.GEN0_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_only_a_service_process_settles_its_heap_on_start(
    service_settings, monkeypatch
) -> None:
    """`run` (the process's entry point) asks for it; a runtime started any other way,
    as in a test process that starts many, leaves the collector alone."""
    settled: list[bool] = []
    monkeypatch.setattr(gc_tuning, "settle_heap", lambda: settled.append(True))
    monkeypatch.setattr(service, "_serve", lambda runtime, app, **kw: None)
    app, runtime = build(service_settings("probe"))
    await runtime.start()
    await runtime.stop()
    assert settled == []

    app, runtime = build(service_settings("probe"))
    service.run(app, runtime)  # uvicorn's part is stubbed: its lifespan would start it
    await runtime.start()
    await runtime.stop()
    assert settled == [True]


def test_a_service_process_runs_on_uvloop_unless_told_otherwise(
    service_settings, monkeypatch
) -> None:
    """uvloop's sockets, TLS and callbacks cost less CPU than asyncio's (bench/levers.md,
    lever 19); `PROCURE_EVENT_LOOP=asyncio` is the way back to the standard loop."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(service, "_serve", lambda runtime, app, **kw: seen.update(kw))
    monkeypatch.delenv("PROCURE_EVENT_LOOP", raising=False)
    app, runtime = build(service_settings("probe"))
    service.run(app, runtime)
    assert seen["loop"] == "uvloop"
    loop = uvicorn.Config(app, loop=seen["loop"]).get_loop_factory()()  # what uvicorn runs
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()

    monkeypatch.setenv("PROCURE_EVENT_LOOP", "asyncio")
    assert load_settings("probe").event_loop == "asyncio"
    monkeypatch.setenv("PROCURE_EVENT_LOOP", "trio")
    with pytest.raises(ValidationError, match="PROCURE_EVENT_LOOP"):
        load_settings("probe")


async def test_autocommit_commits_each_statement_on_its_own(db_backend, database_url) -> None:
    url = database_url("autocommit")
    db = Database(url)
    other = Database(url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        async with db.autocommit() as conn:
            await conn.execute(marks.insert().values(id=1))
            if db_backend == "postgresql":  # committed already: another connection sees it
                async with other.engine.connect() as reader:
                    assert await reader.scalar(select(func.count()).select_from(marks)) == 1
        async with other.engine.connect() as reader:
            assert await reader.scalar(select(func.count()).select_from(marks)) == 1
        # The pool's connections are back to transactions after it.
        async with db.engine.connect() as conn:
            await conn.execute(marks.insert().values(id=2))
            await conn.rollback()
        async with db.engine.connect() as conn:
            assert await conn.scalar(select(func.count()).select_from(marks)) == 1
    finally:
        await db.dispose()
        await other.dispose()


async def test_among_selects_as_in_does_with_one_statement_for_any_number_of_values(
    db_backend, database_url
) -> None:
    """`among` means `IN`; on PostgreSQL the values travel as one array parameter, so
    lists of every length share one statement (one prepared statement per connection).
    `among_param` is the same with the list given at execution, to a statement built
    once."""
    url = database_url("among")
    db = Database(url)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(tags.insert(), [{"id": f"t{n}"} for n in range(10)])
            sent.clear()
            built_once = select(tags.c.id).where(among_param(tags.c.id, "ids", db.dialect))
            for wanted in (["t1"], ["t2", "t3", "nope"], [f"t{n}" for n in range(8)], []):
                query = select(tags.c.id).where(among(tags.c.id, wanted, db.dialect))
                got = set((await conn.scalars(query)).all())
                assert got == set(wanted) - {"nope"}
                got = set((await conn.scalars(built_once, {"ids": wanted})).all())
                assert got == set(wanted) - {"nope"}
    finally:
        await db.dispose()
    statements = {statement for statement, _ in sent}
    if db_backend == "postgresql":
        [statement] = statements
        assert "= ANY (" in statement
        assert [len(params) for _, params in sent] == [1] * 8  # the array, whole
    else:  # SQLite's IN: a statement per length
        assert all(" IN (" in s for s in statements) and len(statements) == 4


async def test_a_json_column_takes_contract_models_and_reads_back_their_json(
    database_url,
) -> None:
    """Handlers store a contract model in a JSON column as it is: the engine's encoder
    (pydantic-core's) writes the model's JSON, compact and in UTF-8, and a read gives back
    the plain dicts that `model_dump(mode="json")` makes."""
    url = database_url("jsoncodec")
    db = Database(url)
    person = Person(id="u-1", name="Zoë Åberg", email="zoe@example.com")
    address = Address(
        name="Dépôt", line1="1 Rue d'Été", city="Nîmes", postal_code="30000", country="FR"
    )
    stored = [person, [person, address], {"by": person, "n": 2}, None]
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(docs.insert(), [{"id": n, "doc": d} for n, d in enumerate(stored)])
            read = (await conn.scalars(select(docs.c.doc).order_by(docs.c.id))).all()
            raw = await conn.scalar(text("SELECT CAST(doc AS TEXT) FROM docs WHERE id = 0"))
    finally:
        await db.dispose()
    as_json = person.model_dump(mode="json")
    assert read == [
        as_json,
        [as_json, address.model_dump(mode="json")],
        {"by": as_json, "n": 2},
        None,
    ]
    assert raw == '{"id":"u-1","name":"Zoë Åberg","email":"zoe@example.com"}'


async def test_the_statements_run_for_every_batch_are_built_once(db_backend, database_url) -> None:
    """`insert_many`, `update_many` and `plain_insert` hand SQLAlchemy the same statement
    object each time: it is not built again, nor its cache key worked out again. (On
    PostgreSQL `insert_many` and `update_many` send their own text instead, which the
    driver runs: test_bulk_insert.py, test_run_in_transaction.py.)"""
    url = database_url("built_once")
    db = Database(url)
    ran: list[Any] = []

    @event.listens_for(db.engine.sync_engine, "before_execute")
    def seen(conn, clauseelement, multiparams, params, execution_options) -> None:
        ran.append(clauseelement)

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        ran.clear()
        for n in range(2):
            async with db.session() as session:
                got = await insert_many(session, tags, [{"id": f"a{n}"}], tags.c.id)
                assert [r.id for r in got] == [f"a{n}"]
                await insert_many(session, tags, [{"id": f"b{n}"}, {"id": f"a{n}"}])
                await session.execute(plain_insert(docs), [{"id": n, "doc": None}])
                await update_many(session, docs, "id", [{"id": n, "doc": {"n": n}}])
    finally:
        await db.dispose()
    first, second = ran[: len(ran) // 2], ran[len(ran) // 2 :]
    assert len(first) == (1 if db_backend == "postgresql" else 4)
    assert all(a is b for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("wait_ms", "min_bytes", "expected"),
    [
        (None, None, (GATHER_BYTES, 50)),
        (80, None, (GATHER_BYTES, 80)),
        (None, 65536, (65536, 50)),
        (80, 1, (1, 80)),
        (0, 65536, (1, 500)),
    ],
)
async def test_the_consumer_fetches_with_the_configured_gathering(
    service_settings, wait_ms, min_bytes, expected
) -> None:
    """`PROCURE_FETCH_WAIT_MS` (50 ms unless the service says otherwise): the broker
    holds a fetch up to that long to gather records into one batch, or until
    `PROCURE_FETCH_MIN_BYTES` are there (`GATHER_BYTES` unless the service says
    otherwise); a wait of 0 answers at once, whatever the bytes."""
    settings = service_settings("probe", fetch_wait_ms=wait_ms, fetch_min_bytes=min_bytes)
    app, runtime = build(settings)
    async with running(app, runtime):
        [subscriber] = runtime.broker.subscribers
        consumer = await eventually(lambda: getattr(subscriber, "consumer", None))
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == expected


async def test_a_fetch_that_holds_a_bulk_events_bytes_is_answered_before_the_wait(
    service_settings,
) -> None:
    """A fetch gathers for up to `PROCURE_FETCH_WAIT_MS` unless `GATHER_BYTES` are there:
    a bulk event (many lines, more bytes than that) is applied at once, not after the wait.
    The wait here is long enough that half of it cannot pass unnoticed."""
    wait_s = 6.0
    settings = service_settings("probe", fetch_wait_ms=int(wait_s * 1000))
    app, runtime = build(settings)
    small = f.charge_created()
    bulky = f.charge_created(f.charge(f.product(name="w" * (GATHER_BYTES + 1024))))
    async with (
        running(app, runtime),
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(CREATED, small)  # applied within a wait: the consumer is up
        await eventually(lambda: _applied(runtime, small), timeout=3 * wait_s)
        published = time.monotonic()
        await kafka.publish(CREATED, bulky)
        await eventually(lambda: _applied(runtime, bulky), timeout=3 * wait_s, interval=0.05)
        assert time.monotonic() - published < wait_s / 2


async def test_a_fetch_is_handed_to_the_runtime_without_a_thread_hop(
    service_settings, monkeypatch
) -> None:
    """The subscriber's handler asks fast_depends for nothing it would resolve in a
    worker thread (a context field such as the message is resolved by a sync function,
    which fast_depends runs in a thread: a hop there and back for every fetch)."""
    hops: list[Any] = []
    original = fast_depends_utils.run_in_threadpool

    async def counted(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(fast_depends_utils, "run_in_threadpool", counted)
    settings = service_settings("probe")
    app, runtime = build(settings)
    created = [f.charge_created() for _ in range(3)]
    async with (
        running(app, runtime),
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        for one in created:
            await kafka.publish(CREATED, one)
        for one in created:
            await eventually(lambda one=one: _applied(runtime, one))
    assert hops == []


async def _applied(runtime, created) -> bool:
    return await count(runtime, charges, id=created.charge.id) == 1


def test_a_topic_counts_as_led_only_when_every_partition_has_a_leader() -> None:
    led = {"partition": 0, "leader": 2}
    described = [
        {"topic": "a", "error_code": 0, "partitions": [led, {"partition": 1, "leader": 1}]},
        {"topic": "b", "error_code": 0, "partitions": [led, {"partition": 1, "leader": -1}]},
        {"topic": "c", "error_code": 5, "partitions": []},  # LEADER_NOT_AVAILABLE
        {"topic": "d", "error_code": 0, "partitions": []},
    ]
    assert leaderless(described, ["a", "b", "c", "d", "e"]) == {"b", "c", "d", "e"}


class _FakeConsumer:
    """Records how it is polled; answers with what it was given."""

    def __init__(self, answer: dict) -> None:
        self.answer = answer
        self.polls: list[dict] = []

    async def getmany(self, *partitions, **kwargs) -> dict:
        self.polls.append(kwargs)
        return self.answer


async def test_the_service_polls_by_waiting_for_records_not_by_sleeping(service_settings) -> None:
    """FastStream's batch poll sleeps as long as its timeout after an empty poll, deaf to
    records that arrive meanwhile; the service's poll waits in getmany alone, which
    returns the moment a fetch brings records."""
    _, runtime = build(service_settings("probe", consume_batch=7))
    [subscriber] = runtime.broker.subscribers
    empty = _FakeConsumer({})
    started = time.monotonic()
    assert await subscriber.get_msg(empty) == ()
    assert time.monotonic() - started < 0.01  # no sleep after the empty poll
    assert empty.polls == [{"timeout_ms": 100, "max_records": 7}]  # two 50 ms waits
    fetched = _FakeConsumer({"tp0": ["r1", "r2"], "tp1": ["r3"]})
    assert await subscriber.get_msg(fetched) == ("r1", "r2", "r3")


class _FakeFetcher:
    _fetch_min_bytes, _fetch_max_wait_ms = GATHER_BYTES, 50


async def test_the_poll_fetches_for_any_record_after_a_quiet_poll_and_gathers_while_records_flow(
    service_settings,
) -> None:
    _, runtime = build(service_settings("probe", fetch_wait_ms=50))
    [subscriber] = runtime.broker.subscribers
    consumer = _FakeConsumer({})
    consumer._fetcher = fetcher = _FakeFetcher()
    await subscriber.get_msg(consumer)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == service.IDLE_FETCH == (1, 500)
    consumer.answer = {"tp0": ["r1"]}
    await subscriber.get_msg(consumer)
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (GATHER_BYTES, 50)
    # A gathering fetch in flight is not a quiet poll: the poll outwaits two of them.
    _, slow = build(service_settings("probe", fetch_wait_ms=2000))
    await slow.broker.subscribers[0].get_msg(consumer)
    assert consumer.polls[-1]["timeout_ms"] == 4000


async def test_an_idle_consumer_fetches_twice_a_second_and_gathers_again_once_records_flow(
    service_settings,
) -> None:
    """On the broker: while nothing flows, the fetches sent ask for any record and let
    the broker hold them half a second (two fetch cycles a second instead of one per
    50 ms gathering wait); once a record is there, the fetches gather again."""
    settings = service_settings("probe")
    app, runtime = build(settings)
    sent: list[tuple[float, int, int]] = []  # (when, min bytes, max wait) of each fetch
    async with (
        running(app, runtime),
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        [subscriber] = runtime.broker.subscribers
        consumer = await eventually(lambda: getattr(subscriber, "consumer", None))
        send = consumer._client.send

        async def spy(node_id, request, *args, **kwargs):
            if isinstance(request, FetchRequest):
                sent.append((time.monotonic(), request._min_bytes, request._max_wait_ms))
            return await send(node_id, request, *args, **kwargs)

        consumer._client.send = spy
        await asyncio.sleep(2.5)
        quiet = [s[1:] for s in sent if s[0] > time.monotonic() - 1.5]
        assert quiet and set(quiet) == {service.IDLE_FETCH}, quiet
        assert len(quiet) <= 5, quiet  # gathering every 50 ms would be ~30
        charge = f.charge_created()
        published = time.monotonic()
        await kafka.publish(CREATED, charge)
        await eventually(lambda: _applied(runtime, charge), interval=0.02)
        # the fetches after the record gather, until a poll finds nothing for 100 ms
        assert (GATHER_BYTES, 50) in [s[1:] for s in sent if s[0] >= published], sent
        await asyncio.sleep(0.5)
        assert sent[-1][1:] == service.IDLE_FETCH, sent
