"""The outbox relay with several instances of a service on one PostgreSQL database (the
Kubernetes manifests run two): one relay leads (a session advisory lock) and publishes
every instance's events, as they commit."""

from typing import Any

import pytest
from sqlalchemy import text

from probe_service import READY, build
from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running

pytestmark = [pytest.mark.kafka, pytest.mark.parametrize("db_backend", ["postgresql"])]

# Longer than any wait below: an event published in the test's time was woken for.
IDLE_S = 600.0


def _ready(charge_id: str) -> ev.ChargeReadyV1:
    return ev.ChargeReadyV1(
        charge_id=charge_id, product=f.product(), quantity=1, destination=f.address()
    )


async def _advisory_locks(runtime: Any) -> int:
    async with runtime.db.engine.connect() as conn:
        return int(
            await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            )
        )


async def _backlog_empty(runtime: Any) -> bool:
    return await runtime.relay.backlog() == 0


def _two_instances(service_settings: Any) -> tuple[Any, Any, Any]:
    """Two instances of the probe service: one database, one consumer group."""
    settings = service_settings("probe")
    return settings, build(settings), build(settings)


def _probe(settings: Any) -> KafkaProbe:
    return KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix)


async def test_a_commit_on_an_instance_that_does_not_lead_wakes_the_leader(
    db_backend: str, service_settings
) -> None:
    settings, (app_a, a), (app_b, b) = _two_instances(service_settings)
    # Each relay looks at the outbox as it starts (a leads from then on), and after that
    # only when woken.
    a.relay.idle_wait_s = b.relay.idle_wait_s = IDLE_S
    async with running(app_a, a), _probe(settings) as kafka:
        await eventually(lambda: a.relay.leading, timeout=15)
        async with running(app_b, b):
            assert not b.relay.leading
            for i in range(3):
                async with b.transaction() as uow:
                    uow.emit(READY, _ready(f"ch-on-b-{i}"))
                [_event] = await kafka.read_events(
                    "charge.ready",
                    1,
                    timeout=15,
                    where=lambda e, i=i: e.data["charge_id"] == f"ch-on-b-{i}",
                )
                await eventually(lambda: _backlog_empty(b), timeout=15)
            assert a.relay.leading and not b.relay.leading


async def test_a_relay_that_stops_leading_leaves_the_lock_to_the_others(
    db_backend: str, service_settings
) -> None:
    settings, (app_a, a), (app_b, b) = _two_instances(service_settings)
    # Each relay tries for the lock as it starts, and after that only when woken: the
    # one that did not get it does not take it from under the count below.
    a.relay.idle_wait_s = b.relay.idle_wait_s = IDLE_S
    async with running(app_a, a), running(app_b, b), _probe(settings) as kafka:
        await eventually(lambda: a.relay.leading or b.relay.leading, timeout=15)
        leader, other = (a, b) if a.relay.leading else (b, a)
        assert await _advisory_locks(leader) == 1
        await leader.relay.stop()  # as after a failed round: its connection is let go
        # The lock went with the connection (not back to the pool, still held).
        assert await _advisory_locks(leader) == 0
        async with leader.transaction() as uow:
            uow.emit(READY, _ready("ch-after-handover"))
        other.relay.wake()  # as a commit of its own would
        [_event] = await kafka.read_events(
            "charge.ready",
            1,
            timeout=15,
            where=lambda e: e.data["charge_id"] == "ch-after-handover",
        )
        assert other.relay.leading
