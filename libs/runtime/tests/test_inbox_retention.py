"""The inbox forgets event ids past `PROCURE_INBOX_RETENTION_DAYS` (`InboxPruner`): it kept
a row per applied event for ever. What is younger stays, so a record read again within
the retention is still skipped; 0 keeps every row; a running service prunes by itself."""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from probe_service import build, charges, count
from procure_contracts import CloudEvent
from procure_devstack import factories as f
from procure_devstack.testing import eventually, record
from procure_runtime.consumer import Outcome
from procure_runtime.db import utcnow
from procure_runtime.settings import load_settings


async def _applied(
    database_url: Callable[[str], str], tmp_path: Path, n: int, **settings: Any
) -> tuple[Any, list[Any]]:
    """The probe service fed directly (its broker never dialled), and `n` records of
    `charge.created` it applied."""
    values: dict[str, Any] = {
        "database_url": database_url("inbox_retention"),
        "kafka_bootstrap_servers": "127.0.0.1:9",
        "data_dir": tmp_path,
    }
    _, runtime = build(load_settings("probe", **(values | settings)))
    await runtime._migrate()
    records = [record("charge.created", f.charge_created(), i) for i in range(n)]
    await runtime.consumer.process_batch(records)
    return runtime, records


async def _inbox(runtime: Any) -> list[str]:
    inbox = runtime.metadata.tables["inbox"]
    async with runtime.db.session() as session:
        return sorted((await session.scalars(select(inbox.c.event_id))).all())


async def _age(runtime: Any, days: float, offsets: range, records: list[Any]) -> None:
    """Make the inbox rows of `records[offsets]` `days` old."""
    inbox = runtime.metadata.tables["inbox"]
    ids = [_event_id(records[n]) for n in offsets]
    async with runtime.db.session() as session:
        await session.execute(
            update(inbox)
            .where(inbox.c.event_id.in_(ids))
            .values(processed_at=utcnow() - timedelta(days=days))
        )


def _event_id(rec: Any) -> str:
    return CloudEvent.model_validate_json(rec.value).id


async def test_ids_past_their_retention_go_and_younger_ones_still_skip_their_replays(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runtime, records = await _applied(database_url, tmp_path, 7, inbox_retention_days=30)
    try:
        assert len(await _inbox(runtime)) == 7
        await _age(runtime, 31, range(0, 5), records)  # past the retention
        await _age(runtime, 29, range(5, 6), records)  # within it
        runtime.inbox_pruner.chunk = 2  # several transactions: 2, 2, 1

        assert await runtime.inbox_pruner.prune() == 5
        kept = sorted(_event_id(r) for r in records[5:])
        assert await _inbox(runtime) == kept
        assert await runtime.inbox_pruner.prune() == 0  # nothing left to forget

        # A record read again within the retention is still a duplicate.
        assert await runtime.consumer.process(records[5]) is Outcome.DUPLICATE
        assert await runtime.consumer.process(records[6]) is Outcome.DUPLICATE
        assert await count(runtime, charges) == 7  # the probe's charges: none applied twice
    finally:
        await runtime.db.dispose()


async def test_a_retention_of_zero_keeps_every_id(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runtime, records = await _applied(database_url, tmp_path, 3, inbox_retention_days=0)
    try:
        await _age(runtime, 3650, range(3), records)
        assert await runtime.inbox_pruner.prune() == 0
        runtime.inbox_pruner.start()
        assert runtime.inbox_pruner._task is None  # no loop at all
        assert len(await _inbox(runtime)) == 3
    finally:
        await runtime.db.dispose()


@pytest.mark.parametrize("days", ["-1", "soon", "inf", "nan", "36501"])
def test_a_retention_that_is_no_number_of_days_is_refused(
    days: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCURE_INBOX_RETENTION_DAYS", days)
    with pytest.raises(ValueError, match="PROCURE_INBOX_RETENTION_DAYS"):
        load_settings("probe")


async def test_a_started_service_prunes_by_itself_and_stops_its_pruner(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runtime, records = await _applied(database_url, tmp_path, 2, inbox_retention_days=1)
    await _age(runtime, 2, range(1), records)
    runtime.inbox_pruner.first_after_s = 0
    await runtime.start()  # the broker is never reached: its connect task keeps retrying
    try:

        async def pruned() -> bool:
            return await _inbox(runtime) == [_event_id(records[1])]

        await eventually(pruned, timeout=20)
        task = runtime.inbox_pruner._task
        assert task is not None and not task.done()
    finally:
        await runtime.stop()
    assert task.cancelled()
