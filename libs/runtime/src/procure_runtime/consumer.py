"""The consuming side every service shares: decode, dead-letter, skip, dedupe (inbox),
apply in one transaction with the outbox, park what arrives too early, retry.

Per record: not JSON / not an envelope / unknown type / invalid data -> the DLQ byte for
byte; a higher version of a known type -> skipped and counted; an event id already in
the inbox -> skipped; else the handler runs in a transaction that also records the event
id and the outgoing events. A handler raising `Park` waits in the parking lot and is
retried after later events apply, or dead-lettered after `PROCURE_PARK_TIMEOUT_S`.
Database or broker outages are retried without end (nothing is dead-lettered for them);
a value the database refuses as data is dead-lettered at once (`invalid-data`); any other
handler error is retried with backoff, then dead-lettered.
"""

import asyncio
import base64
import collections
import contextlib
import enum
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar, Union

from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy import MetaData, delete, func, select, update
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import CloudEvent
from procure_contracts.registry import (
    EventSpec,
    dlq_topic,
    known_base,
    spec_for_type,
    split_version,
    typed_envelope,
)
from procure_contracts.shapes import Shape
from procure_runtime import metrics
from procure_runtime.db import Database, insert_ignore, insert_many, rows_affected, utcnow
from procure_runtime.errors import describe
from procure_runtime.logging import bind, get_logger
from procure_runtime.outbox import EventTooLarge, write_effects
from procure_runtime.settings import ServiceSettings
from procure_runtime.tasks import cancel_and_wait
from procure_runtime.text import unstorable_text
from procure_runtime.uow import UnitOfWork

log = get_logger("procure.consumer")

Handler = Callable[[UnitOfWork, Any, CloudEvent], Awaitable[None]]


@dataclass(frozen=True)
class Applying:
    """One event of a run handed to a batch handler, with its own unit of work (its
    emitted events name it as their cause); every unit of work shares one session."""

    uow: UnitOfWork
    data: Any
    event: CloudEvent


BatchHandler = Callable[[list[Applying]], Awaitable[None]]


class Park(Exception):
    """Raised by a handler when the event needs data this service has not seen yet."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Reject(Exception):
    """Raised by a handler when a well-formed event breaks a rule it cannot ever meet
    (e.g. reservations over the quantity): dead-lettered at once, not retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    DEAD_LETTERED = "dead-lettered"
    SKIPPED = "skipped"


class _Duplicate(Exception):
    pass


class _RunFailed(Exception):
    """A handler raised in a batch: `pending[start:end]` is the run it was applying."""

    def __init__(self, start: int, end: int) -> None:
        super().__init__(start, end)
        self.start, self.end = start, end


# A record this large is a bulk event: a PO, a receipt or a delivery of a few dozen lines
# (~250 bytes a line), where a per-charge event is ~1.5 KB. Applying one takes tens of
# milliseconds, well over a hundred on a busy machine (bench/levers.md, lever 21).
BULK_BYTES = 8 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True)
class Record:
    topic: str  # without the prefix
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone (a record with no value at all)
    # As the producer sent them (a CloudEvents binding's `content-type`, a trace id):
    # carried through parking into a dead letter, and back by a replay.
    headers: tuple[tuple[str, bytes | None], ...] = ()


#: Failed publishes of one dead letter after which it counts as stuck (an error logged,
#: `procure_dead_letters_stuck` up): about 30 s at the retry backoff's 5 s ceiling.
STUCK_AFTER = 10
STUCK_REPEAT = 60

#: The headers a dead letter gets (spec section 4) and the runtime's own marks: an
#: original record's header of the same name gives way to the runtime's.
DEAD_LETTER_HEADERS = frozenset(
    {
        "x-original-topic",
        "x-original-partition",
        "x-original-offset",
        "x-error-type",
        "x-error-message",
        "x-failed-at",
        "x-attempts",
        "x-value-omitted",
    }
)


def stored_headers(headers: tuple[tuple[str, bytes | None], ...]) -> list[list[str | None]]:
    """A record's headers as the parked table's JSON holds them: [name, base64 value]
    pairs, in order (Kafka allows a name twice, and a value of any bytes or none)."""
    return [[k, None if v is None else base64.b64encode(v).decode()] for k, v in headers]


