"""Faults: PostgreSQL, then the Kafka broker, stopped and started again while a stream of
`opportunity.won` flows through quotes. Nothing is lost, nothing doubled, nothing
dead-lettered (outages are retried, never dead-lettered)."""

import asyncio
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import func, select

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.kafka import LocalKafka
from procure_devstack.testing import KafkaProbe, eventually, free_port, running
from procure_quotes.app import build
from procure_quotes.models import sales_orders

pytestmark = [pytest.mark.kafka, pytest.mark.faults(checks=("lost", "duplicates", "dead_letters"))]
TOTAL = int(os.environ.get("PROCURE_FAULT_CHARGES", "60"))


async def _stream_with_outage(settings, runtime, outage) -> None:
    wins = [f.opportunity_won(f.charge(f.product(procurement=i % 2 == 0), 1)) for i in range(TOTAL)]
    async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:

        async def stream() -> None:
            for won in wins:
                await kafka.publish(spec_for_topic("opportunity.won"), won)
                await asyncio.sleep(0.01)

        producer = asyncio.create_task(stream())
        await eventually(lambda: _at_least(runtime, TOTAL // 4), timeout=60, interval=0.05)
        await outage()
        await producer
        await eventually(lambda: _at_least(runtime, TOTAL), timeout=120)
        await eventually(lambda: _backlog_empty(runtime), timeout=60)
        await asyncio.sleep(1)
        assert await _count(runtime) == TOTAL
        routed = defaultdict(set)
        for topic in ("charge.ready", "charge.need_order"):
            for record in await kafka.read(topic, timeout=5):
                routed[record.event.data["charge_id"]].add(record.event.id)
        assert set(routed) == {w.charges[0].id for w in wins}
        assert all(len(ids) == 1 for ids in routed.values())
        assert await kafka.read("dlq.quotes", timeout=1.0) == []


async def _count(runtime) -> int:
    async with runtime.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(sales_orders)) or 0)


async def _at_least(runtime, n: int) -> bool:
    try:
        return await _count(runtime) >= n
    except Exception:  # the database is away: not yet
        return False


async def _backlog_empty(runtime) -> bool:
    try:
        return await runtime.relay.backlog() == 0
    except Exception:
        return False


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
async def test_postgresql_restart_mid_stream(service_settings) -> None:
    if os.environ.get("PROCURE_TEST_DATABASE_URL"):
        pytest.skip("stops the machine's PostgreSQL cluster; not with an external database")
    settings = service_settings("quotes", topic_partitions=3)
    app, runtime = build(settings)

    async def outage() -> None:
        await asyncio.to_thread(
            subprocess.run, ["pg_ctlcluster", "15", "main", "stop", "-m", "fast"], check=True
        )
        await asyncio.sleep(3)
        await asyncio.to_thread(
            subprocess.run, ["pg_ctlcluster", "15", "main", "start"], check=True
        )

    async with running(app, runtime):
        await _stream_with_outage(settings, runtime, outage)


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
async def test_kafka_restart_mid_stream(service_settings, tmp_path: Path) -> None:
    broker = LocalKafka(
        tmp_path / "kafka", port=free_port(), controller_port=free_port(), heap="512m"
    )
    broker.start()
    broker.wait_ready(timeout=90)
    try:
        settings = service_settings(
            "quotes", kafka_bootstrap_servers=broker.bootstrap, topic_partitions=3
        )
        app, runtime = build(settings)

        async def outage() -> None:
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(3)
            await asyncio.to_thread(broker.start)
            await asyncio.to_thread(broker.wait_ready, 90)

        async with running(app, runtime):
            await _stream_with_outage(settings, runtime, outage)
    finally:
        broker.kill()
