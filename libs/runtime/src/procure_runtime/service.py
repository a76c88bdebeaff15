"""`ServiceRuntime`: wires a service's tables, handlers and routes to the database, the
broker, the outbox relay and the parking lot. A service's `app.py` builds one and runs it."""

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, cast

import uvicorn
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaMessage
from faststream.specification import AsyncAPI
from sqlalchemy import MetaData

from procure_contracts import CloudEvent
from procure_contracts.registry import EventSpec, compacted, dlq_topic
from procure_runtime import gc_tuning, metrics, migrate
from procure_runtime.consumer import Consumer, EventHandlers, Record, is_transient
from procure_runtime.db import Database
from procure_runtime.errors import describe
from procure_runtime.kafka import (
    GRACEFUL_TIMEOUT_S,
    Gathering,
    ensure_topics,
    fetch_options,
    is_bootstrap_failure,
    make_broker,
    why_no_bootstrap,
)
from procure_runtime.logging import clear, configure_logging, get_logger
from procure_runtime.offsets import OffsetCommitter
from procure_runtime.outbox import STOP_TIMEOUT_S as RELAY_STOP_TIMEOUT_S
from procure_runtime.outbox import OutboxRelay, write_effects
from procure_runtime.retention import InboxPruner
from procure_runtime.settings import ServiceSettings, load_settings
from procure_runtime.tasks import cancel_and_wait
from procure_runtime.uow import UnitOfWork

log = get_logger("procure.service")


STOP_COMMIT_TIMEOUT_S = 10.0
STOP_DRAIN_S = 3.0
#: How long a stop waits for the consumer's close beyond the batch in hand: leaving the
#: group is one request, well under this normally; a coordinator that does not answer
#: held it up to the client's 40 s request timeout.
CONSUMER_CLOSE_S = 5.0
#: The longest a service's stop takes: the offsets committed, the batch in hand finished
#: and the consumer closed, the outbox drained, the producer closed. A deployment's
#: grace period covers it.
STOP_BUDGET_S = (
    STOP_COMMIT_TIMEOUT_S
    + GRACEFUL_TIMEOUT_S
    + CONSUMER_CLOSE_S
    + STOP_DRAIN_S
    + RELAY_STOP_TIMEOUT_S
)


class StartAborted(Exception):
    """The process was told to stop while its start waited for the database."""


async def _the_message(msg: KafkaMessage) -> KafkaMessage:
    """The subscriber's decoder: the handler's body is the message itself. FastStream
    never parses the payload (the runtime decodes each record itself, so bad records
    can be dead-lettered byte for byte), and the handler asks for no context field:
    fast_depends resolves one in a worker thread, a thread hop for every fetch
    (bench/levers.md, lever 45)."""
    return msg


async def _any_headers(
    records: tuple[ConsumerRecord, ...], original: Callable[..., Awaitable[Any]]
) -> Any:
    """The subscriber's parser: FastStream's, given headers it can read. It decodes every
    header value as UTF-8 text, where Kafka allows any bytes or none: one such header
    made it raise, and FastStream dropped the whole fetched batch (logged, never applied
    nor dead-lettered; the next batch's offsets committed past it). The runtime reads no
    header itself, so FastStream is given readable copies; the message keeps the records
    as they came, whose headers go on into dead letters byte for byte."""
    try:
        return await original(records)
    except (UnicodeDecodeError, AttributeError):
        readable = tuple(
            dataclasses.replace(
                r,
                headers=[(k, (v or b"").decode("utf-8", "replace").encode()) for k, v in r.headers],
            )
            for r in records
        )
        message = await original(readable)
        message.raw_message = records
        return message


# How an idle consumer fetches: any record answers the fetch, else the broker holds it
# this long. A fetch cycle costs the client 1 to 2.5 ms of CPU whether or not it brings a
# record (bench/levers.md, lever 48).
IDLE_FETCH = (1, 500)  # (fetch_min_bytes, fetch_max_wait_ms)


