"""Faults 2 and 3: the Kafka broker, then PostgreSQL, stopped and started again while N
charges go through approval, PO, receipt and delivery on the six-process stack.

The broker is stopped with events in flight and stays down while people keep working
(approvals, receipts are accepted: each is a database commit with its events in the
outbox); the relays publish once it is back. PostgreSQL is stopped twice with events in
flight; consumers retry (never dead-letter) until it is back. The end state is exact
(flow.check): nothing lost, nothing doubled, one email per trigger."""

import asyncio
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from procure_devstack.kafka import LocalKafka
from procure_devstack.ports import free_ports
from procure_devstack.stackclient import StackClient, dead_letters

from . import flow

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.faults(checks=("lost", "duplicates", "emails", "dead_letters")),
]
OUTAGE_S = 3.0


async def test_kafka_broker_restart_mid_stream(
    tmp_path: Path, postgres_url: Callable[[str], str]
) -> None:
    port, controller = free_ports(2)
    broker = LocalKafka(tmp_path / "kafka", port=port, controller_port=controller, heap="768m")
    broker.start()
    await asyncio.to_thread(broker.wait_ready, 90)
    try:
        async with flow.own_stack(tmp_path / "stack", broker.bootstrap, postgres_url) as c:

            async def down() -> None:
                await asyncio.to_thread(broker.stop)

            async def up() -> None:
                await asyncio.sleep(OUTAGE_S)
                await asyncio.to_thread(broker.start)
                await asyncio.to_thread(broker.wait_ready, 90)

            # Down while half the approvals, then half the receipts, are accepted
            # (database commits, events in the outbox) with events in flight.
            done = await flow.run(
                c, flow.Hooks(approved_half=down, approved=up, received_half=down, received=up)
            )
            await flow.check(c, done)
            assert await dead_letters(c.kafka) == []
    finally:
        broker.kill()


def _pg(action: str) -> None:
    args = ["pg_ctlcluster", "15", "main", action, *(["-m", "fast"] if action == "stop" else [])]
    subprocess.run(args, check=True)


async def test_postgresql_restart_mid_stream(client: StackClient) -> None:
    if os.environ.get("PROCURE_TEST_DATABASE_URL"):
        pytest.skip("stops the machine's PostgreSQL cluster; not with an external database")

    async def outage() -> None:
        await asyncio.to_thread(_pg, "stop")
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(_pg, "start")

    done = await flow.run(client, flow.Hooks(charged=outage, submitted=outage, delivered=outage))
    await flow.check(client, done)
