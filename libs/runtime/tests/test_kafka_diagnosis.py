"""Why a service cannot reach Kafka, in words an operator can act on: aiokafka's
"Unable to bootstrap" names the servers, not the cause."""

import asyncio

import pytest

from procure_devstack.ports import free_port
from procure_runtime.errors import describe
from procure_runtime.kafka import bootstrap_hosts, why_no_bootstrap
from procure_runtime.settings import load_settings


def test_bootstrap_servers_are_read_as_hosts_and_ports() -> None:
    assert bootstrap_hosts("kafka-1:9093, kafka-2 ,[::1]:19092,10.0.0.5:9092,") == [
        ("kafka-1", 9093),
        ("kafka-2", 9092),
        ("::1", 19092),
        ("10.0.0.5", 9092),
    ]


def test_an_error_that_names_its_type_is_not_named_twice() -> None:
    class SaslAuthenticationFailed(Exception):
        pass

    aiokafka_style = SaslAuthenticationFailed("[Error 58] SaslAuthenticationFailed: bad login")
    assert describe(aiokafka_style, 200) == "[Error 58] SaslAuthenticationFailed: bad login"
    assert describe(ValueError("no"), 200) == "ValueError: no"


async def test_a_server_with_nothing_listening_is_named_with_the_cause(tmp_path) -> None:
    port = free_port()
    settings = load_settings("probe", kafka_bootstrap_servers=f"127.0.0.1:{port}")
    why = await why_no_bootstrap(settings, timeout=5)
    assert why is not None and why.startswith(f"127.0.0.1:{port}: "), why
    assert "Connect call failed" in why or "refused" in why.lower(), why


@pytest.mark.kafka
async def test_a_reachable_cluster_has_no_reason_to_give(kafka_bootstrap) -> None:
    settings = load_settings("probe", kafka_bootstrap_servers=kafka_bootstrap)
    assert await why_no_bootstrap(settings) is None


async def test_the_broker_is_retried_whatever_it_answers(tmp_path, monkeypatch) -> None:
    """A node listed in the metadata but not ready (a rolling restart) is no reason to give
    up connecting: the task that connects ended on it, silently, and the service never
    consumed while `/healthz` said ok."""
    from aiokafka.errors import NodeNotReadyError

    from probe_service import build

    monkeypatch.setattr("procure_runtime.service.asyncio.sleep", _no_wait)
    settings = load_settings(
        "probe",
        kafka_bootstrap_servers="127.0.0.1:9",
        database_url=f"sqlite+aiosqlite:///{tmp_path}/p.db",
    )
    _, runtime = build(settings)
    answers = [NodeNotReadyError("node 1 not ready"), RuntimeError("refused"), None]

    async def step() -> None:
        if error := answers.pop(0):
            raise error

    await runtime._retry("kafka", step)
    assert answers == []
    assert "refused" in (runtime.kafka_error or "")


async def _no_wait(_: float) -> None:
    return None


@pytest.mark.kafka
async def test_a_consumer_that_failed_to_start_is_closed_before_the_next_attempt(
    service_settings, monkeypatch
) -> None:
    """A subscriber's consumer that connected, then failed to start (a topic it may not
    read), was kept open: each retry left one more, with its connections and metadata
    task, until the process ended."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import TopicAuthorizationFailedError

    from probe_service import build

    started, stopped = [], []
    start, stop = AIOKafkaConsumer.start, AIOKafkaConsumer.stop

    async def refused_once(self) -> None:
        await start(self)  # bootstrapped: connections and a metadata task
        started.append(self)
        if len(started) == 1:
            raise TopicAuthorizationFailedError("charge.created")

    async def counted_stop(self) -> None:
        stopped.append(self)
        await stop(self)

    monkeypatch.setattr(AIOKafkaConsumer, "start", refused_once)
    monkeypatch.setattr(AIOKafkaConsumer, "stop", counted_stop)
    monkeypatch.setattr("procure_runtime.service.asyncio.sleep", _no_wait)
    _, runtime = build(service_settings("probe"))
    await runtime.start()
    try:
        await asyncio.wait_for(runtime._connect_task, 60)  # type: ignore[arg-type]
        assert len(started) == 2 and stopped == [started[0]]
        assert runtime.broker_ready
    finally:
        await runtime.stop()
    assert started[1] in stopped