def loaded_headers(stored: Any) -> tuple[tuple[str, bytes | None], ...]:
    """`stored_headers` undone. A row parked before headers were kept holds `{}`."""
    if not isinstance(stored, list):
        return ()
    return tuple((k, None if v is None else base64.b64decode(v)) for k, v in stored)


def bulk_last(pending: list[tuple[Record, _T]]) -> list[list[tuple[Record, _T]]]:
    """The batch as the transactions to apply it in: a stream (topic and partition) that
    holds a bulk event goes after the others, in a transaction of its own, so that the
    small events fetched with a bulk event commit, and their outgoing events leave,
    without waiting for it (lever 47). Order holds within each stream, which is all
    Kafka orders: the services give the same end state in any order across streams."""
    bulky = {(r.topic, r.partition) for r, _ in pending if len(r.value or b"") >= BULK_BYTES}
    if not bulky:
        return [pending]
    light = [p for p in pending if (p[0].topic, p[0].partition) not in bulky]
    heavy = [p for p in pending if (p[0].topic, p[0].partition) in bulky]
    return [group for group in (light, heavy) if group]


class EventHandlers:
    """A service's handlers, one per event type: `@handlers.on(spec)`."""

    def __init__(self) -> None:
        self._by_type: dict[str, tuple[EventSpec, Handler]] = {}
        self._batch: dict[str, BatchHandler] = {}
        self._envelopes: tuple[int, TypeAdapter[Any]] | None = None  # (types, adapter)

    def on(self, *specs: EventSpec) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            for spec in specs:
                self._by_type[spec.type] = (spec, fn)
            return fn

        return register

    def on_batch(self, *specs: EventSpec) -> Callable[[BatchHandler], BatchHandler]:
        """A handler taking a run of events of one type at once, so that it can read and
        write them in a few statements instead of a few each. The consumer hands it
        consecutive events of a fetch with distinct keys (one event per key and run); it
        must leave the state that applying them one at a time, in order, would. One event
        alone (retries, parking, one-record fetches) is a run of one."""

        def register(fn: BatchHandler) -> BatchHandler:
            async def one(uow: UnitOfWork, data: Any, event: CloudEvent) -> None:
                await fn([Applying(uow, data, event)])

            for spec in specs:
                self._by_type[spec.type] = (spec, one)
                self._batch[spec.type] = fn
            return fn

        return register

    def get(self, type_: str) -> tuple[EventSpec, Handler] | None:
        return self._by_type.get(type_)

    def batch_of(self, type_: str) -> BatchHandler | None:
        return self._batch.get(type_)

    @property
    def topics(self) -> list[str]:
        return sorted({spec.topic for spec, _ in self._by_type.values()})

    def versions(self, base_type: str) -> list[int]:
        return [s.version for s, _ in self._by_type.values() if s.base_type == base_type]

    def envelopes(self) -> TypeAdapter[Any]:
        """Validates a record of any type handled here, envelope and data in one pass
        (the union is picked by `type`). For the types registered so far: types are only
        ever added, so their number tells whether the one made last is still whole."""
        if self._envelopes is None or self._envelopes[0] != len(self._by_type):
            self._envelopes = (len(self._by_type), _envelopes(tuple(sorted(self._by_type))))
        return self._envelopes[1]


