"""Fault 7: poison on every input topic of every service is dead-lettered byte for byte
with its origin, and the rest keeps flowing: per service on its own, and on the whole
stack in the middle of the flow."""

import importlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from procure_contracts.registry import REGISTRY
from procure_devstack.stackclient import dead_letters
from procure_devstack.testing import KafkaProbe, eventually, running

from . import flow

pytestmark = [pytest.mark.kafka, pytest.mark.faults(checks=("lost",))]
SERVICES = ["quotes", "inventory", "purchasing", "receiving", "shipping", "notifier"]


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("service", SERVICES)
async def test_poison_on_every_input_topic_is_dead_lettered(service: str, service_settings) -> None:
    settings = service_settings(service)
    app, runtime = importlib.import_module(f"procure_{service}.app").build(settings)
    topics = runtime.handlers.topics
    poison = {topic: f"\x00not-an-event on {topic} \xff".encode("latin-1") for topic in topics}
    async with (
        running(app, runtime),
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        for topic, value in poison.items():
            await kafka.send_raw(topic, value, key=b"k")
        dead = await kafka.read(
            f"dlq.{service}", until=lambda got: len(got) >= len(topics), settle=1.0
        )

        async def moved_on() -> bool:  # past the poison on every topic: nothing blocked
            return await kafka.lag(settings.group_id, topics) == 0

        await eventually(moved_on, timeout=30)
    assert sorted(d.value for d in dead) == sorted(poison.values())
    for d in dead:
        original = d.headers["x-original-topic"].removeprefix(settings.topic_prefix)
        assert poison[original] == d.value
        assert d.headers["x-error-type"] == "invalid-json"
    assert len(dead) == len(topics)


@pytest.mark.e2e
@pytest.mark.faults(checks=("lost", "duplicates", "emails", "dead_letters"))
async def test_poison_mid_flow_is_dead_lettered_and_the_flow_completes(
    tmp_path: Path, kafka_bootstrap: str, postgres_url: Callable[[str], str]
) -> None:
    """Fault 7 on the whole stack: once N charges are created, an undecodable message and
    an invalid event (the topic's type, data that breaks its schema) land on every input
    topic of every service. Each consumer dead-letters each of them byte for byte, with
    its origin, and the flow completes exactly (flow.check). The stack is its own, so
    that no other test re-reads the poison."""
    async with flow.own_stack(tmp_path, kafka_bootstrap, postgres_url) as c:
        poison: dict[str, list[bytes]] = {}

        async def publish_poison() -> None:
            for spec in REGISTRY:
                if not spec.consumers:
                    continue
                garbage = f"\x00not-an-event on {spec.topic} \xff".encode("latin-1")
                invalid = json.dumps(
                    {
                        "specversion": "1.0",
                        "id": str(uuid.uuid4()),
                        "source": "/tests/poison",
                        "type": spec.type,
                        "subject": "poison",
                        "time": datetime.now(UTC).isoformat(),
                        "datacontenttype": "application/json",
                        "data": {key: [{"poison": True}] for key in spec.model.model_fields},
                    }
                ).encode()
                poison[spec.topic] = [garbage, invalid]
                for value in poison[spec.topic]:
                    await c.kafka.send_raw(spec.topic, value, key=b"poison")

        done = await flow.run(c, flow.Hooks(charged=publish_poison))
        await flow.check(c, done)

        expected = {
            (name, spec.topic, value)
            for spec in REGISTRY
            for name in spec.consumers
            for value in poison[spec.topic]
        }

        def landed(letters: list) -> list[tuple[str, str, bytes]]:
            return [
                (
                    d.topic.removeprefix("dlq."),
                    d.headers["x-original-topic"].removeprefix(c.stack.prefix),
                    d.value,
                )
                for d in letters
            ]

        async def all_dead() -> list:
            letters = await dead_letters(c.kafka)
            missing = expected - set(landed(letters))
            assert not missing, f"not dead-lettered: {sorted(missing)}"
            return letters

        letters = await eventually(all_dead, timeout=c.timeout)
        assert sorted(landed(letters)) == sorted(expected)  # each once, byte for byte
        kinds = Counter(d.headers["x-error-type"] for d in letters)
        assert kinds == {"invalid-json": len(expected) // 2, "invalid-data": len(expected) // 2}