def waiting_poll(
    max_records: int, gathering: tuple[int, int], service: str
) -> Callable[[AIOKafkaConsumer], Awaitable[tuple[Any, ...]]]:
    """The batch subscriber's poll. FastStream's own polls for `batch_timeout_ms` and, when
    that found nothing, sleeps as long again, deaf to records that arrive meanwhile: with a
    short timeout that is up to that long added to a hop (and a busy idle loop), with a
    long one a long deaf spell after every quiet moment. Waiting in `getmany` alone
    returns the moment records arrive.

    While records flow, fetches gather (`gathering`: `fetch_options`); after a poll that
    found nothing for two gathering waits (one fetch in flight is not a quiet spell), they
    ask for any record and wait longer (`IDLE_FETCH`). An idle service then makes two
    fetch cycles a second instead of one per gathering wait, and a record after a quiet
    spell is answered the moment it arrives instead of at the end of a gathering wait. The
    fetch in flight keeps the settings it was sent with.

    Each poll's return is stamped (`procure_consumer_last_poll_timestamp_seconds`): a
    poll returns at least every twice the gathering wait whether records came or not, so a
    stamp that stops moving is a consumer that no longer polls (a batch that never ends,
    a database retried without end, a subscriber that died), which no probe shows."""
    timeout_ms = 2 * gathering[1]
    polled = metrics.CONSUMER_LAST_POLL.labels(service)

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[Any, ...]:
        fetched = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        polled.set_to_current_time()
        fetch_with(consumer, gathering if fetched else IDLE_FETCH)
        return tuple(chain.from_iterable(fetched.values()))

    return get_msg


