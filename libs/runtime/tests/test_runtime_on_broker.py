"""The runtime's promises on the real broker: outbox, inbox, dead letters, version skips,
parking, retries, readiness and metrics."""

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.client import AIOKafkaClient
from aiokafka.partitioner import murmur2

from probe_service import CREATED, PICKED, READY, build, charges, count, readies
from procure_contracts import CloudEvent, new_event
from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.kafka import LocalKafka
from procure_devstack.ports import free_ports
from procure_devstack.testing import KafkaProbe, eventually, running
from procure_runtime import kafka
from procure_runtime.consumer import Record
from procure_runtime.kafka import client_kwargs

pytestmark = pytest.mark.kafka


def _probe(settings):
    return KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix)


def _ready(charge_id: str) -> ev.ChargeReadyV1:
    return ev.ChargeReadyV1(
        charge_id=charge_id, product=f.product(), quantity=1, destination=f.address()
    )


async def test_failed_transaction_publishes_nothing(service_settings) -> None:
    settings = service_settings("probe")
    app, runtime = build(settings)
    async with running(app, runtime), _probe(settings) as kafka:
        with pytest.raises(RuntimeError):
            async with runtime.transaction() as uow:
                uow.emit(READY, _ready("ch-rolled-back"))
                raise RuntimeError("the state change fails")
        async with runtime.transaction() as uow:
            uow.emit(READY, _ready("ch-committed"))
        events = await kafka.read_events("charge.ready", 1, settle=1.5)
        assert [e.data["charge_id"] for e in events] == ["ch-committed"]
        assert await runtime.relay.backlog() == 0


async def test_a_published_event_leaves_the_outbox(service_settings) -> None:
    """The relay deletes what the broker has acknowledged: the outbox holds only events
    still to publish, with no row rewritten to mark one sent and none left for a sweep."""
    settings = service_settings("probe")
    app, runtime = build(settings)
    outbox = runtime.metadata.tables["outbox"]
    async with running(app, runtime), _probe(settings) as kafka:
        async with runtime.transaction() as uow:
            for i in range(3):
                uow.emit(READY, _ready(f"ch-left-{i}"))
        events = await kafka.read_events("charge.ready", 3, settle=0.5)
        assert [e.data["charge_id"] for e in events] == [f"ch-left-{i}" for i in range(3)]
        await eventually(lambda: _rows(runtime, outbox, 0), timeout=10)


async def _rows(runtime, table, expected: int) -> bool:
    return await count(runtime, table) == expected


async def test_the_relay_puts_each_key_on_its_partition_in_order(service_settings) -> None:
    """The relay builds its record batches itself (bench/levers.md, lever 53): every record
    is on the partition the default partitioner gives its key (murmur2 over the topic's
    partitions in order, as Java's producer does), and each key's events are in the order
    they were emitted, over more records than one batch of a partition holds."""
    settings = service_settings("probe", topic_partitions=3)
    app, runtime = build(settings)
    keys = [f"ch-order-{i}" for i in range(7)]
    emitted = [(keys[n % len(keys)], n + 1) for n in range(140)]  # ~1 KB each
    async with running(app, runtime):
        async with runtime.transaction() as uow:
            for key, n in emitted:
                uow.emit(
                    READY,
                    ev.ChargeReadyV1(
                        charge_id=key, product=f.product(), quantity=n, destination=f.address()
                    ),
                )
        topic = settings.topic("charge.ready")
        consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **client_kwargs(settings))
        await consumer.start()
        try:
            records: list[Any] = []
            for _ in range(100):
                batches = await consumer.getmany(timeout_ms=200)
                records += [r for batch in batches.values() for r in batch]
                if len(records) >= len(emitted):
                    break
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
        finally:
            await consumer.stop()
    assert len(partitions) == 3 and len(records) == len(emitted)
    for r in records:
        assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 3, r.key
    for key in keys:
        mine = [r for r in records if r.key == key.encode()]
        assert len({r.partition for r in mine}) == 1
        got = [
            json.loads(r.value)["data"]["quantity"] for r in sorted(mine, key=lambda r: r.offset)
        ]
        assert got == [n for k, n in emitted if k == key]


