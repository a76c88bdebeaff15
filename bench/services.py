"""A service's hot path in this process: the real `build(settings)` app and runtime, fed
N events published before it starts (shipping: after the charges it needs exist), timed
from the first applied event to the last effect (inbox row, or the relay's last round
that published an outgoing event)."""

import asyncio
import contextlib
import gc
import importlib
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench import env
from bench import events as e
from bench.events import Msg
from bench.sampling import machine_busy_s
from procure_devstack import factories as f
from procure_devstack.testing import running
from procure_runtime import gc_tuning, metrics
from procure_runtime.db import utcnow
from procure_runtime.kafka import ensure_topics
from procure_runtime.settings import ServiceSettings

POLL_S = 0.2
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def _label(statement: str) -> str:
    verb = statement.split(None, 1)[0].upper()
    table = _TABLE.search(statement)
    return f"{verb} {table.group(1)}" if table else statement.split("(")[0].strip()[:40]


def hold_until_set(runtime: Any) -> asyncio.Event:
    """The consumer applies nothing until the returned event is set: counting and timing
    start with the first event, after the service's startup."""
    gate = asyncio.Event()
    process_batch = runtime.consumer.process_batch

    async def gated(records: Any) -> Any:
        await gate.wait()
        return await process_batch(records)

    runtime.consumer.process_batch = gated
    return gate


@contextlib.contextmanager
def profiling(to: Path | None) -> Iterator[None]:
    """pyinstrument over the whole thread (every task: consumer, relay, parking lot)."""
    if to is None:
        yield
        return
    from pyinstrument import Profiler

    from bench.profile import summary

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        to.with_suffix(".txt").write_text(profiler.output_text(show_all=False))
        if profiler.last_session is not None:
            to.with_name(f"{to.name}-summary.txt").write_text(summary(profiler.last_session))


@contextlib.asynccontextmanager
async def settled_heap() -> AsyncIterator[None]:
    """What a service process does once started (`procure_runtime.gc_tuning`), undone
    afterwards so that each scenario starts from the same collector settings."""
    threshold = gc.get_threshold()
    gc_tuning.settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@contextlib.contextmanager
def counting(engine: AsyncEngine) -> Iterator[Counter[str]]:
    """Database statements and commits, and Kafka offset commits, while in the block."""
    counts: Counter[str] = Counter()

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts[_label(statement)] += 1

    def on_commit(conn: Any) -> None:
        counts["COMMIT (database)"] += 1

    original = AIOKafkaConsumer.commit

    async def commit(self: AIOKafkaConsumer, *args: Any, **kw: Any) -> None:
        counts["offset commit (Kafka)"] += 1
        await original(self, *args, **kw)

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", on_execute)
    event.listen(sync, "commit", on_commit)
    AIOKafkaConsumer.commit = commit  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        AIOKafkaConsumer.commit = original  # type: ignore[method-assign]
        event.remove(sync, "before_cursor_execute", on_execute)
        event.remove(sync, "commit", on_commit)


@dataclass(frozen=True)
class Scenario:
    name: str
    service: str
    topic: str  # the measured input topic
    make: Callable[[int], tuple[list[Msg], list[Msg]]]  # n -> (setup, measured)
    # One of `bench run`'s by default; the others are other consumers of the flow's
    # events, timed by `bench.apply` (and by `bench run --services NAME`).
    main: bool = True


def _after_won(then: Callable[[list[f.ChargeSpec]], list[Msg]]) -> Callable[[int], Any]:
    """n charges won (not timed), then `then(charges)` (timed)."""

    def make(n: int) -> tuple[list[Msg], list[Msg]]:
        won, charges = e.opportunities(n)
        return won, then(charges)

    return make


def _received_then_delivered(n: int) -> tuple[list[Msg], list[Msg]]:
    charges = e.opportunities(n)[1]
    return e.units_received(charges), e.deliveries(charges)


