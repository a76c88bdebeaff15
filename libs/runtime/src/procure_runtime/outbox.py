"""Transactional outbox: events are rows written in the transaction of the state change;
a relay publishes them in id order (so in order per key) and deletes them once the
broker has acknowledged them: a row in the outbox is an event not yet published, and the
topic is the record of what was. After a crash or a broker outage the relay resumes from
the first row left; a row published but not yet deleted is published again, which
consumers absorb by event id.

Deleting rather than marking a row sent (as until migration 0002 of each service, or
0004 of quotes'): an update of an indexed column cannot be a HOT update, so marking
wrote a second copy of each event into the table and a new entry into each of its
indexes, and the sent rows stayed an hour for a sweep to delete. A delete writes neither
(bench/levers.md, lever 52)."""

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import MetaData, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from procure_runtime import metrics
from procure_runtime.db import Database, among_param, insert_together, run_alone, utcnow
from procure_runtime.errors import Invalid, describe
from procure_runtime.kafka import close_producer, producer_options
from procure_runtime.logging import get_logger
from procure_runtime.settings import ServiceSettings
from procure_runtime.tasks import cancel_and_wait
from procure_runtime.uow import Outgoing, UnitOfWork, deferred_rows

log = get_logger("procure.outbox")
BATCH = 500
HEADERS = [("content-type", b"application/cloudevents+json")]  # CloudEvents, structured mode
_PARTITIONER = DefaultPartitioner()
# The largest event the outbox takes: under Kafka's default limits (a broker's
# message.max.bytes and a producer's max_request_size, 1 MiB each, the record's framing
# included). The producer refuses a larger record for good, and the relay, retrying the
# first rows in order, would publish nothing after it again.
MAX_EVENT_BYTES = 1_000_000
# What the producer of a large dead letter lets through: the broker decides (its limit
# is on the compressed batch, as for the producer that sent the original).
LARGE_REQUEST_BYTES = 64 * 1024 * 1024
# How long a stop waits for the relay's producer to hand over what it holds.
STOP_TIMEOUT_S = 3.0


Headers = list[tuple[str, bytes | None]]


def _header(headers: Headers, name: str) -> str | None:
    value = next((v for k, v in reversed(headers) if k == name), None)
    return None if value is None else value.decode(errors="replace")


class EventTooLarge(Invalid):
    """The change would publish an event over `MAX_EVENT_BYTES`: refused before anything
    is stored (422 to a request; an event that leads to it is dead-lettered)."""


def _outbox_rows(outgoing: list[Outgoing]) -> list[dict[str, Any]]:
    now = utcnow()
    rows = []
    for o in outgoing:
        value = o.event.to_bytes()
        if len(value) > MAX_EVENT_BYTES:
            raise EventTooLarge(
                f"the {o.spec.topic} event this makes would be {len(value):,} bytes; "
                f"events are at most {MAX_EVENT_BYTES:,}: split it into smaller ones"
            )
        rows.append(
            {
                "event_id": o.event.id,
                "topic": o.spec.topic,
                "key": o.key,
                "value": value,
                "created_at": now,
            }
        )
    return rows


async def write_effects(session: AsyncSession, metadata: MetaData, uows: list[UnitOfWork]) -> None:
    """What units of work leave for their end, in their transaction: the deferred rows
    (insert-or-ignore), then the outgoing events into the outbox. One statement on
    PostgreSQL, one per table elsewhere."""
    parts = [(table, rows, True) for table, rows in deferred_rows(uows).items()]
    outgoing = [o for uow in uows for o in uow.outgoing]
    parts.append((metadata.tables["outbox"], _outbox_rows(outgoing), False))
    await insert_together(session, parts)