async def test_publish_during_broker_outage_is_delivered_once_it_is_back(
    service_settings, tmp_path: Path
) -> None:
    port, controller = free_ports(2)
    broker = LocalKafka(tmp_path / "own-kafka", port=port, controller_port=controller)
    broker.start()
    broker.wait_ready(timeout=90)
    try:
        settings = service_settings("probe", kafka_bootstrap_servers=broker.bootstrap)
        app, runtime = build(settings)
        async with running(app, runtime) as http:
            assert (await http.get("/readyz")).status_code == 200
            broker.stop()
            async with runtime.transaction() as uow:
                uow.emit(READY, _ready("ch-during-outage"))
            await eventually(lambda: _not_ready(http), timeout=30)
            assert await runtime.relay.backlog() == 1  # kept, not lost
            broker.start()
            broker.wait_ready(timeout=90)
            await eventually(lambda: _backlog_empty(runtime), timeout=60)
            async with _probe(settings) as kafka:
                events = await kafka.read_events("charge.ready", 1, settle=1.5)
            assert [e.data["charge_id"] for e in events] == ["ch-during-outage"]
            assert (await http.get("/readyz")).status_code == 200
    finally:
        broker.kill()


async def _not_ready(http) -> bool:
    response = await http.get("/readyz")
    assert response.status_code == 503, response.text
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    return body["checks"]["kafka"] != "ok"


async def _backlog_empty(runtime) -> bool:
    return await runtime.relay.backlog() == 0


async def test_an_event_delivered_twice_has_one_effect(service_settings) -> None:
    settings = service_settings("probe")
    app, runtime = build(settings)
    created = f.charge_created()
    event = new_event(CREATED.type, created, source="/tests", subject=created.charge.id)
    async with running(app, runtime), _probe(settings) as kafka:
        await kafka.send_raw("charge.created", event.to_bytes(), created.charge.id.encode())
        await kafka.send_raw("charge.created", event.to_bytes(), created.charge.id.encode())
        emitted = await kafka.read_events("charge.ready", 1, settle=2.0)
        assert len(emitted) == 1
        await eventually(lambda: _count_is(runtime, readies, 1))
        assert await count(runtime, charges) == 1


async def test_an_event_id_applied_once_is_skipped_from_any_source(service_settings) -> None:
    """The inbox deduplicates on the envelope's `id` alone (docs/events.md, "Publishing
    from another system"): a later event under that id is skipped even when another
    `source` sends it with other data, then the event after it is applied."""
    settings = service_settings("probe")
    app, runtime = build(settings)
    first, other, after = f.charge_created(), f.charge_created(), f.charge_created()
    event = new_event(CREATED.type, first, source="/crm", subject=first.charge.id)
    reused = new_event(CREATED.type, other, source="/erp", subject=other.charge.id)
    reused = reused.model_copy(update={"id": event.id})
    nxt = new_event(CREATED.type, after, source="/erp", subject=after.charge.id)
    async with running(app, runtime), _probe(settings) as kafka:
        for e in (event, reused, nxt):  # one key: one partition, in this order
            await kafka.send_raw("charge.created", e.to_bytes(), b"one-key")
        await eventually(lambda: _count_is(runtime, charges, 1, id=after.charge.id))
        assert await count(runtime, charges, id=first.charge.id) == 1
        assert await count(runtime, charges, id=other.charge.id) == 0
        assert await count(runtime, charges) == 2


async def _count_is(runtime, table, n, **where) -> bool:
    got = await count(runtime, table, **where)
    assert got == n, f"{table.name}: {got} != {n}"
    return True


