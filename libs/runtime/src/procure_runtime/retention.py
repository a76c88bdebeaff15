"""The inbox forgets what it no longer needs to remember. It keeps the id of every event
a service has applied, so that a record read again (a crash before the offset commit, a
rebalance, a producer's retry) is skipped: without an end the table grew by a row per
event for ever. A row older than `PROCURE_INBOX_RETENTION_DAYS` can only matter to a
record read again that long after it was applied, which Kafka no longer holds once the
topic's retention has passed: the default (30 days) is four times Kafka's (7 days).

Every instance of a service prunes, in small transactions so the consumer's claims never
wait long; two instances pruning at once delete each row once."""

import asyncio
from datetime import timedelta

from sqlalchemy import MetaData, delete, select

from procure_runtime import metrics
from procure_runtime.db import Database, rows_affected, utcnow
from procure_runtime.logging import get_logger
from procure_runtime.settings import ServiceSettings
from procure_runtime.tasks import cancel_and_wait

log = get_logger("procure.retention")


class InboxPruner:
    def __init__(self, settings: ServiceSettings, db: Database, metadata: MetaData) -> None:
        self.settings = settings
        self.db = db
        self.inbox = metadata.tables["inbox"]
        # The first prune waits a minute, out of the way of a start's catching up; then
        # one an hour. A service restarted more often still prunes.
        self.first_after_s = 60.0
        self.every_s = 3600.0
        self.chunk = 5000  # rows per transaction
        self._task: asyncio.Task[None] | None = None

    @property
    def retention(self) -> timedelta | None:
        days = self.settings.inbox_retention_days
        return timedelta(days=days) if days > 0 else None

    def start(self) -> None:
        if self.retention is not None:
            self._task = asyncio.create_task(self._loop(), name="inbox-pruner")

    async def stop(self) -> None:
        if self._task:
            await cancel_and_wait(self._task)
            self._task = None

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_after_s)
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next round tries again
                log.warning("inbox prune failed; will retry", error=repr(exc))
            await asyncio.sleep(self.every_s)

    async def prune(self) -> int:
        """Delete the inbox rows older than the retention, `chunk` at a time; how many."""
        retention = self.retention
        if retention is None:
            return 0
        cutoff = utcnow() - retention
        old = select(self.inbox.c.event_id).where(self.inbox.c.processed_at < cutoff)
        statement = delete(self.inbox).where(
            self.inbox.c.event_id.in_(old.limit(self.chunk).scalar_subquery())
        )
        total = 0
        while True:
            async with self.db.session() as session:
                deleted = rows_affected(await session.execute(statement))
            total += deleted
            metrics.INBOX_PRUNED.labels(self.settings.service).inc(deleted)
            if deleted < self.chunk:
                break
            await asyncio.sleep(0)  # a turn for the consumer between chunks
        if total:
            log.info("inbox pruned", rows=total, older_than=cutoff.isoformat())
        return total