class OutboxRelay:
    def __init__(self, settings: ServiceSettings, db: Database, metadata: MetaData) -> None:
        self.settings = settings
        self.db = db
        self.table = t = metadata.tables["outbox"]
        # Built once: the relay runs a round per commit, and building them cost more CPU
        # than running them (bench/levers.md, lever 39); run by the driver itself on
        # PostgreSQL (`run_alone`, lever 42).
        self._unsent = select(t.c.id, t.c.topic, t.c.key, t.c.value).order_by(t.c.id).limit(BATCH)
        self._delete_sent = delete(t).where(among_param(t.c.id, "ids", db.dialect))
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()  # connect() and the relay's loop may race
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_conn: AsyncConnection | None = None
        self._lock_checked = 0.0
        # Another instance of the service leads (PostgreSQL): rows this one committed
        # are the leader's to publish, and it is told so (`_lead`).
        self._tell_leader = False
        self._channel = f"procure_outbox_{settings.service}"
        # How long an idle relay waits for a commit before it looks at the outbox anyway.
        self.idle_wait_s = 0.5

    def wake(self) -> None:
        """A commit left rows in the outbox (called after it)."""
        self._tell_leader = True
        self._wake.set()

    def _woken(self, *_: Any) -> None:  # asyncpg's listener: (connection, pid, channel, payload)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop relaying. With `drain_s`, first publish what the last commits left in the
        outbox, for up to that long: it waited otherwise for the service's next start
        (or another instance's relay), the whole downtime of a single instance."""
        if self._task:
            await cancel_and_wait(self._task)
        if drain_s > 0 and self._producer is not None:
            await self._drain(drain_s)
        await self._release()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await close_producer(producer, STOP_TIMEOUT_S)

    async def _drain(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                while await self.publish_pending() == BATCH:
                    pass
        except Exception as exc:  # the broker away: the rows wait in the outbox
            log.warning("outbox not drained at stop", error=describe(exc, 200))

    async def _run(self) -> None:
        backoff = self.settings.retry_backoff_s
        while True:
            try:
                sent = await self.publish_pending()
                backoff = self.settings.retry_backoff_s
                if sent == BATCH:
                    continue  # more waiting: no sleep
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: keep the rows, try again later
                await self._release()  # its connection may be the broken part
                log.warning("outbox relay failed; will retry", error=repr(exc), backoff_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_wait_s):
                    await self._wake.wait()
                await asyncio.sleep(0.005)  # let a burst of commits gather into one batch
            self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch of unsent rows; returns how many were sent. No transaction is
        held while publishing, so a broker outage never blocks the service's writers."""
        if self.db.dialect == "postgresql" and not await self._lead():
            return 0
        async with self._connection() as conn:
            rows = await run_alone(conn, self._unsent)
        metrics.OUTBOX_BACKLOG.labels(self.settings.service).set(len(rows))
        if not rows:
            return 0
        # Sent in id order without waiting for each ack; the idempotent producer keeps
        # that order per partition, so per key, even across its internal retries. The
        # relay has an aiokafka producer of its own: the rows are ready-made records, and
        # FastStream's publish path (commands, middlewares) cost more than the send.
        producer = await self._started_producer()
        await asyncio.gather(*await self._send(producer, rows))
        async with self._connection() as conn:
            await run_alone(conn, self._delete_sent, {"ids": [row[0] for row in rows]})
        for topic, n in Counter(row[1] for row in rows).items():
            metrics.PRODUCED.labels(self.settings.service, topic).inc(n)
        metrics.OUTBOX_BACKLOG.labels(self.settings.service).set(0)
        return len(rows)

    async def _send(self, producer: AIOKafkaProducer, rows: Sequence[Any]) -> list[Any]:
        """Hand the rows to the producer as record batches, each partition's in id order:
        the futures of their acknowledgements. `send` per record cost ~28 µs of CPU (a
        metadata wait, a size estimate, the partition lists and a future per record)
        against ~14 for a record appended to a batch here (bench/levers.md, lever 53).
        A record's partition is the default partitioner's (murmur2 of its key over the
        topic's partitions in order), the one `send` and Java's producer give, so a key
        lands where other producers put it."""
        queues: dict[tuple[str, int], deque[tuple[bytes, bytes]]] = {}
        partitions: dict[str, list[int]] = {}
        for _, topic, key, value in rows:
            name = self.settings.topic(topic)
            if name not in partitions:
                partitions[name] = sorted(await producer.partitions_for(name))
            key_bytes = key.encode()
            where = (name, _PARTITIONER(key_bytes, partitions[name], partitions[name]))
            queues.setdefault(where, deque()).append((key_bytes, value))
        futures = []
        while queues:  # a batch a partition in turn, so that partitions go out together
            for (name, partition), queue in list(queues.items()):
                batch = producer.create_batch()
                while queue:
                    key, value = queue[0]
                    if batch.append(key=key, value=value, timestamp=None, headers=HEADERS) is None:
                        break  # full (a batch takes its first record whatever its size)
                    queue.popleft()
                batch.close()  # nothing else joins it (dead letters go by `send`)
                futures.append(await producer.send_batch(batch, name, partition=partition))
                if not queue:
                    del queues[(name, partition)]
        return futures

    async def connect(self, topics: Sequence[str] = ()) -> None:
        """Start the producer with the service's broker connection, so the first event
        does not wait for it (the relay would otherwise start it on first use), and name
        the topics it will publish to (prefixed). Until a producer has sent to a topic,
        its periodic metadata refresh asks for every topic in the cluster: on a cluster
        of a thousand topics ~60 ms of CPU every `METADATA_MAX_AGE_MS` (lever 49)."""
        producer = await self._started_producer()
        if topics:
            await producer.client.set_topics(list(topics))

    async def reachable(self, timeout: float) -> bool:
        """Whether the cluster answers a metadata request for the relay's topics now (the
        readiness check: one small request)."""
        if self._producer is None:
            return False
        async with asyncio.timeout(timeout):
            return bool(await self._producer.client.force_metadata_update())

    async def publish(
        self, value: bytes | None, topic: str, *, key: bytes | None, headers: Headers
    ) -> None:
        """One record as it is, acknowledged before this returns (dead letters: the
        consumer commits the offset only after this)."""
        producer = await self._started_producer()
        try:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
        except MessageSizeTooLargeError:
            await self._publish_large(value, topic, key=key, headers=headers)

    async def _publish_large(
        self, value: bytes | None, topic: str, *, key: bytes | None, headers: Headers
    ) -> None:
        """A record over the producer's 1 MiB: another producer's compressed record
        (the broker limits a compressed batch), dead-lettered. Sent compressed in turn,
        as it came; if the broker still refuses it, the dead letter holds no value and
        says where the original is. Retrying a refusal that is for good blocked the
        partition: its offset was never committed, so nothing after it applied."""
        size = len(value or b"")
        producer = AIOKafkaProducer(
            **producer_options(self.settings, "large"),
            compression_type="gzip",
            max_request_size=LARGE_REQUEST_BYTES,
        )
        await producer.start()
        try:
            try:
                await producer.send_and_wait(topic, value, key=key, headers=headers)
                return
            except (MessageSizeTooLargeError, RecordListTooLargeError) as exc:
                log.error(
                    "record too large to dead-letter; its dead letter holds no value",
                    topic=_header(headers, "x-original-topic"),
                    partition=_header(headers, "x-original-partition"),
                    offset=_header(headers, "x-original-offset"),
                    bytes=size,
                    error=repr(exc),
                )
            omitted = [*headers, ("x-value-omitted", str(size).encode())]
            await producer.send_and_wait(topic, b"", key=key, headers=omitted)
        finally:
            await producer.stop()

    async def _started_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**producer_options(self.settings, "relay"))
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """Where the relay's statements run, each committing on its own: the leader's
        connection on PostgreSQL (no pool checkout, no BEGIN/COMMIT round trips)."""
        if self._lock_conn is not None:
            yield self._lock_conn
        else:
            async with self.db.autocommit() as conn:
                yield conn

    async def _lead(self) -> bool:
        """On PostgreSQL, one relay per service publishes at a time (a session advisory
        lock held on its own connection), which keeps the per-key order across instances.

        The leader listens on that connection for the others' commits: an instance that
        does not lead, woken by a commit of its own, notifies the leader (after the
        commit, so the rows are there to read). Without it the leader found them only
        at its next idle look, up to `idle_wait_s` later on every hop of the flow."""
        if self._lock_conn is not None:
            if time.monotonic() - self._lock_checked < 5.0:
                return True
            try:  # still holding it? (a dropped connection releases the lock)
                await self._lock_conn.execute(select(1))
                self._lock_checked = time.monotonic()
                return True
            except Exception:
                await self._release()
        conn = await self.db.engine.connect()
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        key = func.hashtext(f"procure-outbox-{self.settings.service}")
        try:
            if await conn.scalar(select(func.pg_try_advisory_lock(key))):
                raw: Any = (await conn.get_raw_connection()).driver_connection
                await raw.add_listener(self._channel, self._woken)
                self._lock_conn = conn
                self._lock_checked = time.monotonic()
                self._tell_leader = False
                return True
            if self._tell_leader:
                self._tell_leader = False
                await conn.execute(select(func.pg_notify(self._channel, "")))
        except BaseException:
            # Not back to the pool: it may hold the lock, or be the failing part.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            await conn.close()
            raise
        await conn.close()
        return False

    @property
    def leading(self) -> bool:
        """This relay holds the service's lock (PostgreSQL): it is the one publishing."""
        return self._lock_conn is not None

    async def _release(self) -> None:
        """Ends the leader's connection for good: its session's advisory lock and LISTEN
        end with it. Closed, it went back to the pool still holding the lock, and until
        the relay checked that same connection out again, no relay of the service could
        lead (whatever else used it held the lock; `pool_recycle` ended it at last)."""
        if self._lock_conn is not None:
            with contextlib.suppress(Exception):
                await self._lock_conn.invalidate()
            with contextlib.suppress(Exception):
                await self._lock_conn.close()
            self._lock_conn = None

    async def backlog(self) -> int:
        async with self.db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(self.table)) or 0)
