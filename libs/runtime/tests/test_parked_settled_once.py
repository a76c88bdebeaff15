"""A parked event is settled once, applied or dead-lettered, and never lost: its row
leaves the parking lot in the same transaction that settles it, and a dead letter's only
once the broker took it. Before, a parked event given up on (rejected, refused data, a
handler that kept failing) left the lot first and was dead-lettered after: a stop or a
crash in between lost it. And an instance's sweep could apply an event that another
instance had just dead-lettered: both outcomes."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from probe_service import READY, build, count, readies
from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import record
from procure_runtime import Reject
from procure_runtime.settings import load_settings


class Stopped(BaseException):
    """A stop or a crash: what no `except Exception` retries."""


async def _parked_runtime(database_url: Callable[[str], str], tmp_path: Path, name: str) -> Any:
    """The probe service fed directly (its broker never dialled), with one event parked:
    a `charge.ready` of a charge it has not seen."""
    settings = load_settings(
        "probe",
        database_url=database_url(name),
        kafka_bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path,
        retry_backoff_s=0.01,
        park_timeout_s=3600,
    )
    _, runtime = build(settings)
    await runtime._migrate()

    async def unexpected(value: bytes, topic: str, **kw: Any) -> None:
        raise AssertionError(f"dead-lettered: {dict(kw['headers'])['x-error-message']!r}")

    runtime.consumer.publish = unexpected
    created = f.charge_created()
    ready = ev.ChargeReadyV1(
        charge_id=created.charge.id, product=f.product(), quantity=1, destination=f.address()
    )
    outcome = await runtime.consumer.process(record("charge.ready", ready, 0))
    assert await runtime.consumer.parked_count() == 1, outcome
    return runtime, created


async def test_a_parked_event_given_up_on_stays_parked_until_its_dead_letter_is_sent(
    database_url: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _ = await _parked_runtime(database_url, tmp_path, "parked_stop")
    spec, _ = runtime.consumer.handlers.get(READY.type)

    async def refuse(*args: Any) -> None:
        raise Reject("refused on its retry")

    async def stopped(*args: Any, **kw: Any) -> None:
        raise Stopped  # the process ends while the broker is away

    # the probe's handlers are shared by every runtime built: put this one back after
    monkeypatch.setitem(runtime.consumer.handlers._by_type, READY.type, (spec, refuse))
    runtime.consumer.publish = stopped
    try:
        with pytest.raises(Stopped):
            await runtime.consumer.sweep_parked()
        assert await runtime.consumer.parked_count() == 1  # still there, to be tried again

        sent: list[tuple[bytes, str]] = []

        async def publish(value: bytes, topic: str, **kw: Any) -> None:
            sent.append((value, dict(kw["headers"])["x-error-type"].decode()))

        runtime.consumer.publish = publish
        await runtime.consumer.sweep_parked()
        assert [kind for _, kind in sent] == ["rejected"]
        assert await runtime.consumer.parked_count() == 0
    finally:
        await runtime.db.engine.dispose()


async def test_a_parked_event_another_instance_settled_is_not_applied_again(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Another instance's sweep dead-letters the event (its row goes) between this sweep
    reading the lot and applying the event, which could apply by now."""
    runtime, created = await _parked_runtime(database_url, tmp_path, "parked_race")
    consumer = runtime.consumer
    sent: list[str] = []

    async def publish(value: bytes, topic: str, **kw: Any) -> None:
        sent.append(dict(kw["headers"])["x-error-type"].decode())

    consumer.publish = publish
    try:
        await consumer.process(record("charge.created", created, 1))  # now it could apply
        parked = consumer.metadata.tables["parked"]
        decode = consumer._decode

        async def settled_elsewhere(r: Any) -> Any:
            async with runtime.db.session() as session:  # the other instance's commit
                await session.execute(parked.delete())
            return await decode(r)

        consumer._decode = settled_elsewhere
        await consumer.sweep_parked()
        assert await count(runtime, readies) == 0  # not applied: settled already
        assert sent == []
    finally:
        await runtime.db.engine.dispose()


async def test_a_dead_letter_waiting_for_the_broker_holds_no_database_lock(
    database_url: Callable[[str], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite locks the whole database for a write. The parked row's delete waited in its
    transaction for the dead letter, as long as the broker was away: every request, the
    relay and the readiness check waited 30 s and failed with it. Other writers go on."""
    runtime, _ = await _parked_runtime(database_url, tmp_path, "parked_lock")
    spec, _ = runtime.consumer.handlers.get(READY.type)
    broker_back = asyncio.Event()
    sent: list[str] = []

    async def refuse(*args: Any) -> None:
        raise Reject("refused on its retry")

    async def waiting(value: bytes, topic: str, **kw: Any) -> None:
        await broker_back.wait()  # the broker is away until the test says so
        sent.append(dict(kw["headers"])["x-error-type"].decode())

    monkeypatch.setitem(runtime.consumer.handlers._by_type, READY.type, (spec, refuse))
    runtime.consumer.publish = waiting
    try:
        sweep = asyncio.create_task(runtime.consumer.sweep_parked())
        await asyncio.sleep(0.3)
        assert not sweep.done()  # the dead letter waits for the broker
        other = f.charge_created()  # meanwhile another event applies
        await asyncio.wait_for(runtime.consumer.process(record("charge.created", other, 5)), 5)
        assert await runtime.consumer.parked_count() == 1  # not settled before it is sent
        broker_back.set()
        await asyncio.wait_for(sweep, 5)
        assert sent == ["rejected"]
        assert await runtime.consumer.parked_count() == 0
    finally:
        await runtime.db.engine.dispose()
