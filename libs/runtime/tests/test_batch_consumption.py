"""Batch consumption on the real broker: a backlog is applied many records per
transaction, with exactly the outcomes one record at a time would give: duplicates
(even within one batch) skipped, poison dead-lettered byte for byte, an event that
arrives before what it needs parked then applied, a failing handler retried then
dead-lettered, and offsets committed past everything."""

import pytest

from probe_service import CREATED, PICKED, READY, build, charges, count, readies
from procure_contracts import events as ev
from procure_contracts import new_event
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running

pytestmark = pytest.mark.kafka
N = 40


async def test_a_backlog_applies_in_batches_with_the_same_outcomes(service_settings) -> None:
    settings = service_settings("probe", handler_max_attempts=2, topic_partitions=1)
    app, runtime = build(settings)
    batches: list[tuple[int, int]] = []  # (records in the transaction, applied)
    apply_batch = runtime.consumer._apply_batch

    async def spy(pending):
        applied = await apply_batch(pending)
        batches.append((len(pending), applied))
        return applied

    runtime.consumer._apply_batch = spy  # type: ignore[method-assign]
    created = [f.charge_created() for _ in range(N)]
    late = created[N // 2]
    poison = b"\x00 not an event \xff"
    async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:
        # The backlog is there before the service starts, so its first fetch is a batch.
        early = await kafka.publish(
            READY,
            ev.ChargeReadyV1(
                charge_id=late.charge.id,
                product=late.charge.product,
                quantity=1,
                destination=f.address(),
            ),
        )
        first = new_event(CREATED.type, created[0], source="/tests", subject="c0")
        for data in created:
            if data is created[0]:
                await kafka.send_raw("charge.created", first.to_bytes())
                await kafka.send_raw("charge.created", first.to_bytes())  # a duplicate
            else:
                await kafka.publish(CREATED, data)
        await kafka.send_raw("charge.created", poison)
        await kafka.publish(PICKED, ev.UnitsPickedV1(charge_id="c", location_id="l", quantity=1))
        async with running(app, runtime):

            async def done() -> bool:
                assert await count(runtime, charges) == N
                # each charge's own charge.ready applies, and the early one once
                assert await count(runtime, readies) == N + 1
                assert await runtime.consumer.parked_count() == 0
                return True

            await eventually(done, timeout=60)
            dead = await kafka.read("dlq.probe", until=lambda got: len(got) >= 2, settle=1.0)
            assert await count(runtime, readies, event_id=early.id) == 1
            assert sorted(d.headers["x-error-type"] for d in dead) == [
                "handler-error",
                "invalid-json",
            ]
            assert [d.value for d in dead if d.headers["x-error-type"] == "invalid-json"] == [
                poison
            ]
            emitted = await kafka.read_events("charge.ready", N + 1, settle=1.0)
            assert len(emitted) == N + 1  # the early one and N of its own, once each
            await eventually(
                lambda: _lag_is_zero(kafka, settings), timeout=30
            )  # offsets committed past everything
    # Most of the backlog applied many records per transaction.
    assert max(applied for _, applied in batches) > 1, batches


async def _lag_is_zero(kafka: KafkaProbe, settings) -> bool:
    return (
        await kafka.lag(settings.group_id, ["charge.created", "charge.ready", "units.picked"]) == 0
    )