def _fresh(then: Callable[[list[f.ChargeSpec]], list[Msg]]) -> Callable[[int], Any]:
    """`then` for n charges never seen before, with no setup."""
    return lambda n: ([], then([f.charge(f.product(), quantity=2) for _ in range(n)]))


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("quotes", "quotes", "opportunity.won", lambda n: ([], e.opportunities(n)[0])),
        # Issue 10's "quotes' ledger": the events that move a charge's units (a PO, a
        # receipt, a delivery), several a charge where `opportunity.won` is one a deal.
        Scenario("quotes-ledger", "quotes", "po.submitted", _after_won(e.po_submitted_for)),
        Scenario("purchasing", "purchasing", "charge.need_order", lambda n: ([], e.need_orders(n))),
        Scenario("receiving", "receiving", "po.submitted", lambda n: ([], e.po_submitted(n))),
        Scenario("shipping", "shipping", "units.received", _after_won(e.units_received)),
        Scenario(
            "inventory-receipts", "inventory", "units.received", _fresh(e.units_received), False
        ),
        Scenario(
            "inventory-deliveries",
            "inventory",
            "shipment.delivered",
            _received_then_delivered,
            False,
        ),
        Scenario("shipping-ready", "shipping", "charge.ready", _fresh(e.charges_ready), False),
        Scenario("quotes-created", "quotes", "charge.created", _fresh(e.charges_created), False),
        Scenario(
            "notifier-receipts", "notifier", "units.received", _after_won(e.units_received), False
        ),
    )
}
MAIN = [name for name, s in SCENARIOS.items() if s.main]