async def test_bad_records_go_to_the_dead_letter_topic_byte_for_byte(service_settings) -> None:
    settings = service_settings("probe")
    app, runtime = build(settings)
    garbage = b"\x00\xffnot json at all{"
    unknown = new_event(
        "procurement.nonsense.happened.v1", f.charge_created(), source="/x", subject="s"
    ).to_bytes()
    invalid = json.dumps(
        {
            "specversion": "1.0",
            "id": "bad-data-1",
            "source": "/x",
            "type": CREATED.type,
            "data": {"charge": {"id": "c"}},
        }
    ).encode()
    no_id = json.loads(invalid)
    del no_id["id"]
    no_id["data"] = json.loads(
        new_event(CREATED.type, f.charge_created(), source="/x", subject="s").to_bytes()
    )["data"]
    no_id = json.dumps(no_id).encode()
    # A type handled here, valid, but on another topic it does not belong to.
    elsewhere = new_event(CREATED.type, f.charge_created(), source="/x", subject="s").to_bytes()
    valid = f.charge_created()
    async with running(app, runtime), _probe(settings) as kafka:
        for value in (garbage, unknown, invalid, no_id, elsewhere):
            topic = "units.picked" if value is elsewhere else "charge.created"
            await kafka.send_raw(topic, value, b"same-key")
        await kafka.publish(CREATED, valid)
        dead = await kafka.read("dlq.probe", until=lambda got: len(got) >= 5, settle=1.0)
        assert sorted(d.value for d in dead) == sorted(
            [garbage, unknown, invalid, no_id, elsewhere]
        )
        kinds = {d.value: d.headers["x-error-type"] for d in dead}
        assert [kinds[v] for v in (garbage, unknown, invalid, no_id, elsewhere)] == [
            "invalid-json",
            "unknown-type",
            "invalid-data",
            "invalid-envelope",
            "unknown-type",
        ]
        dead = [d for d in dead if d.value != elsewhere]
        # Where each came from, exactly: one partition, sent in this order.
        origin = [(d.value, d.headers["x-original-offset"]) for d in dead]
        assert sorted(origin) == sorted(
            zip([garbage, unknown, invalid, no_id], "0123", strict=True)
        )
        for d in dead:
            assert d.key == b"same-key"
            assert d.headers["x-original-topic"] == f"{settings.topic_prefix}charge.created"
            assert d.headers["x-original-partition"] == "0"
            assert d.headers["x-error-message"]
            assert d.headers["x-failed-at"]
            assert d.headers["x-attempts"] == "1"
        await eventually(lambda: _count_is(runtime, charges, 1, id=valid.charge.id))


async def test_a_tombstone_is_dead_lettered_as_a_tombstone(service_settings) -> None:
    """A record with no value (a tombstone, as compaction uses) is no event: it goes to
    the dead-letter topic as it came, with no value, not as an empty one, beside a
    record whose value is empty."""
    settings = service_settings("probe")
    app, runtime = build(settings)
    valid = f.charge_created()
    async with running(app, runtime), _probe(settings) as kafka:
        await kafka.send_raw("charge.created", None, b"gone")
        await kafka.send_raw("charge.created", b"", b"empty")
        await kafka.publish(CREATED, valid)
        dead = await kafka.read("dlq.probe", until=lambda got: len(got) >= 2, settle=1.0)
        assert {d.key: d.value for d in dead} == {b"gone": None, b"empty": b""}
        for d in dead:
            assert d.headers["x-error-type"] == "invalid-json"
            assert d.headers["x-original-topic"] == f"{settings.topic_prefix}charge.created"
        await eventually(lambda: _count_is(runtime, charges, 1, id=valid.charge.id))


async def test_records_with_headers_that_are_not_text_are_applied(service_settings) -> None:
    """Kafka header values are any bytes, or none. FastStream's parser decoded each as
    UTF-8 and, failing, dropped the whole fetched batch: its events were never applied
    nor dead-lettered, and the next batch's offsets were committed past them."""
    settings = service_settings("probe")
    app, runtime = build(settings)
    sent = [f.charge_created() for _ in range(3)]
    headers: list[list[tuple[str, bytes | None]]] = [
        [("trace", b"\xff\xfe not utf-8")],
        [("empty", None)],
        [("fine", b"text")],
    ]
    async with running(app, runtime), _probe(settings) as kafka:
        for data, extra in zip(sent, headers, strict=True):
            event = new_event(CREATED.type, data, source="/tests", subject=data.charge.id)
            await kafka.send_raw(
                "charge.created", event.to_bytes(), data.charge.id.encode(), headers=extra
            )
        for data in sent:
            await eventually(lambda data=data: _count_is(runtime, charges, 1, id=data.charge.id))
        assert await kafka.read("dlq.probe", timeout=0.5) == []


