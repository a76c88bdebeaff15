"""The consumer's offset commits, behind the database and off the consume loop.

A batch's records are `done` once its transaction has committed (or they are parked or
dead-lettered, durably too). Their positions are then committed in the background, every
`PROCURE_COMMIT_INTERVAL_MS`, by one task: one offset commit for all the batches done in
that time, and the consume loop goes on to its next batch instead of waiting for the
broker's answer. This is librdkafka's at-least-once pattern (offsets stored after
processing, committed periodically). A crash replays at most the batches done since the
last commit, and the inbox skips what it has already applied, as it does after any crash.

Nothing is lost on the way out: a graceful stop commits what is done, and so does a
rebalance before this instance gives its partitions up (`on_partitions_revoked`, which
waits for the batch being applied), so the new owner starts where this one finished."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from procure_runtime.logging import get_logger
from procure_runtime.tasks import cancel_and_wait

log = get_logger("procure.offsets")


class OffsetCommitter:
    """Commits the positions of records already applied, at most every `interval_s`."""

    def __init__(self, interval_s: float, commit_timeout_s: float = 10.0) -> None:
        self.interval_s = interval_s
        # aiokafka retries a commit without end while the group coordinator is away (and
        # for good once the consumer is closing): one commit waited for for ever held the
        # lock that a revoke and a stop wait for, so the consumer's own close hung.
        self.commit_timeout_s = commit_timeout_s
        self._consumer: AIOKafkaConsumer | None = None
        self._pending: dict[TopicPartition, int] = {}
        self._due = asyncio.Event()
        self._lock = asyncio.Lock()  # one commit at a time, so positions only move forward
        # Held while a fetched batch is applied and marked done (`applying`): a revoke
        # waits for it, so the batch's positions are committed before its partitions go.
        self._batch = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0  # offset commits sent (the tests read it)

    @contextlib.asynccontextmanager
    async def applying(self) -> AsyncIterator[None]:
        """Around applying a fetched batch and marking it `done`. A rebalance that came
        meanwhile gave the partitions up first: the new owner read the batch again (a
        dead letter sent twice), and a position done after it could move the group's
        offset back if the partition came back here."""
        async with self._batch:
            yield

    def done(self, consumer: AIOKafkaConsumer, records: Iterable[ConsumerRecord]) -> None:
        """These records are applied for good: their positions may be committed."""
        self._consumer = consumer
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), record.offset + 1)
        if self._pending:
            self._due.set()
            self._ensure_task()

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="offset-commits")

    @property
    def pending(self) -> dict[TopicPartition, int]:
        return dict(self._pending)

    async def _run(self) -> None:
        while True:
            await self._due.wait()
            # The batches done meanwhile go in the same commit.
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Commit every position done so far, now (after a commit already in flight)."""
        async with self._lock:
            self._due.clear()
            consumer = self._consumer
            if consumer is None or not self._pending:
                return
            # Only the partitions this instance holds now. The others are their new
            # owner's, which re-reads them from the group's committed offset and whose
            # inbox skips what was applied here (`assigned` forgets them).
            held = consumer.assignment()
            offsets = {tp: o for tp, o in self._pending.items() if tp in held}
            if not offsets:
                return
            for tp in offsets:
                del self._pending[tp]
            try:
                async with asyncio.timeout(self.commit_timeout_s):
                    await consumer.commit(offsets)
                self.commits += 1
            except (KafkaError, IllegalStateError, TimeoutError) as exc:
                # A rebalance under way (CommitFailedError) or the coordinator away
                # (aiokafka already retried what is retriable): kept for the next round.
                rebalanced = isinstance(exc, (CommitFailedError, IllegalStateError))
                log.log(
                    logging.INFO if rebalanced else logging.WARNING,
                    "offsets not committed yet; retrying",
                    error=repr(exc) if not isinstance(exc, TimeoutError) else "timed out",
                )
                self._keep(offsets)
                self._due.set()
            except asyncio.CancelledError:  # a stop: what is kept may still be committed
                self._keep(offsets)
                raise

    def _keep(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._pending[tp] = max(self._pending.get(tp, 0), offset)

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """A rebalance gave this instance `partitions`. Every position still pending is
        forgotten: the revoke before it committed what was done by then, and a batch done
        after it may be older than what another owner committed meanwhile, so committing
        it could move the group's offset back (a replay of records dead-lettered or
        skipped there, which no inbox row covers). Reading again from the committed
        offset replays at most that batch, and the inbox skips what it applied."""
        self._pending = {}

    async def stop(self) -> None:
        """Stop the background task (`flush` first: this commits nothing)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def listener(self) -> ConsumerRebalanceListener:
        """Commits what is done before this instance gives partitions up in a rebalance."""
        return _CommitBeforeRevoke(self)


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    def __init__(self, committer: OffsetCommitter) -> None:
        self.committer = committer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.committer.applying():  # after the batch in hand is done
            await self.committer.flush()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.committer.assigned(assigned)