@functools.cache
def _envelopes(types: tuple[str, ...]) -> TypeAdapter[Any]:
    models = [typed_envelope(spec) for t in types if (spec := spec_for_type(t)) is not None]
    if len(models) == 1:
        return TypeAdapter(models[0])
    union: Any = Annotated[Union[tuple(models)], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(union)


def sqlstate(exc: DBAPIError) -> str | None:
    """The database's SQLSTATE for the error, where the driver gives one."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code if isinstance(code, str) else None


def is_data_exception(exc: BaseException) -> bool:
    """A value the database refused as data (SQLSTATE class 22: too long for its column,
    out of range, not a number): the same input meets it again. SQLAlchemy's asyncpg
    adapter raises these as a plain `DBAPIError`, not a `DataError`, so the class alone
    does not tell."""
    if isinstance(exc, DataError):
        return True
    return isinstance(exc, DBAPIError) and (sqlstate(exc) or "").startswith("22")


#: SQLSTATE classes of a server in trouble, not of the event: a lost connection (08),
#: a serialization failure or deadlock (40), no disk, memory or connections left (53),
#: a statement canceled or timed out, the server shutting down (57), an I/O error (58).
#: Retried without end as an outage is: a full disk dead-lettered every event it met.
TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
#: A read-only server (a replica promoted late after a failover); a lock wait timed out.
TRANSIENT_STATES = frozenset({"25006", "55P03"})


def is_transient(exc: BaseException) -> bool:
    """Infrastructure trouble (database or broker away, lock timeouts): retry, never DLQ."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = sqlstate(exc) or ""
        return code.startswith(TRANSIENT_CLASSES) or code in TRANSIENT_STATES
    name = type(exc).__name__
    return "Connection" in name or "KafkaTimeout" in name or name == "CannotConnectNowError"


@dataclass
class _Decoded:
    event: CloudEvent
    spec: EventSpec
    handler: Handler
    data: Shape


@dataclass
class Consumer:
    settings: ServiceSettings
    db: Database
    metadata: MetaData
    handlers: EventHandlers
    publish: Callable[..., Awaitable[Any]]  # OutboxRelay.publish: (value, topic, key=, headers=)
    on_commit: Callable[[], None] = lambda: None  # wakes the outbox relay
    # Called after every commit that applied an event (e.g. the notifier's sender, which
    # then mails what the commit queued instead of waiting for its next poll).
    on_applied: Callable[[], None] = lambda: None
    _parking_wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Whether this instance may have parked events: sweeping after every applied event
    # is only worth it then (the timer still sweeps every second, for other instances').
    has_parked: bool = True
    _parking_task: asyncio.Task[None] | None = None

    @property
    def source(self) -> str:
        return self.settings.source

    # --- one record -------------------------------------------------------------------

    async def process(self, record: Record) -> Outcome:
        service = self.settings.service
        metrics.CONSUMED.labels(service, record.topic).inc()
        decoded = await self._decode(record)
        if isinstance(decoded, Outcome):
            return decoded
        return await self._apply_one(record, decoded)

    async def _apply_one(self, record: Record, decoded: _Decoded) -> Outcome:
        bind(
            event_id=decoded.event.id,
            correlation_id=decoded.event.correlationid,
            type=decoded.event.type,
        )
        outcome = await self._apply_with_retries(record, decoded, from_parking=False)
        if outcome is Outcome.APPLIED and self.has_parked:
            self._parking_wake.set()
        return outcome

    # --- a batch of records -------------------------------------------------------------

    async def process_batch(self, records: list[Record]) -> None:
        """What `process` does for each record, with every applicable record of the batch
        in one transaction: one commit (and, by the caller, one offset commit) for the
        batch instead of one per record. Order is kept within each stream (topic and
        partition), so per-key order holds; a stream holding a bulk event applies after
        the others, in a transaction of its own (`bulk_last`). Bad records are
        dead-lettered first (before any offset is committed, as one at a time). If
        anything goes wrong in a transaction (an event parks, a handler fails or
        rejects, the database is away), it is rolled back whole and its records go one
        at a time, with the usual rules for each: the fast path never decides an outcome
        the slow path would not. Only the run of records that failed goes one at a time:
        the records before it apply again as a batch, and those after it continue as
        one."""
        if len(records) == 1:
            await self.process(records[0])
            return
        service = self.settings.service
        # A metric's labels are looked up once per batch (a lookup costs twice the count).
        for topic, n in collections.Counter(record.topic for record in records).items():
            metrics.CONSUMED.labels(service, topic).inc(n)
        pending: list[tuple[Record, _Decoded]] = []
        for record in records:
            decoded = await self._decode(record)
            if isinstance(decoded, _Decoded):
                pending.append((record, decoded))
        for group in bulk_last(pending):
            await self._apply_in_batches(group)

    async def _apply_in_batches(self, pending: list[tuple[Record, _Decoded]]) -> None:
        while pending:
            try:
                applied = await self._apply_batch(pending)
            except asyncio.CancelledError:
                raise
            except _RunFailed as failed:
                log.info(
                    "batch rolled back; the failing run goes one record at a time",
                    error=repr(failed.__cause__),
                    records=failed.end - failed.start,
                )
                await self._apply_in_batches(pending[: failed.start])
                for record, decoded in pending[failed.start : failed.end]:
                    await self._apply_one(record, decoded)
                pending = pending[failed.end :]
                continue
            except Exception as exc:  # the claim or the commit: no run to blame
                log.info("batch rolled back; one record at a time", error=repr(exc))
                for record, decoded in pending:
                    await self._apply_one(record, decoded)
                return
            if applied and self.has_parked:
                self._parking_wake.set()
            return

    async def _claim(self, session: AsyncSession, topics: dict[str, str]) -> set[str]:
        """Claim event ids (id -> topic) in the inbox with one insert-or-ignore: the ids
        this transaction claimed (an id already there is a duplicate). One statement,
        built and prepared once, for a batch and for a batch of one alike: building
        `insert().values()` for every record cost as much CPU as the claim itself."""
        inbox = self.metadata.tables["inbox"]
        now = utcnow()
        rows = [{"event_id": eid, "topic": t, "processed_at": now} for eid, t in topics.items()]
        return {r.event_id for r in await insert_many(session, inbox, rows, inbox.c.event_id)}

    async def _apply_batch(self, pending: list[tuple[Record, _Decoded]]) -> int:
        """One transaction for the batch: claim every event id in the inbox with one
        statement (an id already there, or twice in the batch, is a duplicate and
        skipped), run the handlers in order, then write every unit of work's deferred rows
        and outgoing events (`write_effects`). Returns how many records applied."""
        started = time.perf_counter()
        uows: list[UnitOfWork] = []
        applied: list[_Decoded] = []
        duplicates: list[Record] = []
        first: dict[str, Record] = {}
        for record, d in pending:
            first.setdefault(d.event.id, record)
        async with self.db.session() as session:
            claimed = await self._claim(session, {eid: r.topic for eid, r in first.items()})
            runs: list[list[tuple[Record, _Decoded]]] = []
            keys: set[bytes | None] = set()
            for record, d in pending:
                if d.event.id not in claimed or first[d.event.id] is not record:
                    duplicates.append(record)
                    continue
                run = runs[-1] if runs else None
                if (
                    run is not None
                    and run[0][1].event.type == d.event.type
                    and self.handlers.batch_of(d.event.type) is not None
                    and record.key not in keys
                ):
                    run.append((record, d))
                else:
                    runs.append([(record, d)])
                    keys = set()
                keys.add(record.key)
            position = {id(record): n for n, (record, _) in enumerate(pending)}
            for run in runs:
                items = [
                    Applying(UnitOfWork(session, self.source, cause=d.event), d.data, d.event)
                    for _, d in run
                ]
                many = self.handlers.batch_of(run[0][1].event.type)
                try:
                    if many is not None and len(run) > 1:
                        bind(event_id=None, correlation_id=None, type=run[0][1].event.type)
                        await many(items)
                    else:
                        d = run[0][1]
                        bind(
                            event_id=d.event.id,
                            correlation_id=d.event.correlationid,
                            type=d.event.type,
                        )
                        await d.handler(items[0].uow, d.data, d.event)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # rolls the whole transaction back
                    start, end = position[id(run[0][0])], position[id(run[-1][0])] + 1
                    raise _RunFailed(start, end) from exc
                uows += [item.uow for item in items]
                applied += [d for _, d in run]
            await write_effects(session, self.metadata, uows)
        each = (time.perf_counter() - started) / len(pending)
        for type_, n in collections.Counter(d.event.type for d in applied).items():
            timed = metrics.HANDLER_SECONDS.labels(self.settings.service, type_)
            for _ in range(n):
                timed.observe(each)
        for record in duplicates:
            self._duplicate(record)
        if any(uow.outgoing for uow in uows):
            self.on_commit()
        if applied:
            self.on_applied()
        return len(applied)

    async def _decode(self, record: Record) -> _Decoded | Outcome:
        # What is logged while decoding (a dead letter) is not the previous event's.
        bind(event_id=None, correlation_id=None, type=None)
        decoded = await self._decode_event(record)
        # U+0000 in an event this service applies: refused here, the same on every
        # database, not by PostgreSQL in a handler (SQLite stored it). A lone surrogate
        # never gets this far: the event's JSON parser refuses it. One scan of the bytes
        # unless they escape such a character.
        if isinstance(decoded, _Decoded) and (why := unstorable_text(record.value or b"")):
            return await self.dead_letter(record, "invalid-data", why)
        return decoded

    async def _decode_event(self, record: Record) -> _Decoded | Outcome:
        if record.value is None:  # dead-lettered as it came: with no value, not an empty one
            return await self.dead_letter(
                record, "invalid-json", "a tombstone (no value): no event to apply"
            )
        # The common case in one pass: a type handled here, on its topic, valid. Anything
        # else is decoded again below, which says what is wrong with it.
        try:
            typed = self.handlers.envelopes().validate_json(record.value)
        except ValidationError:
            pass
        else:
            found = self.handlers.get(typed.type)
            if found is not None and found[0].topic == record.topic:
                return _Decoded(typed, found[0], found[1], typed.data)
        try:
            event = CloudEvent.from_bytes(record.value)
        except ValidationError as exc:
            not_json = any(e["type"] == "json_invalid" for e in exc.errors())
            kind = "invalid-json" if not_json else "invalid-envelope"
            return await self.dead_letter(record, kind, _brief(exc))
        found = self.handlers.get(event.type)
        if found is None:
            parts = split_version(event.type)
            family = known_base(event.type)
            if parts and family and self.handlers.versions(family.base_type):
                if parts[1] > max(self.handlers.versions(family.base_type)):
                    metrics.SKIPPED.labels(
                        self.settings.service, record.topic, "newer-version"
                    ).inc()
                    log.info("skipped newer version of a known type", type=event.type)
                    return Outcome.SKIPPED
            why = "unknown type" if spec_for_type(event.type) is None else "type not consumed here"
            return await self.dead_letter(record, "unknown-type", f"{why}: {event.type!r}")
        spec, handler = found
        if spec.topic != record.topic:
            return await self.dead_letter(
                record, "unknown-type", f"{event.type!r} does not belong on topic {record.topic!r}"
            )
        try:
            data = spec.model.model_validate(event.data)
        except ValidationError as exc:
            return await self.dead_letter(record, "invalid-data", _brief(exc))
        return _Decoded(event, spec, handler, data)

    async def _apply_with_retries(
        self, record: Record, d: _Decoded, *, from_parking: bool
    ) -> Outcome:
        attempts = 0
        backoff = self.settings.retry_backoff_s
        while True:
            attempts += 1
            try:
                return await self._apply(record, d, from_parking=from_parking)
            except _Duplicate:
                return self._duplicate(record)
            except Reject as exc:
                return await self._give_up(
                    record, d, "rejected", exc.reason, attempts, from_parking
                )
            except EventTooLarge as exc:  # the same event would make the same one again
                return await self._give_up(
                    record, d, "rejected", exc.detail, attempts, from_parking
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.FAILED.labels(self.settings.service, record.topic).inc()
                if is_data_exception(exc):  # a retry would meet it again, the consumer held
                    reason = f"the database refused a value: {describe(exc, 1900)}"
                    return await self._give_up(
                        record, d, "invalid-data", reason, attempts, from_parking
                    )
                if is_transient(exc):
                    log.warning("infrastructure error; retrying", error=repr(exc), attempt=attempts)
                    attempts -= 1  # outages do not count towards dead-lettering
                elif attempts >= self.settings.handler_max_attempts:
                    log.error(
                        "handler keeps failing; dead-lettering", error=repr(exc), attempts=attempts
                    )
                    return await self._give_up(
                        record, d, "handler-error", repr(exc), attempts, from_parking
                    )
                else:
                    log.warning("handler failed; retrying", error=repr(exc), attempt=attempts)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _apply(self, record: Record, d: _Decoded, *, from_parking: bool) -> Outcome:
        """One transaction: claim the event id in the inbox, run the handler, write the
        outbox. The inbox insert comes first: a duplicate costs one statement, and a
        concurrent instance applying the same event waits on that row, then sees it."""
        started = time.perf_counter()
        try:
            async with self.db.session() as session:
                if not await self._claim(session, {d.event.id: record.topic}):
                    raise _Duplicate
                uow = UnitOfWork(session, self.source, cause=d.event)
                await d.handler(uow, d.data, d.event)
                if from_parking:  # settled here, unless another instance settled it first
                    parked = self.metadata.tables["parked"]
                    gone = await session.execute(
                        delete(parked).where(parked.c.event_id == d.event.id)
                    )
                    if rows_affected(gone) != 1:
                        raise _Duplicate
                await write_effects(session, self.metadata, [uow])
        except Park as park:  # the whole transaction, inbox row included, was rolled back
            async with self.db.session() as session:
                await self._park(
                    session, record, d.event.id, park.reason, from_parking=from_parking
                )
            self.has_parked = True
            return Outcome.PARKED
        metrics.HANDLER_SECONDS.labels(self.settings.service, d.event.type).observe(
            time.perf_counter() - started
        )
        if uow.outgoing:
            self.on_commit()
        self.on_applied()
        return Outcome.APPLIED

    def _duplicate(self, record: Record) -> Outcome:
        metrics.SKIPPED.labels(self.settings.service, record.topic, "duplicate").inc()
        return Outcome.DUPLICATE

    # --- dead letters -----------------------------------------------------------------

    async def dead_letter(
        self, record: Record, error_type: str, message: str, *, attempts: int = 1
    ) -> Outcome:
        marks = {
            "x-original-topic": self.settings.topic(record.topic),
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
            "x-error-type": error_type,
            "x-error-message": message[:2000],
            "x-failed-at": datetime.now(UTC).isoformat(),
            "x-attempts": str(attempts),
        }
        headers = [h for h in record.headers if h[0] not in DEAD_LETTER_HEADERS]
        headers += [(k, v.encode()) for k, v in marks.items()]
        backoff, failed = self.settings.retry_backoff_s, 0
        stuck = metrics.DEAD_LETTERS_STUCK.labels(self.settings.service)
        try:
            while True:
                try:
                    await self.publish(
                        record.value,
                        self.settings.topic(dlq_topic(self.settings.service)),
                        key=record.key,
                        headers=headers,
                    )
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never drop: wait for the broker to take it
                    failed += 1
                    if failed >= STUCK_AFTER and (failed - STUCK_AFTER) % STUCK_REPEAT:
                        log.debug("dead-letter publish failed; retrying", error=repr(exc))
                    elif failed >= STUCK_AFTER:
                        if failed == STUCK_AFTER:
                            stuck.inc()
                        # Past a broker's restart: a refusal for good (no right to write
                        # the DLQ topic, say) holds this partition until someone acts.
                        # Said again every STUCK_REPEAT attempts (about 5 minutes).
                        log.error(
                            "dead letter refused again and again; nothing after it on its "
                            "partition is applied until the broker takes it",
                            topic=record.topic,
                            partition=record.partition,
                            offset=record.offset,
                            attempts=failed,
                            error=repr(exc),
                        )
                    else:
                        log.warning("dead-letter publish failed; retrying", error=repr(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            if failed >= STUCK_AFTER:
                stuck.dec()
        metrics.DEAD_LETTERED.labels(self.settings.service, record.topic, error_type).inc()
        log.warning(
            "dead-lettered",
            topic=record.topic,
            offset=record.offset,
            error_type=error_type,
            error=message,
        )
        return Outcome.DEAD_LETTERED

    # --- parking ----------------------------------------------------------------------

    async def _park(
        self, session: Any, record: Record, event_id: str, reason: str, *, from_parking: bool
    ) -> None:
        parked = self.metadata.tables["parked"]
        if from_parking:
            await session.execute(
                update(parked)
                .where(parked.c.event_id == event_id)
                .values(attempts=parked.c.attempts + 1, reason=reason)
            )
            return
        await session.execute(
            insert_ignore(parked, self.db.dialect).values(
                event_id=event_id,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                headers=stored_headers(record.headers),
                reason=reason,
                attempts=1,
                parked_at=utcnow(),
            )
        )
        metrics.PARKED.labels(self.settings.service, record.topic).inc()
        log.info("parked", reason=reason)

    async def _give_up(
        self,
        record: Record,
        d: _Decoded,
        error_type: str,
        message: str,
        attempts: int,
        from_parking: bool,
    ) -> Outcome:
        if from_parking:
            return await self._dead_letter_parked(record, d.event.id, error_type, message, attempts)
        return await self.dead_letter(record, error_type, message, attempts=attempts)

    async def _dead_letter_parked(
        self, record: Record, event_id: str, error_type: str, message: str, attempts: int
    ) -> Outcome:
        """Dead-letter a parked event once, and never lose it: its row is deleted in a
        transaction that commits only after the broker took the dead letter (a crash or
        a stop before that leaves the row, to be tried again). Another instance's sweep
        applying the event meanwhile deletes the same row in its own transaction: the
        first to delete it settles the event, and the other does nothing."""
        parked = self.metadata.tables["parked"]
        if self.db.dialect == "sqlite":
            # SQLite's write lock is the whole database's, and a dead letter waits for the
            # broker for as long as it is away: every request and the relay would wait on
            # it. Sent first, then settled; a crash between the two sends it again. (One
            # process writes an SQLite file, so no other instance settles it meanwhile.)
            async with self.db.session() as session:
                if (
                    await session.scalar(select(parked.c.id).where(parked.c.event_id == event_id))
                    is None
                ):
                    return Outcome.DUPLICATE
            outcome = await self.dead_letter(record, error_type, message, attempts=attempts)
            await self._unpark(event_id)
            return outcome
        async with self.db.session() as session:
            gone = await session.execute(delete(parked).where(parked.c.event_id == event_id))
            if rows_affected(gone) != 1:
                return Outcome.DUPLICATE
            return await self.dead_letter(record, error_type, message, attempts=attempts)

    async def _unpark(self, event_id: str) -> None:
        parked = self.metadata.tables["parked"]
        async with self.db.session() as session:
            await session.execute(delete(parked).where(parked.c.event_id == event_id))

    def start_parking(self) -> None:
        self._parking_task = asyncio.create_task(self._parking_loop(), name="parking-lot")

    async def stop_parking(self) -> None:
        if self._parking_task:
            await cancel_and_wait(self._parking_task)

    async def _parking_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._parking_wake.wait()
            self._parking_wake.clear()
            try:
                while await self.sweep_parked():
                    pass  # something applied: what waited on it may apply now
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("parking sweep failed; will retry", error=repr(exc))

    async def sweep_parked(self) -> bool:
        """Retry every parked event in arrival order; dead-letter those parked too long.
        Returns True when at least one event applied."""
        parked = self.metadata.tables["parked"]
        async with self.db.session() as session:
            rows = (await session.execute(select(parked).order_by(parked.c.id).limit(1000))).all()
        metrics.PARKED_NOW.labels(self.settings.service).set(len(rows))
        self.has_parked = bool(rows)
        applied = False
        deadline = utcnow() - timedelta(seconds=self.settings.park_timeout_s)
        for row in rows:
            record = Record(
                row.topic,
                row.partition,
                row.offset,
                row.key,
                row.value,
                loaded_headers(row.headers),
            )
            decoded = await self._decode(record)
            if isinstance(decoded, Outcome):  # cannot happen unless the code changed under it
                await self._unpark(row.event_id)
                continue
            bind(
                event_id=decoded.event.id,
                correlation_id=decoded.event.correlationid,
                type=decoded.event.type,
            )
            outcome = await self._apply_with_retries(record, decoded, from_parking=True)
            if outcome is Outcome.APPLIED:
                applied = True
            elif outcome is Outcome.DUPLICATE:
                await self._unpark(row.event_id)
            elif outcome is Outcome.PARKED and row.parked_at < deadline:
                await self._dead_letter_parked(
                    record,
                    row.event_id,
                    "parked-timeout",
                    f"parked since {row.parked_at.isoformat()}: {row.reason}",
                    row.attempts + 1,
                )
        return applied

    async def parked_count(self) -> int:
        parked = self.metadata.tables["parked"]
        async with self.db.session() as session:
            return int(await session.scalar(select(func.count()).select_from(parked)) or 0)


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:10]
    )