# Another producer's headers: a CloudEvents binding's, bytes that are not text, a header
# with no value, a name given twice, and one that claims to be a runtime's mark.
FOREIGN_HEADERS: list[tuple[str, bytes | None]] = [
    ("content-type", b"application/cloudevents+json"),
    ("trace", b"\xff\xfe not utf-8"),
    ("empty", None),
    ("trace", b"second"),
    ("x-error-type", b"spoofed"),
]
KEPT = tuple(h for h in FOREIGN_HEADERS if h[0] != "x-error-type")


async def test_a_dead_letter_keeps_the_original_records_headers(service_settings) -> None:
    """Byte for byte includes the headers: a dead letter is the record as it came, in
    order, with the runtime's marks (which replace a header of the same name)."""
    settings = service_settings("probe")
    app, runtime = build(settings)
    invalid = json.dumps(
        {
            "specversion": "1.0",
            "id": "bad-1",
            "source": "/x",
            "type": CREATED.type,
            "data": {"nope": 1},
        }
    ).encode()
    async with running(app, runtime), _probe(settings) as kafka:
        await kafka.send_raw("charge.created", invalid, b"k", headers=FOREIGN_HEADERS)
        [dead] = await kafka.read("dlq.probe", until=lambda got: len(got) >= 1, settle=0.5)
    assert dead.value == invalid
    assert dead.raw_headers[: len(KEPT)] == KEPT
    marks = dict(dead.raw_headers[len(KEPT) :])
    assert set(marks) == {
        "x-original-topic",
        "x-original-partition",
        "x-original-offset",
        "x-error-type",
        "x-error-message",
        "x-failed-at",
        "x-attempts",
    }
    assert marks["x-error-type"] == b"invalid-data"


async def test_a_parked_event_dead_lettered_keeps_its_headers_and_key(service_settings) -> None:
    """A parked event waits in the database; its headers and key wait with it, as they
    came: an empty key, one that is not UTF-8, one longer than any id (the key was text
    of 200 characters: changed, or on PostgreSQL not parked at all)."""
    settings = service_settings("probe", park_timeout_s=1.0)
    app, runtime = build(settings)
    keys = [b"", b"\xff\x00not utf-8", b"k" * 300]
    early = {
        key: new_event(READY.type, _ready(f"ch-never-{n}"), source="/x", subject="s")
        for n, key in enumerate(keys)
    }
    async with running(app, runtime), _probe(settings) as kafka:
        for key, event in early.items():
            await kafka.send_raw("charge.ready", event.to_bytes(), key, headers=FOREIGN_HEADERS)
        dead = await kafka.read("dlq.probe", until=lambda got: len(got) >= 3, settle=0.5)
    assert sorted((d.key, d.value) for d in dead) == sorted(
        (key, event.to_bytes()) for key, event in early.items()
    )
    for d in dead:
        assert d.headers["x-error-type"] == "parked-timeout"
        assert d.raw_headers[: len(KEPT)] == KEPT


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_records_compressed_by_another_producer_are_applied(
    service_settings, codec: str
) -> None:
    """Outside systems publish into the platform with their producers' settings, which
    may compress. Without the codecs installed, a snappy, lz4 or zstd batch stopped its
    partition: the client retried the same fetch without end, nothing dead-lettered."""
    from aiokafka import AIOKafkaProducer

    settings = service_settings("probe")
    app, runtime = build(settings)
    data = f.charge_created()
    event = new_event(CREATED.type, data, source="/tests", subject=data.charge.id)
    producer = AIOKafkaProducer(compression_type=codec, **client_kwargs(settings), acks="all")
    async with running(app, runtime):
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic("charge.created"), event.to_bytes(), key=data.charge.id.encode()
            )
        finally:
            await producer.stop()
        await eventually(lambda: _count_is(runtime, charges, 1, id=data.charge.id))


