"""Offset commits (procure_runtime.offsets): only after the database commit, in the
background at most every `PROCURE_COMMIT_INTERVAL_MS`, and never left behind by a stop
or a rebalance. On the real broker, but for the committer's own bookkeeping."""

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from probe_service import CREATED, build, charges, count
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running
from procure_runtime.consumer import Consumer
from procure_runtime.kafka import close_producer
from procure_runtime.offsets import OffsetCommitter
from procure_runtime.outbox import OutboxRelay

TOPICS = ["charge.created"]


def _probe(settings) -> KafkaProbe:
    return KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix)


async def _applied(runtime, n: int) -> bool:
    return await count(runtime, charges) == n


async def _lag(kafka: KafkaProbe, settings) -> int:
    return await kafka.lag(settings.group_id, TOPICS)


async def _committed_all(kafka: KafkaProbe, settings) -> bool:
    return await _lag(kafka, settings) == 0


@pytest.mark.kafka
async def test_the_next_batch_is_applied_while_an_offset_commit_is_in_flight(
    service_settings, monkeypatch
) -> None:
    """The consume loop does not wait for the broker's answer to an offset commit."""
    settings = service_settings("probe", commit_interval_ms=0)
    app, runtime = build(settings)
    gate = asyncio.Event()
    commit = AIOKafkaConsumer.commit

    async def slow_commit(self, offsets=None):
        await gate.wait()  # the broker answers only when the test says so
        return await commit(self, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", slow_commit)
    async with running(app, runtime), _probe(settings) as kafka:
        await kafka.publish(CREATED, f.charge_created())
        await eventually(lambda: _applied(runtime, 1))
        await kafka.publish(CREATED, f.charge_created())
        await eventually(lambda: _applied(runtime, 2), timeout=10)
        assert await _lag(kafka, settings) == 2  # neither commit has gone through yet
        gate.set()
        await eventually(lambda: _committed_all(kafka, settings))


@pytest.mark.kafka
async def test_offsets_are_committed_only_after_the_database_commit(
    service_settings, monkeypatch
) -> None:
    settings = service_settings("probe", commit_interval_ms=0)
    app, runtime = build(settings)
    gate = asyncio.Event()
    fetched = asyncio.Event()
    process_batch = Consumer.process_batch

    async def held(self, records):
        fetched.set()
        await gate.wait()  # the batch's transaction has not begun
        return await process_batch(self, records)

    monkeypatch.setattr(Consumer, "process_batch", held)
    async with running(app, runtime), _probe(settings) as kafka:
        await kafka.publish(CREATED, f.charge_created())
        await asyncio.wait_for(fetched.wait(), timeout=30)
        await asyncio.sleep(1.0)  # time enough for any commit to have gone out
        assert await _lag(kafka, settings) == 1
        gate.set()
        await eventually(lambda: _applied(runtime, 1))
        await eventually(lambda: _committed_all(kafka, settings))


@pytest.mark.kafka
async def test_the_batches_of_one_interval_share_one_offset_commit(service_settings) -> None:
    settings = service_settings("probe", commit_interval_ms=5000)
    app, runtime = build(settings)
    async with running(app, runtime), _probe(settings) as kafka:
        for n in (1, 2, 3):  # three batches: each is applied before the next is sent
            await kafka.publish(CREATED, f.charge_created())
            await eventually(lambda n=n: _applied(runtime, n))
        assert await _lag(kafka, settings) == 3  # applied, not committed yet
        await eventually(lambda: _committed_all(kafka, settings), timeout=15)
        assert runtime.offsets.commits == 1


@pytest.mark.kafka
async def test_a_stop_commits_the_offsets_of_what_is_applied(service_settings) -> None:
    settings = service_settings("probe", commit_interval_ms=600_000)
    app, runtime = build(settings)
    async with _probe(settings) as kafka:
        async with running(app, runtime):
            for _ in range(3):
                await kafka.publish(CREATED, f.charge_created())
            await eventually(lambda: _applied(runtime, 3))
            assert await _lag(kafka, settings) == 3
        assert await _lag(kafka, settings) == 0  # a restart re-reads nothing


@pytest.mark.kafka
async def test_a_rebalance_commits_the_offsets_of_what_is_applied_first(service_settings) -> None:
    """Before this instance gives its partitions up, it commits what it has applied: the
    new owner starts where it finished, not at the last periodic commit."""
    settings = service_settings("probe", commit_interval_ms=600_000, topic_partitions=3)
    app, runtime = build(settings)
    async with running(app, runtime), _probe(settings) as kafka:
        for _ in range(6):
            await kafka.publish(CREATED, f.charge_created())
        await eventually(lambda: _applied(runtime, 6))
        assert await _lag(kafka, settings) == 6
        joining = AIOKafkaConsumer(
            kafka.topic("charge.created"),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.group_id,
            enable_auto_commit=False,
        )
        await joining.start()  # the group rebalances: the service's partitions are revoked
        try:
            await eventually(lambda: _committed_all(kafka, settings), timeout=30)
        finally:
            await joining.stop()


# --- the committer's bookkeeping, with a stand-in for the consumer ------------------------


class _Consumer:
    def __init__(self, assigned: set[TopicPartition], fail: list[Exception]) -> None:
        self.assigned = assigned
        self.fail = fail
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.commits.append(dict(offsets))


def _records(topic: str, partition: int, *offsets: int) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(
            topic=topic,
            partition=partition,
            offset=o,
            timestamp=0,
            timestamp_type=0,
            key=None,
            value=b"",
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=0,
            headers=[],
        )
        for o in offsets
    ]


