"""`KafkaProbe`, the tests' raw producer, on the real broker."""

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from procure_devstack.testing import KafkaProbe
from procure_runtime.kafka import client_kwargs

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize("db_backend", ["sqlite"])  # no database: one run is enough
async def test_it_sends_to_a_partition_added_after_it_saw_the_topic(service_settings) -> None:
    """aiokafka keeps a topic's partitions until its next metadata refresh (minutes), and
    refuses a partition it does not know: a test that adds partitions and sends to the
    new one at once failed now and then ("Unrecognized partition")."""
    settings = service_settings("probe")
    name = settings.topic("widgets")
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:
            await kafka.send_raw("widgets", b"first")  # its metadata: one partition
            await admin.create_partitions({name: NewPartitions(2)})
            await kafka.send_raw("widgets", b"second", partition=1)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(**client_kwargs(settings))
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(name, 0), TopicPartition(name, 1)])
    finally:
        await consumer.stop()
    assert list(ends.values()) == [1, 1]