def fetch_with(consumer: AIOKafkaConsumer, options: tuple[int, int]) -> None:
    """The consumer's next fetches ask for `(fetch_min_bytes, fetch_max_wait_ms)`.
    aiokafka has no public way to change them once started: its fetcher reads these two
    attributes whenever it builds a fetch request."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None:
        fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = options


class ServiceRuntime:
    def __init__(
        self,
        name: str,
        metadata: MetaData,
        migrations: Path | None,
        handlers: EventHandlers | None = None,
        *,
        publishes: Sequence[EventSpec] = (),
        settings: ServiceSettings | None = None,
        gathering: Gathering = Gathering(),
    ) -> None:
        self.settings = settings or load_settings(name)
        self.gathering = gathering
        self.metadata = metadata
        self.migrations = migrations
        self.handlers = handlers or EventHandlers()
        self.publishes = tuple(publishes)
        self.db = Database(self.settings.database_url)
        self.broker = make_broker(self.settings)
        self.relay = OutboxRelay(self.settings, self.db, metadata)
        self.consumer = Consumer(
            self.settings, self.db, metadata, self.handlers, self.relay.publish, self.relay.wake
        )
        self.offsets = OffsetCommitter(self.settings.commit_interval_ms / 1000)
        self.inbox_pruner = InboxPruner(self.settings, self.db, metadata)
        self._stopping = False
        self.broker_ready = False
        # Why the broker is not connected yet, for /readyz: an operator tells a broker
        # still starting from credentials it refuses without reading the logs.
        self.kafka_error: str | None = None
        # Set by `run` (the service's own process): settle the heap once started.
        self.settle_heap_on_start = False
        # How long a stop waits to commit the offsets of what was applied. aiokafka retries
        # a commit while the group coordinator is away, without end: a stop then never
        # finished. Past this, what was applied since the last commit is read again by
        # the next owner and skipped by its inbox.
        self.stop_commit_timeout_s = STOP_COMMIT_TIMEOUT_S
        # How long a stop goes on publishing what the last commits left in the outbox.
        self.stop_drain_s = STOP_DRAIN_S
        # How long a stop waits for the broker's stop: the batch in hand, then the
        # consumer's close.
        self.stop_consumer_timeout_s = GRACEFUL_TIMEOUT_S + CONSUMER_CLOSE_S
        # Set by the process's signal handler (`_Server`): a start waiting for the
        # database gives up at its next attempt.
        self.start_aborted = False
        self.start_gave_up = False  # ... and it did (`StartAborted`)
        self._connect_task: asyncio.Task[None] | None = None
        self._declare_channels()

    @property
    def source(self) -> str:
        return self.settings.source

    def _declare_channels(self) -> None:
        s = self.settings
        for spec in self.publishes:  # publishers are declared so AsyncAPI documents them
            self.broker.publisher(
                s.topic(spec.topic),
                schema=spec.model,
                title=f"{spec.topic}:publish",
                description=spec.summary,
            )
        self.broker.publisher(
            s.topic(dlq_topic(s.service)),
            title=f"{dlq_topic(s.service)}:publish",
            description="Records this service could not process, byte for byte",
        )
        topics = self.handlers.topics
        if not topics:
            return

        fetch_min_bytes, fetch_max_wait_ms = fetch_options(s, self.gathering)

        subscriber = self.broker.subscriber(
            *[s.topic(t) for t in topics],
            group_id=s.group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            decoder=_the_message,
            parser=_any_headers,
            batch=True,
            max_records=s.consume_batch,
            fetch_min_bytes=fetch_min_bytes,
            fetch_max_wait_ms=fetch_max_wait_ms,
            listener=self.offsets.listener(),
            title=f"{s.service}:consume",
            description="Consumes: " + ", ".join(topics),
        )
        subscriber.get_msg = waiting_poll(  # type: ignore[method-assign,assignment]
            s.consume_batch, (fetch_min_bytes, fetch_max_wait_ms), s.service
        )

        @subscriber
        async def on_records(message: Any) -> None:
            msg = cast(KafkaMessage, message)
            raws = cast(tuple[ConsumerRecord, ...], msg.raw_message)
            records = [
                Record(
                    topic=raw.topic[len(s.topic_prefix) :],
                    partition=raw.partition,
                    offset=raw.offset,
                    key=raw.key,
                    value=raw.value,
                    headers=tuple(raw.headers or ()),
                )
                for raw in raws
            ]
            async with self.offsets.applying():  # a rebalance waits for this batch
                try:
                    await self.consumer.process_batch(records)
                finally:
                    clear()
                # Only now: the database commit (or the dead letters) is durable, so the
                # batch's positions may be committed, in the background (a stop waits for
                # them).
                self.offsets.done(msg.consumer, raws)
            if self._stopping:
                await self.offsets.flush()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        configure_logging(self.settings.service, self.settings.log_level)
        self._stopping = False
        await self._retry("database", self._migrate)
        self._connect_task = asyncio.create_task(self._connect(), name="broker-connect")
        self.relay.start()
        self.consumer.start_parking()
        self.inbox_pruner.start()
        if self.settle_heap_on_start:
            gc_tuning.settle_heap()

    async def _migrate(self) -> None:
        if self.migrations is None:  # tools and tests without migrations of their own
            async with self.db.engine.begin() as conn:
                await conn.run_sync(self.metadata.create_all)
            return
        await migrate.upgrade(self.db, self.migrations)

    async def _connect(self) -> None:
        s = self.settings
        # Each topic as the contract has it, whichever service creates it: one that only
        # consumes `catalog.*` may start before their producer and create them first.
        names = [spec.topic for spec in self.publishes] + list(self.handlers.topics)
        topics = {t: compacted(t) for t in names}
        topics[dlq_topic(s.service)] = False
        await self._retry(
            "kafka", lambda: ensure_topics(s, {s.topic(t): c for t, c in topics.items()})
        )
        await self._retry("kafka", self._start_broker)
        publishing = [s.topic(spec.topic) for spec in self.publishes]
        publishing.append(s.topic(dlq_topic(s.service)))
        await self._retry("kafka", lambda: self.relay.connect(publishing))
        self.broker_ready = True
        log.info("service started", port=s.port, topics=sorted(topics))

    async def _start_broker(self) -> None:
        try:
            await self.broker.start()
        except BaseException:
            # A subscriber whose consumer failed to start (a topic it may not read) keeps
            # it, connections and metadata task, and makes another on the next attempt.
            with contextlib.suppress(Exception):
                await self.broker.stop()
            raise

    async def _retry(self, what: str, step: Any) -> None:
        delay = 0.5
        while True:
            try:
                await step()
                return
            except Exception as exc:
                # The broker is retried whatever it answers (a node not ready in a rolling
                # restart, a refused login an operator fixes): this task ending stopped
                # all consuming while the service looked healthy, and said nothing.
                if what != "kafka" and not is_transient(exc):
                    raise
                if what == "database" and self.start_aborted:
                    self.start_gave_up = True
                    raise StartAborted("stopped while waiting for the database") from exc
                error = describe(exc, 300)
                if what == "kafka":
                    if is_bootstrap_failure(exc) and (why := await self._why_no_bootstrap()):
                        error = f"{error}: {why}"
                    error = self.kafka_error = self._scrub(error)
                log.warning(f"{what} not reachable yet; retrying", error=error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _scrub(self, text: str) -> str:
        """`text` without the Kafka password."""
        if secret := self.settings.kafka_sasl_password:
            text = text.replace(secret.get_secret_value(), "***")
        return text

    async def _why_no_bootstrap(self) -> str | None:
        try:  # a short wait per server: a silent one must not hold up the next attempt
            return await why_no_bootstrap(self.settings, timeout=3.0)
        except Exception as exc:  # a diagnosis, never a reason to stop retrying
            return f"(no diagnosis: {describe(exc, 100)})"

    async def stop(self) -> None:
        self._stopping = True  # the batch in hand commits its offsets itself
        try:
            async with asyncio.timeout(self.stop_commit_timeout_s):
                await self.offsets.flush()
        except TimeoutError:
            log.warning(
                "offsets not committed at stop: the group coordinator did not answer; "
                "the records applied since the last commit will be read again and skipped",
                timeout_s=self.stop_commit_timeout_s,
            )
        except Exception as exc:
            log.warning("offsets not committed at stop", error=repr(exc))
        if self._connect_task:
            with contextlib.suppress(Exception):  # how it ended: logged where it did
                await cancel_and_wait(self._connect_task)
        await self.consumer.stop_parking()
        await self.inbox_pruner.stop()
        # The broker first: its stop waits for the batch in hand, whose dead letters go
        # out through the relay's producer, so that producer is closed after it.
        try:
            async with asyncio.timeout(self.stop_consumer_timeout_s):
                await self.broker.stop()
        except TimeoutError:
            log.warning("consumer not closed in time at stop (the group coordinator away?)")
        except Exception as exc:
            log.warning("consumer not closed cleanly at stop", error=describe(exc, 200))
        await self.relay.stop(drain_s=self.stop_drain_s if self.broker_ready else 0.0)
        await self.offsets.stop()
        await self.db.dispose()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(3):
                await self.db.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable ({type(exc).__name__})"
        if not self.broker_ready:
            error = self.kafka_error
            checks["kafka"] = f"connecting (last attempt: {error})" if error else "connecting"
        else:
            try:
                checks["kafka"] = "ok" if await self.relay.reachable(timeout=3) else "unreachable"
            except Exception as exc:
                checks["kafka"] = f"unreachable ({type(exc).__name__})"
        return checks

    # --- units of work (HTTP routes) ---------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self, cause: CloudEvent | None = None) -> AsyncIterator[UnitOfWork]:
        """One transaction whose emitted events go through the outbox."""
        async with self.db.session() as session:
            uow = UnitOfWork(session, self.source, cause=cause)
            yield uow
            await write_effects(session, self.metadata, [uow])
        if uow.outgoing:
            self.relay.wake()

    def asyncapi(self) -> dict[str, Any]:
        spec = AsyncAPI(self.broker, title=f"procure {self.settings.service}", version="1.0.0")
        return spec.to_specification().to_jsonable()


def run(app: Any, runtime: ServiceRuntime) -> None:
    """Serve a service's FastAPI app (its lifespan starts the runtime)."""
    runtime.settle_heap_on_start = True
    # Before uvicorn's first lines, so they are JSON too (the runtime's start does it again).
    configure_logging(runtime.settings.service, runtime.settings.log_level)
    _serve(
        runtime,
        app,
        host=runtime.settings.host,
        port=runtime.settings.port,
        loop=runtime.settings.event_loop,
        log_config=None,
        access_log=False,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, whose SIGTERM / SIGINT also ends a start still waiting for the
    database: uvicorn looks at its exit flag only once startup is over, so a pod deleted
    during a database outage waited for its SIGKILL."""

    def __init__(self, config: uvicorn.Config, runtime: ServiceRuntime) -> None:
        super().__init__(config)
        self.runtime = runtime

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.runtime.start_aborted = True


def _serve(runtime: ServiceRuntime, app: Any, **options: Any) -> None:
    """What `uvicorn.run` does for one process, with `_Server`."""
    server = _Server(uvicorn.Config(app, **options), runtime)
    try:
        server.run()  # a failed start exits (3), as it does under `uvicorn.run`
    except SystemExit:
        if not runtime.start_gave_up:
            raise
        log.info("stopped as asked while waiting for the database")  # no failure
        return
    except KeyboardInterrupt:  # Ctrl-C, after a clean shutdown (as `uvicorn.run`)
        return
    if not server.started:
        sys.exit(3)