async def test_a_valid_record_is_decoded_in_one_pass(service_settings, monkeypatch) -> None:
    """Envelope and data validated together (`typed_envelope`), to the same event and
    data as the two passes give; those run only for a record the one pass refuses."""
    settings = service_settings("probe")
    _, runtime = build(settings)
    created = f.charge_created()
    value = new_event(CREATED.type, created, source="/x", subject="s").to_bytes()
    record = Record("charge.created", 0, 0, b"k", value)
    two_passes = CloudEvent.from_bytes(value)

    def refused(raw: bytes) -> CloudEvent:
        raise AssertionError("decoded twice")

    monkeypatch.setattr(CloudEvent, "from_bytes", refused)
    decoded = await runtime.consumer._decode(record)
    assert decoded.data == created and decoded.spec is CREATED
    assert decoded.event.model_dump(exclude={"data"}) == two_passes.model_dump(exclude={"data"})
    assert decoded.event.data.model_dump(mode="json") == two_passes.data


async def test_a_newer_version_of_a_known_type_is_skipped_and_counted(service_settings) -> None:
    settings = service_settings("probe")
    app, runtime = build(settings)
    newer = new_event("procurement.charge.created.v2", f.charge_created(), source="/x", subject="s")
    after = f.charge_created()
    async with running(app, runtime) as http, _probe(settings) as kafka:
        await kafka.send_raw("charge.created", newer.to_bytes())
        await kafka.publish(CREATED, after)
        await eventually(lambda: _count_is(runtime, charges, 1, id=after.charge.id))
        assert await count(runtime, charges) == 1
        metrics = (await http.get("/metrics")).text
        assert (
            'procure_events_skipped_total{reason="newer-version",service="probe",topic="charge.created"}'
            in metrics
        )
        assert await kafka.read("dlq.probe", timeout=1.0) == []


async def test_an_event_that_arrives_too_early_is_parked_then_applied(service_settings) -> None:
    settings = service_settings("probe")
    app, runtime = build(settings)
    created = f.charge_created()
    async with running(app, runtime), _probe(settings) as kafka:
        early = await kafka.publish(READY, _ready(created.charge.id))
        await eventually(lambda: runtime.consumer.parked_count())
        assert await count(runtime, readies) == 0  # nothing of it applied while parked
        await kafka.publish(CREATED, created)
        # the early event and the one the service emitted itself both apply
        await eventually(lambda: _count_is(runtime, readies, 2, charge_id=created.charge.id))
        assert await count(runtime, readies, event_id=early.id) == 1
        assert await runtime.consumer.parked_count() == 0


async def test_an_event_parked_too_long_is_dead_lettered_with_the_reason(service_settings) -> None:
    settings = service_settings("probe", park_timeout_s=1.0)
    app, runtime = build(settings)
    async with running(app, runtime), _probe(settings) as kafka:
        event = await kafka.publish(READY, _ready("ch-never-created"))
        [dead] = await kafka.read("dlq.probe", until=lambda got: len(got) >= 1, settle=0.5)
        assert dead.event.id == event.id
        assert dead.headers["x-error-type"] == "parked-timeout"
        assert "ch-never-created not seen yet" in dead.headers["x-error-message"]
        assert await runtime.consumer.parked_count() == 0


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(service_settings) -> None:
    settings = service_settings("probe", handler_max_attempts=3)
    app, runtime = build(settings)
    picked = ev.UnitsPickedV1(charge_id="ch-1", location_id="loc-1", quantity=1)
    after = f.charge_created()
    async with running(app, runtime), _probe(settings) as kafka:
        await kafka.publish(PICKED, picked)
        await kafka.publish(CREATED, after)
        [dead] = await kafka.read("dlq.probe", until=lambda got: len(got) >= 1, settle=0.5)
        assert dead.headers["x-error-type"] == "handler-error"
        assert dead.headers["x-attempts"] == "3"
        assert "always fails" in dead.headers["x-error-message"]
        await eventually(lambda: _count_is(runtime, charges, 1, id=after.charge.id))