A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


async def test_the_committer_commits_each_partitions_highest_position_once() -> None:
    consumer = _Consumer({A0, A1, B0}, [])
    committer = OffsetCommitter(interval_s=60)
    committer.done(consumer, _records("a", 0, 3, 4))  # type: ignore[arg-type]
    committer.done(consumer, _records("a", 0, 5) + _records("b", 0, 0))  # type: ignore[arg-type]
    committer.done(consumer, _records("a", 1, 9))  # type: ignore[arg-type]
    await committer.flush()
    assert consumer.commits == [{A0: 6, B0: 1, A1: 10}]
    await committer.flush()  # nothing new: nothing sent
    assert consumer.commits == [{A0: 6, B0: 1, A1: 10}]
    await committer.stop()


async def test_a_position_done_on_a_partition_given_up_is_never_committed() -> None:
    """A batch that finished after its partition was revoked: its position is not this
    instance's to commit, even if the partition comes back. Meanwhile another owner may
    have committed further (here to 12): committing 8 moved the group's offset back, and
    what was dead-lettered or skipped between them (no inbox row) came again."""
    consumer = _Consumer({A0}, [])
    committer = OffsetCommitter(interval_s=60)
    committer.done(consumer, _records("a", 0, 1) + _records("a", 1, 7) + _records("b", 0, 3))  # type: ignore[arg-type]
    await committer.flush()
    assert consumer.commits == [{A0: 2}]
    assert committer.pending == {A1: 8, B0: 4}
    consumer.assigned = {A0, A1}
    committer.assigned({A0, A1})  # A1 came back (another owner had it for a while)
    assert committer.pending == {}
    await committer.flush()
    assert consumer.commits == [{A0: 2}]  # A1 resumes from the group's committed offset
    committer.done(consumer, _records("a", 1, 12))  # type: ignore[arg-type]
    await committer.flush()
    assert consumer.commits == [{A0: 2}, {A1: 13}]
    await committer.stop()


async def test_a_failed_commit_is_kept_for_the_next_round() -> None:
    consumer = _Consumer({A0}, [KafkaConnectionError(), CommitFailedError()])
    committer = OffsetCommitter(interval_s=60)
    committer.done(consumer, _records("a", 0, 1))  # type: ignore[arg-type]
    await committer.flush()  # the coordinator is away
    assert committer.pending == {A0: 2}
    committer.done(consumer, _records("a", 0, 2))  # type: ignore[arg-type]
    await committer.flush()  # a rebalance is under way
    assert committer.pending == {A0: 3} and consumer.commits == []
    await committer.flush()
    assert consumer.commits == [{A0: 3}] and committer.pending == {}
    await committer.stop()


async def test_the_committer_commits_by_itself_after_the_interval() -> None:
    consumer = _Consumer({A0}, [])
    committer = OffsetCommitter(interval_s=0.05)
    committer.done(consumer, _records("a", 0, 1))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    committer.done(consumer, _records("a", 0, 2))  # type: ignore[arg-type]
    assert consumer.commits == []  # the interval gathers
    await asyncio.sleep(0.2)
    assert consumer.commits == [{A0: 3}]
    await committer.stop()


