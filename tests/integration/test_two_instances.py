"""Two instances of a service in one consumer group on one PostgreSQL database split
the partitions and still route every charge exactly once. (One relay publishes for both,
which keeps per-key order: test_relay_leader.py.)"""

import asyncio
from collections import defaultdict

import pytest
from sqlalchemy import func, select

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running
from procure_quotes.app import build
from procure_quotes.models import sales_orders

pytestmark = pytest.mark.kafka
TOTAL = 200


@pytest.mark.parametrize("db_backend", ["postgresql"], indirect=True)
async def test_two_instances_share_the_work_and_double_nothing(service_settings) -> None:
    first = service_settings("quotes", topic_partitions=3)
    second = first.model_copy()  # same database, topics and consumer group
    wins = [f.opportunity_won(f.charge(f.product(procurement=i % 2 == 0), 1)) for i in range(TOTAL)]
    app_a, runtime_a = build(first)
    app_b, runtime_b = build(second)
    calls = {"a": 0, "b": 0}
    for name, runtime in (("a", runtime_a), ("b", runtime_b)):
        runtime.consumer.process_batch = _counting(runtime.consumer.process_batch, calls, name)
    async with running(app_a, runtime_a), running(app_b, runtime_b):
        async with KafkaProbe(first.kafka_bootstrap_servers, first.topic_prefix) as kafka:
            await asyncio.gather(
                *(kafka.publish(spec_for_topic("opportunity.won"), w) for w in wins)
            )

            async def count() -> int:
                async with runtime_a.db.session() as session:
                    return int(
                        await session.scalar(select(func.count()).select_from(sales_orders)) or 0
                    )

            await eventually(lambda: _equals(count, TOTAL), timeout=90)
            await eventually(lambda: _equals(runtime_a.relay.backlog, 0), timeout=60)
            routed = defaultdict(set)
            for topic in ("charge.ready", "charge.need_order"):
                for record in await kafka.read(topic, timeout=5):
                    routed[record.event.data["charge_id"]].add(record.event.id)
        assert set(routed) == {w.charges[0].id for w in wins}
        assert all(len(ids) == 1 for ids in routed.values())
        assert calls["a"] > 0 and calls["b"] > 0, f"both instances consumed: {calls}"


def _counting(process_batch, calls: dict[str, int], name: str):
    async def counted(records):
        calls[name] += len(records)
        return await process_batch(records)

    return counted


async def _equals(count, n: int) -> bool:
    return await count() == n
