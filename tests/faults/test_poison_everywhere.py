"""Fault: poison on every input topic of every service is dead-lettered byte for byte
with its origin (the runtime tests show the next valid event still applies)."""

import importlib

import pytest

from procure_devstack.testing import KafkaProbe, running

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
    assert sorted(d.value for d in dead) == sorted(poison.values())
    for d in dead:
        original = d.headers["x-original-topic"].removeprefix(settings.topic_prefix)
        assert poison[original] == d.value
        assert d.headers["x-error-type"] == "invalid-json"
    assert len(dead) == len(topics)