async def test_a_value_the_database_refuses_as_data_is_dead_lettered_at_once(
    service_settings, db_backend
) -> None:
    """A value the contract allows but the database refuses (here a quantity beyond the
    probe's 16-bit column) fails the same way on every attempt: dead-lettered at once as
    invalid data, not retried while the consumer holds every topic behind it. SQLite
    stores such an integer, so there the event applies."""
    settings = service_settings("probe", handler_max_attempts=5)
    app, runtime = build(settings)
    huge = f.charge_created(f.charge(quantity=2**20))
    after = f.charge_created()
    async with running(app, runtime), _probe(settings) as kafka:
        await kafka.publish(CREATED, huge)
        await kafka.publish(CREATED, after)
        await eventually(lambda: _count_is(runtime, charges, 1, id=after.charge.id))
        if db_backend == "sqlite":
            assert await count(runtime, charges, id=huge.charge.id) == 1
            return
        [dead] = await kafka.read("dlq.probe", until=lambda got: len(got) >= 1, settle=0.5)
        assert dead.headers["x-error-type"] == "invalid-data"
        assert dead.headers["x-attempts"] == "1"
        assert "the database refused a value" in dead.headers["x-error-message"]
        assert json.loads(dead.value)["data"]["charge"]["id"] == huge.charge.id
        assert await count(runtime, charges, id=huge.charge.id) == 0


async def test_ops_endpoints_answer_without_auth(service_settings) -> None:
    settings = service_settings("probe")
    app, runtime = build(settings)
    async with running(app, runtime) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = (await http.get("/readyz")).json()
        assert ready["checks"] == {"database": "ok", "kafka": "ok"}
        asyncapi = (await http.get("/asyncapi.json")).json()
        assert asyncapi["asyncapi"].startswith("3.")
        assert any("charge.ready" in name for name in asyncapi["channels"])
        assert (await http.get("/openapi.json")).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert "procure_outbox_backlog" in metrics


async def test_partitions_that_appear_while_consuming_are_consumed(service_settings) -> None:
    """A consumer that joined its group before some partitions were in its metadata (a
    topic still propagating through a cluster, or partitions added by an operator) must
    not wait for Kafka's default 5-minute metadata refresh to consume them."""
    settings = service_settings("probe", topic_partitions=1)
    app, runtime = build(settings)
    created = f.charge_created()
    event = new_event(CREATED.type, created, source="/tests", subject=created.charge.id)
    async with running(app, runtime), _probe(settings) as kafka:
        admin = AIOKafkaAdminClient(**client_kwargs(settings))
        await admin.start()
        try:
            await admin.create_partitions({settings.topic("charge.created"): NewPartitions(2)})
        finally:
            await admin.close()
        await kafka.send_raw("charge.created", event.to_bytes(), partition=1)
        await eventually(lambda: _count_is(runtime, charges, 1), timeout=45)


async def test_the_services_kafka_clients_never_ask_for_every_topics_metadata(
    service_settings, monkeypatch
) -> None:
    """A Kafka client that names no topic refreshes the metadata of every topic in the
    cluster at every `METADATA_MAX_AGE_MS` (~60 ms of CPU on a cluster of a thousand
    topics). The service's clients, the consumer and the relay's producer, name theirs;
    FastStream's producer and admin client, idle, were such clients."""
    monkeypatch.setattr(kafka, "METADATA_MAX_AGE_MS", 300)
    asked: list[set[str] | None] = []  # the topics of each refresh; None: every topic
    update = AIOKafkaClient._metadata_update

    async def spy(self, cluster, topics):
        asked.append(set(topics) if topics else None)
        return await update(self, cluster, topics)

    monkeypatch.setattr(AIOKafkaClient, "_metadata_update", spy)
    settings = service_settings("probe")
    app, runtime = build(settings)
    async with running(app, runtime) as http:
        await asyncio.sleep(2.0)
        assert (await http.get("/readyz")).status_code == 200  # asks the relay's client
    assert len(asked) >= 6, asked  # refreshed every 300 ms
    assert None not in asked, asked
    published = {settings.topic("charge.ready"), settings.topic("dlq.probe")}
    assert published in asked  # the relay's producer, before it has sent anything


async def test_an_existing_topic_that_should_be_compacted_and_is_not_is_reported(
    service_settings,
) -> None:
    """Made earlier with the broker's default policy (by an older release, or by hand):
    left alone, as the cluster is the operator's, but named so it can be fixed."""
    settings = service_settings("quotes")
    wrong, right, plain = (settings.topic(t) for t in ("catalog.products", "a", "b"))
    assert await kafka.ensure_topics(settings, {wrong: False, right: True}) == []
    found = await kafka.ensure_topics(settings, {wrong: True, right: True, plain: False})
    assert found == [wrong]


