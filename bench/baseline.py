"""The floor: raw aiokafka on the same broker with messages the size of a real event.
Produce N, consume N, and echo them (consume from A, publish to B, commit offsets) in
batches, and once more strictly per record (await the ack and commit each one). Beside
them, for scale, FastStream's own Kafka benchmark, which issue 10 quotes (about 2,000
events/s on one laptop core): one message looping through a subscriber that publishes
it back to its own topic."""

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from procure_devstack.testing import unique
from procure_runtime.kafka import await_leaders
from procure_runtime.settings import ServiceSettings

PRODUCER = {"acks": "all", "enable_idempotence": True, "linger_ms": 1}  # as the runtime's
ECHO_ROUNDS = 3


async def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()
    # New topics answer NotLeaderForPartition for a moment: wait so no timing pays it.
    await await_leaders(ServiceSettings(kafka_bootstrap_servers=bootstrap), names)


def rate(n: int, seconds: float) -> dict[str, Any]:
    return {"events": n, "seconds": round(seconds, 4), "events_per_s": round(n / seconds, 1)}


async def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> dict[str, Any]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [
            await producer.send(topic, p, key=str(i).encode()) for i, p in enumerate(payloads)
        ]
        await asyncio.gather(*futures)
        return rate(len(payloads), time.perf_counter() - started)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, n: int) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got, started = 0, time.perf_counter()
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000)
            got += sum(len(records) for records in batch.values())
        return rate(got, time.perf_counter() - started)
    finally:
        await consumer.stop()


async def echo(bootstrap: str, source: str, target: str, n: int, *, per_record: bool) -> dict:
    """Consume `source` in a consumer group, publish every record to `target`, commit."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=unique("bench-echo-"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    await asyncio.gather(consumer.start(), producer.start())
    try:
        done, started = 0, time.perf_counter()  # again at the first record fetched
        first = True
        while done < n:
            batch = await consumer.getmany(timeout_ms=1000)
            if batch and first:
                started, first = time.perf_counter(), False
            for tp, records in batch.items():
                if per_record:
                    for r in records:
                        await producer.send_and_wait(target, r.value, key=r.key)
                        await consumer.commit({tp: r.offset + 1})
                else:
                    futures = [await producer.send(target, r.value, key=r.key) for r in records]
                    await asyncio.gather(*futures)
                    await consumer.commit({tp: records[-1].offset + 1})
                done += len(records)
        return rate(done, time.perf_counter() - started)
    finally:
        await asyncio.gather(consumer.stop(), producer.stop())


async def faststream_loop(bootstrap: str, topic: str, payload: bytes, seconds: float) -> dict:
    """FastStream's Kafka benchmark as its repository has it (benchmarks/kafka_cases/
    test_basic.py): a subscriber that returns the message it got, published by FastStream
    to the same topic, so one message goes round and round; events/s over `seconds`. One
    message is in flight at a time: each event is a whole hop (fetch, decode, handle,
    encode, publish and await the ack), as a chain of services sees it, not a backlog."""
    broker = KafkaBroker(bootstrap, logger=None)
    handled: list[float] = []
    first = asyncio.Event()

    @broker.publisher(topic)
    @broker.subscriber(topic, auto_offset_reset="earliest")
    async def handle(message: Any) -> Any:  # decoded and encoded as JSON, as there
        handled.append(time.perf_counter())
        first.set()
        return message

    async with broker:
        await broker.start()
        await broker.publish(payload, topic)
        with contextlib.suppress(TimeoutError):  # the first fetch can take a while
            async with asyncio.timeout(30):
                await first.wait()
        await asyncio.sleep(seconds)  # the window starts at the first event handled
    if len(handled) < 2:
        return {**rate(0, seconds), "ok": False}
    return rate(len(handled) - 1, handled[-1] - handled[0])


async def run(
    bootstrap: str, payloads: list[bytes], partitions: int, loop_seconds: float = 3.0
) -> dict[str, Any]:
    prefix = f"bench.{unique()}."
    a, b, c, d = (
        f"{prefix}{name}" for name in ("echo-in", "echo-out", "echo-out-strict", "fs-loop")
    )
    await create_topics(bootstrap, [a, b, c, d], partitions)
    n = len(payloads)
    results = {"produce": await produce(bootstrap, a, payloads)}
    results["consume"] = await consume(bootstrap, a, n)
    # An echo of 2,000 records lasts well under a tenth of a second, so one round moves
    # with whatever else the machine does that instant (15,800-33,000/s between runs of
    # one hour): the floor is the median of ECHO_ROUNDS rounds, each in a consumer group
    # of its own over the same records; every round's rate is kept beside it.
    rounds = [await echo(bootstrap, a, b, n, per_record=False) for _ in range(ECHO_ROUNDS)]
    median = sorted(rounds, key=lambda r: r["events_per_s"])[len(rounds) // 2]
    results["echo"] = {**median, "rounds": [r["events_per_s"] for r in rounds]}
    results["echo_per_record"] = await echo(bootstrap, a, c, n, per_record=True)
    results["faststream_loop"] = await faststream_loop(bootstrap, d, payloads[0], loop_seconds)
    for r in results.values():
        r["message_bytes"] = round(sum(map(len, payloads)) / n)
    return results
