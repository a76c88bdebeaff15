"""Nothing lost, nothing doubled: the quotes service is SIGKILLed while 500
`opportunity.won` events stream in, then restarted."""

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.ports import free_port
from procure_devstack.testing import KafkaProbe, eventually

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.faults(checks=("lost", "duplicates")),
]
WON = spec_for_topic("opportunity.won")
TOTAL = 500


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "procure_quotes"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def _ready(port: int) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


async def test_sigkill_mid_stream_loses_nothing_and_doubles_nothing(
    service_settings, tmp_path: Path
) -> None:
    settings = service_settings("quotes", topic_partitions=3)  # several partitions in flight
    port = free_port()
    env = {
        **os.environ,
        "QUOTES_PORT": str(port),
        "QUOTES_DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "PROCURE_TOPIC_PREFIX": settings.topic_prefix,
        "PROCURE_DATA_DIR": str(tmp_path),
        "PROCURE_TOPIC_PARTITIONS": "3",
    }
    log = tmp_path / "quotes.log"
    engine = create_async_engine(settings.database_url)

    async def unsent() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(text("SELECT count(*) FROM outbox")) or 0)

    async def sales_orders() -> int:
        async with engine.connect() as conn:
            try:
                return int(
                    await conn.scalar(select(func.count()).select_from(text("sales_orders"))) or 0
                )
            except Exception:
                return 0

    wins = [
        f.opportunity_won(f.charge(f.product(procurement=i % 2 == 0), 1 + i % 3))
        for i in range(TOTAL)
    ]
    process = _start(env, log)
    try:
        await eventually(lambda: _ready(port), timeout=60)
        async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:

            async def stream() -> None:
                for won in wins:
                    await kafka.publish(WON, won)
                    await asyncio.sleep(0.004)

            producer = asyncio.create_task(stream())
            await eventually(lambda: _at_least(sales_orders, 120), timeout=60, interval=0.05)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            killed_at = await sales_orders()
            assert 0 < killed_at < TOTAL, "the kill must land mid-stream"
            await producer
            process = _start(env, log)
            await eventually(lambda: _at_least(sales_orders, TOTAL), timeout=120)
            await eventually(lambda: _equals(unsent, 0), timeout=60)  # the relay caught up
            await asyncio.sleep(2)  # anything doubled would show up by now
            assert await sales_orders() == TOTAL

            routed = defaultdict(set)
            want = {w.charges[0].id for w in wins}
            for topic in ("charge.ready", "charge.need_order"):
                for record in await kafka.read(topic, until=lambda got: False, timeout=6):
                    event = record.event
                    routed[event.data["charge_id"]].add(event.id)
            assert set(routed) == want, "every charge routed"
            assert all(len(ids) == 1 for ids in routed.values()), (
                "exactly one routing effect per charge"
            )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        await engine.dispose()


async def _equals(count, n: int) -> bool:
    return await count() == n


async def _at_least(count, n: int) -> bool:
    return await count() >= n