async def test_a_record_too_large_to_republish_as_it_is_is_dead_lettered(
    service_settings,
) -> None:
    """The broker limits a compressed batch, so another producer's compressed record can
    hold far more than the 1 MiB the relay's producer sends. Its dead letter was retried
    without end and the partition never moved again. Now it goes compressed, byte for
    byte; one the broker still refuses leaves a dead letter with no value that says how
    large it was (its original stays on its topic). Either way the next record applies."""
    import os

    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import NewTopic

    settings = service_settings("probe")
    source = settings.topic("charge.created")
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:  # the source takes 8 MB records; the dead-letter topic has the broker's 1 MiB
        await admin.create_topics(
            [NewTopic(source, 1, 1, topic_configs={"max.message.bytes": str(8 << 20)})]
        )
    finally:
        await admin.close()
    compressible = b"[" + b"0," * 1_500_000 + b"!"  # 3 MB, not JSON
    incompressible = os.urandom(3_000_000)
    valid = f.charge_created()
    app, runtime = build(settings)
    producer = AIOKafkaProducer(
        compression_type="gzip", max_request_size=8 << 20, **client_kwargs(settings), acks="all"
    )
    async with running(app, runtime), _probe(settings) as kafka:
        await producer.start()
        try:
            for value in (compressible, incompressible):
                await producer.send_and_wait(source, value, key=b"k")
        finally:
            await producer.stop()
        await kafka.publish(CREATED, valid)
        await eventually(lambda: _count_is(runtime, charges, 1, id=valid.charge.id))
        dead = await kafka.read("dlq.probe", until=lambda got: len(got) >= 2, settle=1.0)
    assert [d.value for d in dead] == [compressible, b""]
    assert "x-value-omitted" not in dead[0].headers
    assert dead[1].headers["x-value-omitted"] == "3000000"
    assert dead[1].headers["x-original-offset"] == "1"
    assert {d.headers["x-error-type"] for d in dead} == {"invalid-json"}


LAST_POLL = "procure_consumer_last_poll_timestamp_seconds"


async def test_the_last_poll_stamp_moves_while_the_consumer_polls_and_stops_while_it_is_stuck(
    service_settings,
) -> None:
    """No probe shows a consumer that no longer polls (a batch that never ends, a database
    retried without end): `/readyz` asks the database and the broker, which both answer.
    Its poll's stamp does: it moves while the consumer is idle, stays while a batch holds
    it, and moves again once the batch is done."""
    import time

    from prometheus_client import REGISTRY

    settings = service_settings("probe")
    app, runtime = build(settings)
    holding, release = asyncio.Event(), asyncio.Event()
    apply = runtime.consumer.process_batch

    async def held(records):
        holding.set()
        await release.wait()
        return await apply(records)

    runtime.consumer.process_batch = held

    def stamp() -> float:
        return REGISTRY.get_sample_value(LAST_POLL, {"service": "probe"}) or 0.0

    async def moved_past(t: float) -> bool:
        return stamp() > t

    started = time.time()
    async with running(app, runtime) as http, _probe(settings) as kafka:
        await eventually(lambda: moved_past(started), timeout=30)
        idle = stamp()
        await eventually(lambda: moved_past(idle), timeout=10)  # idle: it keeps moving

        created = f.charge_created()
        await kafka.publish(CREATED, created)
        await asyncio.wait_for(holding.wait(), 30)
        stuck = stamp()
        await asyncio.sleep(1.5)  # a poll returns every 100 ms when it polls
        assert stamp() == stuck
        exported = (await http.get("/metrics")).text
        # The registry is the process's: other tests' services have their own series.
        series = f'{LAST_POLL}{{service="probe"}} '
        [line] = [x for x in exported.splitlines() if x.startswith(series)]
        assert float(line.split()[-1]) == stuck

        release.set()
        await eventually(lambda: moved_past(stuck), timeout=10)
        await eventually(lambda: _rows(runtime, charges, 1), timeout=10)
