"""Helpers for tests on the real stack: a Kafka client that publishes raw
records and collects what landed on a topic, and an in-process service harness."""

import asyncio
import importlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from procure_contracts import CloudEvent, new_event
from procure_contracts.registry import EventSpec, spec_for_topic
from procure_contracts.shapes import Shape
from procure_runtime.auth import make_token
from procure_runtime.consumer import Record
from procure_runtime.service import ServiceRuntime
from procure_runtime.settings import ServiceSettings, load_settings


def unique(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@dataclass
class Landed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone
    headers: dict[str, str]
    raw_headers: tuple[tuple[str, bytes | None], ...] = ()  # as they came, in order

    @property
    def event(self) -> CloudEvent:
        if self.value is None:
            raise ValueError("a tombstone holds no event")
        return CloudEvent.from_bytes(self.value)

    @property
    def data(self) -> dict[str, Any]:
        return self.event.data


class KafkaProbe:
    """Publishes like an outside system and reads topics like an ops engineer."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self._producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> "KafkaProbe":
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True
        )
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._producer:
            await self._producer.stop()

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    async def send_raw(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> None:
        assert self._producer is not None
        if partition is not None:
            await self._knows_partition(self.topic(topic), partition)
        await self._producer.send_and_wait(
            self.topic(topic), value, key=key, partition=partition, headers=headers
        )

    async def _knows_partition(self, name: str, partition: int, timeout: float = 10.0) -> None:
        """Wait until the producer's metadata holds `partition` of `name`. aiokafka
        refuses a partition its metadata does not know ("Unrecognized partition"), and a
        topic it has seen keeps its old partitions until the next refresh: a test that
        just added partitions would otherwise fail now and then."""
        assert self._producer is not None
        client = self._producer.client
        deadline = time.monotonic() + timeout
        while partition not in (client.cluster.partitions_for_topic(name) or ()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"partition {partition} of {name} never appeared")
            await client.add_topic(name)  # tracked from now on (a refresh if it was not)
            await client.force_metadata_update()
            await asyncio.sleep(0.05)

    async def publish(
        self,
        spec: EventSpec,
        data: Shape,
        *,
        event_id: str | None = None,
        correlationid: str | None = None,
    ) -> CloudEvent:
        key = spec.key_of(data)
        event = new_event(
            spec.type,
            data,
            source="/tests/outside-system",
            subject=key,
            correlationid=correlationid or key,
            event_id=event_id,
        )
        await self.send_raw(spec.topic, event.to_bytes(), key.encode())
        return event

    async def read(
        self,
        topic: str,
        *,
        until: Callable[[list[Landed]], bool] = lambda got: False,
        timeout: float = 30.0,
        settle: float = 0.0,
        to_end: bool = False,
    ) -> list[Landed]:
        """Everything on `topic` from the beginning, until `until(records)` holds (then
        `settle` more seconds, to catch anything extra) or `timeout` passes. With
        `to_end`: everything up to each partition's end as it is now, and `TimeoutError`
        if that is not read in time (a check that nothing is there must have looked)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        got: list[Landed] = []
        try:
            name = self.topic(topic)
            deadline = time.monotonic() + timeout
            partitions: set[int] | None = None
            while not partitions:
                partitions = consumer.partitions_for_topic(name)
                if not partitions:
                    await consumer._client.force_metadata_update()  # topic may not exist yet
                    if to_end and not consumer.partitions_for_topic(name):
                        return got  # no such topic: nothing on it
                    if time.monotonic() > deadline:
                        return got
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(name, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps) if to_end else {}
            satisfied_at: float | None = None
            while time.monotonic() < deadline:
                if to_end and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    return got
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        raw = tuple(r.headers or ())
                        headers = {k: (v or b"").decode(errors="replace") for k, v in raw}
                        got.append(
                            Landed(topic, r.partition, r.offset, r.key, r.value, headers, raw)
                        )
                if satisfied_at is None and until(got):
                    satisfied_at = time.monotonic()
                if satisfied_at is not None and time.monotonic() - satisfied_at >= settle:
                    break
            if to_end:
                raise TimeoutError(f"{name}: its end not reached in {timeout} s")
            return got
        finally:
            await consumer.stop()

    async def read_events(
        self,
        topic: str,
        count: int,
        *,
        timeout: float = 30.0,
        settle: float = 0.0,
        where: Callable[[CloudEvent], bool] = lambda e: True,
    ) -> list[CloudEvent]:
        def matching(records: list[Landed]) -> list[CloudEvent]:
            return [e for e in map(_event_or_none, records) if e is not None and where(e)]

        records = await self.read(
            topic, until=lambda got: len(matching(got)) >= count, timeout=timeout, settle=settle
        )
        return matching(records)

    # --- consumer groups, as `kafka-consumer-groups` sees them -------------------------

    async def _partitions(
        self, consumer: AIOKafkaConsumer, topics: list[str]
    ) -> list[TopicPartition]:
        await consumer._client.force_metadata_update()
        return [
            TopicPartition(self.topic(t), p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(self.topic(t)) or ())
        ]

    async def end_offsets(self, topics: list[str]) -> dict[str, int]:
        """How many records each topic holds (summed over its partitions)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(await self._partitions(consumer, topics))
        finally:
            await consumer.stop()
        totals = dict.fromkeys(topics, 0)
        for tp, end in ends.items():
            totals[tp.topic.removeprefix(self.prefix)] += end
        return totals

    async def lag(self, group_id: str, topics: list[str]) -> int:
        """Records on `topics` that `group_id` has not committed yet."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=group_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = await self._partitions(consumer, topics)
            ends = await consumer.end_offsets(tps)
            committed = [(await consumer.committed(tp)) or 0 for tp in tps]
            return sum(ends[tp] - done for tp, done in zip(tps, committed, strict=True))
        finally:
            await consumer.stop()

    async def reset_group_to_earliest(self, group_id: str, topics: list[str]) -> None:
        """What `kafka-consumer-groups --reset-offsets --to-earliest --execute` does to an
        idle group: join it, take every partition, commit offset 0."""
        consumer = AIOKafkaConsumer(
            *[self.topic(t) for t in topics],
            bootstrap_servers=self.bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:

            async def assigned() -> bool:
                await consumer.getmany(timeout_ms=100, max_records=1)
                return len({tp.topic for tp in consumer.assignment()}) == len(topics)

            await eventually(assigned, timeout=30)
            await consumer.commit(dict.fromkeys(consumer.assignment(), 0))
        finally:
            await consumer.stop()


def _event_or_none(record: Landed) -> CloudEvent | None:
    """The record's event; None for poison (what a test put there to be dead-lettered)."""
    try:
        return record.event
    except ValueError:  # pydantic's ValidationError is one
        return None


async def eventually(
    check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.2
) -> Any:
    """Await `check()` until it returns something truthy without raising."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except AssertionError as exc:
            last = exc
        await asyncio.sleep(interval)
    if last:
        raise last
    raise AssertionError(f"condition not met within {timeout}s")


def token(settings: ServiceSettings, *roles: str, sub: str = "u-tester") -> str:
    return make_token(
        settings.jwt_secret.get_secret_value(),
        sub=sub,
        name="Tess Tester",
        email="tess@example.com",
        roles=list(roles),
    )


@asynccontextmanager
async def running(
    app: Any, runtime: ServiceRuntime, *, ready_timeout: float = 60.0
) -> AsyncIterator[httpx.AsyncClient]:
    """Start a service in this process and yield an HTTP client bound to its app."""
    await runtime.start()
    try:
        await eventually(lambda: runtime.broker_ready, timeout=ready_timeout)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client
    finally:
        await runtime.stop()


def jsonl(records: list[Landed]) -> str:
    return "\n".join(
        json.dumps(
            {
                "topic": r.topic,
                "key": r.key and r.key.decode(),
                "value": None if r.value is None else r.value.decode(errors="replace"),
            }
        )
        for r in records
    )


def record(topic: str, data: Shape, offset: int, *, partition: int = 0) -> Record:
    """`data` as the record its topic's publisher would make (its key, a new event id),
    for a consumer fed directly (`fed_directly`)."""
    spec = spec_for_topic(topic)
    key = spec.key_of(data)
    value = new_event(spec.type, data, source="/test", subject=key).to_bytes()
    return Record(spec.topic, partition, offset, key.encode(), value)


async def fed_directly(
    service: str, database_url: str, data_dir: Path, **overrides: object
) -> ServiceRuntime:
    """A service's runtime on `database_url`, migrated, whose consumer is handed records
    directly (`runtime.consumer.process` / `process_batch`): its broker is never dialled.
    `overrides` are further settings (`handler_max_attempts=1`)."""
    _, runtime = await served_directly(service, database_url, data_dir, **overrides)
    return runtime


async def served_directly(
    service: str, database_url: str, data_dir: Path, **overrides: object
) -> tuple[Any, ServiceRuntime]:
    """`fed_directly`, with the service's HTTP app (for `httpx.ASGITransport`): what its
    routes write reaches the outbox, which nothing relays."""
    settings = load_settings(
        service,
        database_url=database_url,
        kafka_bootstrap_servers="127.0.0.1:9",  # never dialled
        topic_prefix="t.",
        data_dir=data_dir,
        **overrides,
    )
    app, runtime = importlib.import_module(f"procure_{service}.app").build(settings)
    await runtime._migrate()
    return app, runtime


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement `engine` runs meanwhile, whitespace collapsed."""
    ran: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        ran.append(" ".join(statement.split()))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        yield ran
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)


async def apply_runs(
    service: str,
    database_url: str,
    data_dir: Path,
    before: list[Record],
    runs: list[list[Record]],
    read: Callable[[ServiceRuntime], Any],
    *,
    batched: bool,
    setup: Callable[[ServiceRuntime], Any] | None = None,
) -> tuple[Any, list[list[str]]]:
    """Feed a fresh runtime (`fed_directly`) the records `before` (after awaiting
    `setup(runtime)`, if given), then each run as one batch (`batched`) or one record at
    a time; every record must apply (none parked). What `read(runtime)` then returns,
    and the statements each run ran."""
    runtime = await fed_directly(service, database_url, data_dir)
    ran_by_run = []
    try:
        if setup:
            await setup(runtime)
        if before:
            await runtime.consumer.process_batch(before)
        for run in runs:
            with statements(runtime.db.engine) as ran:
                if batched:
                    await runtime.consumer.process_batch(run)
                else:
                    for r in run:
                        await runtime.consumer.process(r)
            ran_by_run.append(ran)
        assert await runtime.consumer.parked_count() == 0
        return await read(runtime), ran_by_run
    finally:
        await runtime.db.engine.dispose()


async def both_ways(
    service: str,
    database_url: Callable[[str], str],
    data_dir: Path,
    before: list[Record],
    runs: list[list[Record]],
    read: Callable[[ServiceRuntime], Any],
    *,
    setup: Callable[[ServiceRuntime], Any] | None = None,
) -> tuple[Any, list[list[str]], list[list[str]]]:
    """`apply_runs` as runs and one record at a time, each on a fresh database of its own
    (`database_url(name)` makes one): a batch handler must leave what one event at a
    time leaves, so the two reads must be equal. That read, and the statements of each
    run, as runs and one at a time."""
    kw: dict[str, Any] = {"setup": setup}
    together, ran = await apply_runs(
        service, database_url("runs"), data_dir / "runs", before, runs, read, batched=True, **kw
    )
    one_by_one, ran_each = await apply_runs(
        service, database_url("each"), data_dir / "each", before, runs, read, batched=False, **kw
    )
    assert together == one_by_one
    return together, ran, ran_each


def counted(ran: list[str], verb: str, *tables: str) -> int:
    """How many statements of `ran` (as `statements` records them) are a `verb` (SELECT,
    INSERT or UPDATE) on one of `tables`: a read from it, an insert into it, an update
    of it."""

    def on(statement: str, table: str) -> bool:
        if verb == "SELECT":
            return statement.startswith("SELECT") and f" FROM {table} " in statement + " "
        into = "INSERT INTO" if verb == "INSERT" else verb
        return statement.startswith(f"{into} {table} ")

    return sum(any(on(s, t) for t in tables) for s in ran)
