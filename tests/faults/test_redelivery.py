"""Fault 5: after N charges went through approval, PO, receipt and delivery, each
service in turn is stopped, its consumer group reset to the earliest offset (as
`kafka-consumer-groups --reset-offsets --to-earliest` would), and started again: it
re-reads every event it ever consumed, and nothing changes: no state, no outgoing event,
no email (the inbox absorbs every redelivery)."""

import asyncio
from typing import Any

import pytest

from procure_contracts.registry import REGISTRY
from procure_devstack.cli import SERVICES
from procure_devstack.stackclient import StackClient
from procure_devstack.testing import eventually

from . import flow

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.faults(checks=("lost", "duplicates", "emails", "dead_letters")),
]
TOPICS = sorted({spec.topic for spec in REGISTRY})


async def _state(c: StackClient, done: flow.Flow) -> dict[str, Any]:
    """Everything a person or another system can see of the flow."""
    return {
        "charges": [await c.charge(cid) for cid in done.charge_ids],
        "stock": await c.stock(done.product_id, done.location_id),
        "po": [
            await c.get(service, f"/purchase-orders/{done.po['id']}")
            for service in ("purchasing", "receiving")
        ],
        "delivered": await c.get("shipping", "/delivery/delivered", limit=1000),
        "topics": await c.kafka.end_offsets(TOPICS),
        "mail": len(c.stack.sink.messages),
    }


async def test_every_consumer_group_reset_to_earliest_changes_nothing(
    client: StackClient,
) -> None:
    c = client
    done = await flow.run(c, flow.Hooks())
    await flow.check(c, done)
    await asyncio.sleep(2)  # let the last relays and mails finish
    before = await _state(c, done)

    for name in SERVICES:
        topics = [spec.topic for spec in REGISTRY if name in spec.consumers]
        group = c.stack.group_id(name)
        await asyncio.to_thread(c.stack.stop, name)
        await c.kafka.reset_group_to_earliest(group, topics)
        assert await c.kafka.lag(group, topics) > 0  # it has everything to re-read
        await asyncio.to_thread(c.stack.start, name)

        async def caught_up(group: str = group, topics: list[str] = topics) -> bool:
            return await c.kafka.lag(group, topics) == 0

        await eventually(caught_up, timeout=c.timeout * 2)

    await asyncio.sleep(3)  # anything it would publish or send would show by now
    assert await _state(c, done) == before
