"""An event over what the broker takes (Kafka's default 1 MiB) is refused where it is
made, with nothing stored: the producer would refuse it for good, and the outbox relay,
retrying its first rows in order, would never publish anything after it again."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from probe_service import build, charges, count
from procure_devstack import factories as f
from procure_devstack.testing import record
from procure_runtime.outbox import MAX_EVENT_BYTES
from procure_runtime.settings import load_settings


async def test_an_event_that_would_make_one_too_large_is_dead_lettered_alone(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    settings = load_settings(
        "probe",
        database_url=database_url("event_size"),
        kafka_bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path,
    )
    _, runtime = build(settings)
    await runtime._migrate()
    dead: list[tuple[bytes, str, str]] = []

    async def publish(value: bytes, topic: str, **kw: Any) -> None:
        headers = {k: v.decode() for k, v in kw["headers"]}
        dead.append((value, headers["x-error-type"], headers["x-error-message"]))

    runtime.consumer.publish = publish
    fine = f.charge_created()
    huge = f.charge_created(f.charge(f.product(name="W" * (MAX_EVENT_BYTES + 1))))
    batch = [record("charge.created", data, n) for n, data in enumerate([fine, huge])]
    outbox = runtime.metadata.tables["outbox"]
    try:
        await runtime.consumer.process_batch(batch)
        assert await count(runtime, charges, id=fine.charge.id) == 1
        assert await count(runtime, charges, id=huge.charge.id) == 0
        assert await count(runtime, outbox) == 1  # the fine one's charge.ready
    finally:
        await runtime.db.engine.dispose()
    [(value, kind, reason)] = dead
    assert value == batch[1].value and kind == "rejected"
    assert f"events are at most {MAX_EVENT_BYTES:,}" in reason
