"""Faults: a 3-broker KRaft cluster (replication factor 3, min.insync.replicas=2, acks=all
producers) loses the leader of an `opportunity.won` partition mid-stream (SIGKILL).
Every acknowledged `opportunity.won` still becomes exactly one sales order, every charge
is routed exactly once, nothing is dead-lettered."""

import asyncio
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import select

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.kafka import LocalKafkaCluster
from procure_devstack.testing import KafkaProbe, eventually, running
from procure_quotes.app import build
from procure_quotes.models import sales_orders

pytestmark = [pytest.mark.kafka, pytest.mark.faults(checks=("lost", "duplicates", "dead_letters"))]
TOTAL = int(os.environ.get("PROCURE_FAULT_CHARGES", "150"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalKafkaCluster]:
    kafka = LocalKafkaCluster(tmp_path / "cluster", size=3, heap="512m")
    kafka.start(timeout=120)
    try:
        yield kafka
    finally:
        for i in range(kafka.size):  # nothing to keep: no clean shutdown needed
            kafka.kill(i)


async def _leaders(bootstrap: str, topic: str) -> set[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["leader"] for p in described["partitions"]}


async def _opportunities(runtime) -> list[str]:
    async with runtime.db.session() as session:
        return list(await session.scalars(select(sales_orders.c.opportunity_id)))


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
async def test_broker_killed_mid_stream_loses_nothing_acknowledged(
    service_settings, cluster: LocalKafkaCluster
) -> None:
    settings = service_settings(
        "quotes",
        kafka_bootstrap_servers=cluster.bootstrap,  # all three, as KAFKA_BOOTSTRAP_SERVERS lists them
        topic_replication=3,
        topic_partitions=3,
    )
    app, runtime = build(settings)
    wins = [f.opportunity_won(f.charge(f.product(procurement=i % 2 == 0), 1)) for i in range(TOTAL)]
    acknowledged: list[str] = []
    killed = asyncio.Event()

    async with running(app, runtime), KafkaProbe(cluster.bootstrap, settings.topic_prefix) as kafka:

        async def stream() -> None:
            for n, won in enumerate(wins):
                if n == 2 * TOTAL // 3:
                    await killed.wait()  # the last third goes to the shrunken cluster
                await kafka.publish(spec_for_topic("opportunity.won"), won)  # acks=all
                acknowledged.append(won.opportunity.id)
                await asyncio.sleep(0.01)

        producer = asyncio.create_task(stream())
        await eventually(lambda: _at_least(runtime, TOTAL // 3), timeout=60, interval=0.05)
        leaders = await _leaders(cluster.bootstrap, kafka.topic("opportunity.won"))
        victim = max(leaders)  # a leader of some partitions of the stream
        assert victim != 1
        await asyncio.to_thread(cluster.kill, victim - 1)  # node.id i + 1 is index i
        assert not cluster.nodes[victim - 1].is_running()
        at_kill = len(acknowledged)
        killed.set()
        await producer
        assert at_kill < TOTAL == len(acknowledged)

        await eventually(lambda: _at_least(runtime, TOTAL), timeout=90)
        await eventually(lambda: _backlog_empty(runtime), timeout=60)
        await asyncio.sleep(1)  # anything doubled would show up now
        orders = await _opportunities(runtime)
        assert sorted(orders) == sorted(acknowledged)  # each exactly once

        routed = defaultdict(set)
        for topic in ("charge.ready", "charge.need_order"):
            for record in await kafka.read(topic, timeout=5):
                routed[record.event.data["charge_id"]].add(record.event.id)
        assert set(routed) == {w.charges[0].id for w in wins}
        assert all(len(ids) == 1 for ids in routed.values())
        assert await kafka.read("dlq.quotes", timeout=1.0) == []

        # The crashed broker rejoins from its own data and the cluster serves on.
        await asyncio.to_thread(cluster.start, victim - 1)
        assert cluster.nodes[victim - 1].is_running()


async def _at_least(runtime, n: int) -> bool:
    return len(await _opportunities(runtime)) >= n


async def _backlog_empty(runtime) -> bool:
    return await runtime.relay.backlog() == 0
