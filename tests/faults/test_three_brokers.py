"""Fault 6: the stack on a 3-broker KRaft cluster on loopback (replication factor 3,
`min.insync.replicas=2`, producers with `acks=all`). The broker leading most of the
stack's partitions is SIGKILLed once the PO is submitted; N charges still go through
approval, PO, receipt and delivery with nothing acknowledged lost (flow.check), then the
broker rejoins from its own data."""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from procure_contracts.registry import REGISTRY
from procure_devstack.kafka import LocalKafkaCluster
from procure_devstack.stackclient import dead_letters
from procure_devstack.testing import eventually

from . import flow

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.faults(checks=("lost", "duplicates", "emails", "dead_letters")),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalKafkaCluster]:
    kafka = LocalKafkaCluster(tmp_path / "cluster", size=3, heap="512m")
    kafka.start(timeout=120)
    try:
        yield kafka
    finally:
        for i in range(kafka.size):  # nothing to keep: no clean shutdown needed
            kafka.kill(i)


async def _partitions(bootstrap: str, topics: list[str]) -> list[dict]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return [p for t in described for p in t["partitions"]]


async def _busiest_leader(bootstrap: str, topics: list[str]) -> int:
    leaders = Counter(p["leader"] for p in await _partitions(bootstrap, topics))
    # Node 1 is where the test's own clients bootstrap from first; any other will do.
    return max((n for n in leaders if n != 1), key=lambda n: leaders[n])


async def test_broker_killed_mid_stream_loses_nothing_acknowledged(
    tmp_path: Path, cluster: LocalKafkaCluster
) -> None:
    def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / name}.db"

    (tmp_path / "db").mkdir()
    async with flow.own_stack(
        tmp_path / "stack", cluster.bootstrap, sqlite, partitions=3, replication=3
    ) as c:
        topics = [c.kafka.topic(spec.topic) for spec in REGISTRY]
        killed: list[int] = []

        async def kill_a_leader() -> None:
            victim = await _busiest_leader(cluster.bootstrap, topics)
            killed.append(victim)
            await asyncio.to_thread(cluster.kill, victim - 1)  # node.id i + 1 is index i
            assert not cluster.nodes[victim - 1].is_running()

        done = await flow.run(c, flow.Hooks(submitted=kill_a_leader))
        await flow.check(c, done)
        assert await dead_letters(c.kafka) == []
    # The crashed broker rejoins from its own data: back in sync on every partition.
    [victim] = killed
    await asyncio.to_thread(cluster.start, victim - 1)
    assert cluster.nodes[victim - 1].is_running()

    async def in_sync_everywhere() -> bool:
        isrs = [p["isr"] for p in await _partitions(cluster.bootstrap, topics)]
        return bool(isrs) and all(victim in isr for isr in isrs)

    await eventually(in_sync_everywhere, timeout=120)