async def publish(settings: ServiceSettings, msgs: list[Msg]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        futures = [await producer.send(settings.topic(m.topic), m.value, key=m.key) for m in msgs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def published(settings: ServiceSettings, topics: list[str]) -> int:
    """Records on the (prefixed) output topics: the sum of their end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        total = 0
        for topic in topics:
            name = settings.topic(topic)
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(name) or set()
            ends = await consumer.end_offsets([TopicPartition(name, p) for p in parts])
            total += sum(ends.values())
        return total
    finally:
        await consumer.stop()


class Watch:
    """Reads the service's inbox and outbox on a connection of its own (no write lock)."""

    def __init__(self, url: str, metadata: Any) -> None:
        self.engine: AsyncEngine = create_async_engine(url)
        self.inbox = metadata.tables["inbox"]
        self.outbox = metadata.tables["outbox"]

    async def progress(self, topic: str) -> tuple[int, int]:
        async with self.engine.connect() as conn:
            applied = await conn.scalar(
                select(func.count()).select_from(self.inbox).where(self.inbox.c.topic == topic)
            )
            # Every row in the outbox is an event not yet published (the relay deletes
            # what it publishes).
            unsent = await conn.scalar(select(func.count()).select_from(self.outbox))
        return int(applied or 0), int(unsent or 0)

    async def span(self, topic: str) -> tuple[Any, Any]:
        """When the first and the last event of `topic` were applied."""
        i = self.inbox.c
        async with self.engine.connect() as conn:
            first, last = (
                await conn.execute(
                    select(func.min(i.processed_at), func.max(i.processed_at)).where(
                        i.topic == topic
                    )
                )
            ).one()
        return first, last

    async def wait(
        self, topic: str, n: int, timeout: float, series: list | None = None
    ) -> tuple[int, int]:
        started = time.perf_counter()
        while True:
            applied, unsent = await self.progress(topic)
            if series is not None:
                series.append([round(time.perf_counter() - started, 2), n - applied, unsent])
            if (applied >= n and unsent == 0) or time.perf_counter() - started > timeout:
                return applied, unsent
            await asyncio.sleep(POLL_S)


class Relayed:
    """What the service's relay published from `mark()` on: the events per topic (its
    `procure_events_produced_total`) and when its last round that published any ended.
    The outbox keeps no published row to read this from, so the harness watches the
    relay itself (the service runs in this process)."""

    def __init__(self, runtime: Any) -> None:
        self.service = runtime.settings.service
        self.last: Any = None
        self._from: dict[str, float] = {}
        publish_pending = runtime.relay.publish_pending

        async def timed() -> int:
            sent = await publish_pending()
            if sent:
                self.last = utcnow()
            return int(sent)

        runtime.relay.publish_pending = timed

    def _produced(self) -> dict[str, float]:
        return {
            sample.labels["topic"]: sample.value
            for family in metrics.PRODUCED.collect()
            for sample in family.samples
            if sample.name.endswith("_total") and sample.labels["service"] == self.service
        }

    def mark(self) -> None:
        self._from, self.last = self._produced(), None

    def since(self) -> dict[str, int]:
        now = self._produced()
        return {
            t: int(v - self._from.get(t, 0)) for t, v in now.items() if v > self._from.get(t, 0)
        }


async def run(
    service: str,
    backend: str,
    n: int,
    bootstrap: str,
    dbs: env.Databases,
    workdir: Path,
    *,
    profile_to: Path | None = None,
) -> dict[str, Any]:
    scenario = SCENARIOS[service]
    setup, measured = scenario.make(n)
    url = dbs.url(backend, scenario.service)
    settings = env.settings(scenario.service, url, bootstrap, workdir)
    app, runtime = importlib.import_module(f"procure_{scenario.service}.app").build(settings)
    topics = {settings.topic(t): False for t in {m.topic for m in setup + measured}}
    await ensure_topics(settings, topics)  # and waits for their leaders
    if not setup:
        await publish(settings, measured)
    watch = Watch(settings.database_url, runtime.metadata)
    timeout = max(120.0, n / 10)
    series: list[list[float]] = []
    gate = hold_until_set(runtime)
    relayed = Relayed(runtime)
    with counting(runtime.db.engine) as counts:
        try:
            async with running(app, runtime), settled_heap():
                counts.clear()  # not the migrations
                busy, own = machine_busy_s(), time.process_time()
                relayed.mark()
                gate.set()
                if setup:
                    await publish(settings, setup)
                    done, _ = await watch.wait(setup[0].topic, len(setup), timeout)
                    if done < len(setup):
                        raise RuntimeError(f"{service}: setup applied {done}/{len(setup)}")
                    # Held again while the measured events are published, so that they
                    # wait as a backlog as they do without a setup, and the machine's CPU
                    # is counted from the same point: applying them, not producing them.
                    gate.clear()
                    await publish(settings, measured)
                    counts.clear()
                    busy, own = machine_busy_s(), time.process_time()
                    relayed.mark()
                    gate.set()
                with profiling(profile_to):
                    applied, unsent = await watch.wait(scenario.topic, n, timeout, series)
                busy, own = machine_busy_s() - busy, time.process_time() - own
                first, last = await watch.span(scenario.topic)
            outgoing = relayed.since()
            out_topics = sorted(outgoing)
            on_topics = await published(settings, out_topics) if out_topics else 0
        finally:
            await watch.engine.dispose()
    ends = [end for end in (last, relayed.last) if end is not None]
    seconds = (max(ends) - first).total_seconds() if first else 0.0
    ok = applied >= n and unsent == 0
    return {
        "scenario": f"service:{service}",
        "service": service,
        "database": backend,
        "input_topic": scenario.topic,
        "events": applied,
        "ok": ok,
        "seconds": round(seconds, 4),
        "events_per_s": round(applied / seconds, 1) if ok and seconds > 0 else 0.0,
        "outgoing": outgoing,
        "published_on_output_topics": on_topics,
        # What the whole machine spent an event: the service's process (consumer, relay),
        # the database, the broker and the harness's polling; idle time is not counted.
        "machine_cpu_us_per_event": round(1e6 * busy / max(applied, 1), 1),
        # Of which this process's: the service (consumer, relay) and the harness's polling.
        "process_cpu_us_per_event": round(1e6 * own / max(applied, 1), 1),
        "per_event": {k: round(v / max(applied, 1), 6) for k, v in counts.most_common()},
        "lag_series": series,  # [seconds since start, events not applied yet, outbox unsent]
    }