class _AwayConsumer(_Consumer):
    """A group coordinator that never answers: aiokafka's commit then retries for ever."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.Event().wait()


async def test_a_commit_the_coordinator_never_answers_is_given_up_and_kept() -> None:
    consumer = _AwayConsumer({A0}, [])
    committer = OffsetCommitter(interval_s=60)
    committer.commit_timeout_s = 0.1
    committer.done(consumer, _records("a", 0, 1))  # type: ignore[arg-type]
    await asyncio.wait_for(committer.flush(), 5)
    assert committer.pending == {A0: 2}  # kept for the next round
    flushing = asyncio.create_task(committer.flush())
    await asyncio.sleep(0.02)
    flushing.cancel()  # a stop cancels a commit in flight: its positions are kept too
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert committer.pending == {A0: 2}
    await committer.stop()


async def test_a_revoke_is_not_held_for_ever_by_a_commit_in_flight() -> None:
    """The background commit holds the lock a revoke waits for; the consumer's close
    waits for the revoke. A commit that never ended hung the close, and so the stop."""
    consumer = _AwayConsumer({A0}, [])
    committer = OffsetCommitter(interval_s=60)
    committer.commit_timeout_s = 0.2
    committer.done(consumer, _records("a", 0, 1))  # type: ignore[arg-type]
    in_flight = asyncio.create_task(committer.flush())
    await asyncio.sleep(0.02)
    await asyncio.wait_for(committer.listener().on_partitions_revoked({A0}), 5)
    await in_flight
    assert committer.pending == {A0: 2}
    await committer.stop()


@pytest.mark.kafka
async def test_a_stop_does_not_wait_forever_for_the_group_coordinator(
    service_settings, monkeypatch
) -> None:
    """aiokafka retries a commit while the coordinator is away, without end: a stop that
    waited for it never finished (a test hung for its 300 s). It gives up after
    `stop_commit_timeout_s`; the records are read again and skipped by the inbox."""
    settings = service_settings("probe", commit_interval_ms=60_000)  # only the stop commits
    app, runtime = build(settings)
    runtime.stop_commit_timeout_s = 0.5
    never = asyncio.Event()

    async def coordinator_away(self, offsets=None):
        await never.wait()

    monkeypatch.setattr(AIOKafkaConsumer, "commit", coordinator_away)
    stopping = running(app, runtime)
    await stopping.__aenter__()
    async with _probe(settings) as kafka:
        await kafka.publish(CREATED, f.charge_created())
        await eventually(lambda: _applied(runtime, 1))
        await asyncio.wait_for(stopping.__aexit__(None, None, None), timeout=30)
        assert await _lag(kafka, settings) == 1  # nothing committed: read again next time


@pytest.mark.kafka
async def test_a_consumer_that_cannot_leave_its_group_does_not_hold_the_stop(
    service_settings,
) -> None:
    """Leaving the group is a request to the coordinator; one that never answered held
    the consumer's close, and the stop, up to the client's 40 s request timeout. The stop
    gives up on it after `stop_consumer_timeout_s` and still closes everything after it."""
    settings = service_settings("probe")
    app, runtime = build(settings)
    runtime.stop_consumer_timeout_s = 0.5
    closing = runtime.broker.stop
    never = asyncio.Event()

    async def leave_group_unanswered(*args, **kwargs) -> None:
        await never.wait()

    async with _probe(settings) as kafka:
        stopping = running(app, runtime)
        await stopping.__aenter__()
        try:
            await kafka.publish(CREATED, f.charge_created())
            await eventually(lambda: _applied(runtime, 1))
            runtime.broker.stop = leave_group_unanswered  # type: ignore[method-assign]
            started = asyncio.get_running_loop().time()
            await asyncio.wait_for(stopping.__aexit__(None, None, None), timeout=10)
            assert asyncio.get_running_loop().time() - started < 5
            assert runtime.relay._producer is None  # the steps after it ran
            assert await kafka.read_events("charge.ready", 1, timeout=10)  # nothing lost
        finally:
            await closing()  # the real close, so nothing is left running


async def test_a_revoke_waits_for_the_batch_being_applied() -> None:
    """A rebalance during a batch: the partitions are given up only once the batch is done
    and its positions committed. Before, the revoke committed what was done by then and
    the new owner read the batch again (its dead letters sent twice)."""
    consumer = _Consumer({A0}, [])
    committer = OffsetCommitter(interval_s=60)
    listener = committer.listener()
    applied = asyncio.Event()

    async def batch() -> None:
        async with committer.applying():
            await applied.wait()
            committer.done(consumer, _records("a", 0, 4))  # type: ignore[arg-type]

    applying = asyncio.create_task(batch())
    await asyncio.sleep(0)
    revoke = asyncio.create_task(listener.on_partitions_revoked({A0}))
    await asyncio.sleep(0.05)
    assert not revoke.done() and consumer.commits == []
    applied.set()
    await asyncio.wait_for(revoke, 5)
    await applying
    assert consumer.commits == [{A0: 5}]
    await committer.stop()


@pytest.mark.kafka
async def test_a_dead_letter_of_the_batch_in_hand_at_stop_is_sent_and_its_producer_closed(
    service_settings, monkeypatch
) -> None:
    """A stop waits for the batch being applied, and that batch may dead-letter: the
    relay's producer, which sends dead letters, must outlive it and be closed after it,
    not started again once closed and left open."""
    settings = service_settings("probe", commit_interval_ms=600_000)
    _, runtime = build(settings)
    gate, fetched = asyncio.Event(), asyncio.Event()
    process_batch = Consumer.process_batch

    async def held(self, records):
        fetched.set()
        await gate.wait()  # the stop has begun
        return await process_batch(self, records)

    monkeypatch.setattr(Consumer, "process_batch", held)
    invalid = b"not json"
    async with _probe(settings) as kafka:
        await runtime.start()
        stopping = None
        try:
            await eventually(lambda: runtime.broker_ready, timeout=60)
            await kafka.send_raw("charge.created", invalid, b"k")
            await asyncio.wait_for(fetched.wait(), timeout=30)
            stopping = asyncio.create_task(runtime.stop())
            await asyncio.sleep(0.5)  # the stop is under way, waiting for the batch
        finally:
            gate.set()
            await (stopping or runtime.stop())
        assert runtime.relay._producer is None  # closed, not left open
        [dead] = await kafka.read("dlq.probe", until=lambda got: len(got) >= 1, settle=0.5)
        assert dead.value == invalid
        assert await _committed_all(kafka, settings)


@pytest.mark.kafka
async def test_a_stop_publishes_what_the_last_commit_left_in_the_outbox(
    service_settings, monkeypatch
) -> None:
    """The relay is not told of the last commit (as when it comes just before a stop);
    the stop publishes it all the same, instead of leaving it in the outbox until the
    service's next start."""
    monkeypatch.setattr(OutboxRelay, "wake", lambda self: None)
    settings = service_settings("probe")
    _, runtime = build(settings)
    async with _probe(settings) as kafka:
        await runtime.start()
        try:
            await eventually(lambda: runtime.broker_ready, timeout=60)
            runtime.relay.idle_wait_s = 3600
            await asyncio.sleep(1.0)  # the relay's idle wait in hand ends: now it sleeps
            created = f.charge_created()
            await kafka.publish(CREATED, created)
            await eventually(lambda: _applied(runtime, 1))
            assert await runtime.relay.backlog() == 1  # committed, not published
        finally:
            await runtime.stop()
        [ready] = await kafka.read_events("charge.ready", 1, timeout=10)
        assert ready.data["charge_id"] == created.charge.id


async def test_a_producer_the_broker_never_answers_is_closed_within_its_time() -> None:
    """aiokafka never gives up an idempotent producer's batch: its stop waited for ever
    while the broker was away, and the service's stop with it. Every step of the close
    shares one deadline, and the batches it held are failed, so nothing waits on them."""
    stopped: list[str] = []

    class _Accumulator:
        def fail_all(self, exception: Exception) -> None:
            stopped.append("batches failed")

    class _Sender:
        async def close(self) -> None:  # its in-flight requests never answered either
            stopped.append("sender")
            await asyncio.Event().wait()

    class _Client:
        async def close(self) -> None:
            stopped.append("client")

    class _Stuck:
        _message_accumulator, _sender, client = _Accumulator(), _Sender(), _Client()

        async def stop(self) -> None:
            await asyncio.Event().wait()  # the accumulator's flush, which never ends

    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(close_producer(_Stuck(), timeout=0.5), 5)  # type: ignore[arg-type]
    assert asyncio.get_running_loop().time() - started < 0.8  # one deadline for all
    assert stopped == ["batches failed", "sender", "client"]
