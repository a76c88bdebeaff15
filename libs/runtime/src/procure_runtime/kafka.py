"""The Kafka side of a service: the FastStream broker (idempotent producer, acks=all),
security from the spec's `KAFKA_*` env, and topic creation."""

import asyncio
import contextlib
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.metadata import MetadataRequest
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from procure_runtime.errors import describe
from procure_runtime.logging import faststream_logger, get_logger
from procure_runtime.settings import ServiceSettings

log = get_logger("procure.kafka")

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def security_from(settings: ServiceSettings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol.upper()
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if protocol.startswith("SASL"):
        mechanism = (settings.kafka_sasl_mechanism or "PLAIN").upper()
        password = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        )
        return _SASL[mechanism](
            settings.kafka_sasl_username or "",
            password,
            ssl_context=context,
            use_ssl=context is not None,
        )
    return BaseSecurity(ssl_context=context, use_ssl=True)


def client_kwargs(settings: ServiceSettings) -> dict[str, Any]:
    """aiokafka keyword arguments for clients FastStream does not make (admin, tools)."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **parse_security(security_from(settings)),
    }


def bootstrap_hosts(servers: str) -> list[tuple[str, int]]:
    """`host:port,[::1]:port` as (host, port) pairs (9092 when no port is given)."""
    hosts = []
    for server in filter(None, (part.strip() for part in servers.split(","))):
        if server.startswith("["):  # an IPv6 address
            host, _, rest = server[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = server.rpartition(":") if ":" in server else (server, "", "")
        hosts.append((host, int(port or 9092)))
    return hosts


async def why_no_bootstrap(settings: ServiceSettings, timeout: float = 10.0) -> str | None:
    """Why no bootstrap server took a client, or None if one does now. aiokafka's
    "Unable to bootstrap" names the servers but not the cause (a refused login, a
    certificate not trusted, nothing listening), which it only logs; one connection to
    each server, made as the clients make theirs, tells."""
    security = parse_security(security_from(settings))
    reasons = []
    for host, port in bootstrap_hosts(settings.kafka_bootstrap_servers):
        try:
            async with asyncio.timeout(timeout):
                conn = await create_conn(
                    host, port, request_timeout_ms=int(timeout * 1000), **security
                )
        except Exception as exc:
            reasons.append(f"{host}:{port}: {describe(exc, 200)}")
        else:
            conn.close()
            return None
    return "; ".join(reasons)


def is_bootstrap_failure(exc: BaseException) -> bool:
    return isinstance(exc, KafkaConnectionError) and "Unable to bootstrap" in str(exc)


# What a gathering fetch waits for besides the time: about ten per-charge events (~1.5 KB
# each), or one bulk event (a PO, receipt or delivery of many lines). A thin flow still
# waits the whole `PROCURE_FETCH_WAIT_MS`; a bulk event, a burst or a backlog is answered
# at once, so the small events fetched with it do not wait out the rest of the window.
# At 1 MB (a size no batch reached) every burst the people make waited the whole window
# at every hop; 4 KB made batches so small that their fixed cost took the cores
# (bench/levers.md, lever 37).
GATHER_BYTES = 16 * 1024


@dataclass(frozen=True)
class Gathering:
    """How a service's fetches gather under a steady flow: up to `wait_ms`, or until
    `min_bytes` are there (unless `PROCURE_FETCH_WAIT_MS` or `PROCURE_FETCH_MIN_BYTES`
    say otherwise)."""

    wait_ms: int = 50
    min_bytes: int = GATHER_BYTES


# A service on no routing path (the notifier: mail already waits ~0.1-0.5 s for a
# sender) gathers five times as long, and for no byte count a steady flow reaches: at
# 125 charges/s a fifth less of its CPU and won->queue p99 20-56 ms lower, as the busy
# cores go to the routing services (bench/levers.md, lever 51).
OFF_THE_ROUTING_PATH = Gathering(wait_ms=250, min_bytes=256 * 1024)


def fetch_options(settings: ServiceSettings, gathering: Gathering = Gathering()) -> tuple[int, int]:
    """`(fetch_min_bytes, fetch_max_wait_ms)` of a service that gathers as `gathering`
    says, overridden by `PROCURE_FETCH_MIN_BYTES` and `PROCURE_FETCH_WAIT_MS`. Under a
    steady flow a fetch answered per record makes a batch, a transaction and an offset
    commit per record in every service; on a busy machine that work is what delays the
    next hop."""
    wait_ms = gathering.wait_ms if settings.fetch_wait_ms is None else settings.fetch_wait_ms
    if wait_ms == 0:
        return 1, 500  # Kafka's defaults: answered as soon as any record is there
    min_bytes = settings.fetch_min_bytes or gathering.min_bytes
    return min_bytes, wait_ms


# aiokafka refreshes metadata only this often unless an error forces it. A consumer that
# joins its group while a subscribed topic is not yet in the metadata of the broker it
# asked (a new topic propagating through a cluster) gets no partitions of that topic, and
# would only notice them at the next refresh: Kafka's default 5 minutes of a service that
# silently consumes nothing. 10 s bounds that at the cost of one small request.
METADATA_MAX_AGE_MS = 10_000


# Every producer of a service: nothing acknowledged is lost when a broker dies, and
# retries neither reorder nor double records.
PRODUCING: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 1}


def producer_options(settings: ServiceSettings, role: str) -> dict[str, Any]:
    """aiokafka producer keyword arguments, as the broker's producer has them."""
    return {
        **client_kwargs(settings),
        **PRODUCING,
        "client_id": f"procure-{settings.service}-{role}",
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
    }


async def close_producer(producer: AIOKafkaProducer, timeout: float) -> None:
    """Stop `producer` within `timeout` (all its steps together), waiting for what it
    still holds to be sent. aiokafka never expires an idempotent producer's batch: with
    the broker away, its `stop` waited for them for ever, and a service's stop with it
    (its pod killed at the end of its grace period, nothing after that step closed).
    What was not sent is still in the outbox, or was never acknowledged (a dead
    letter's offset is not committed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def left() -> float:
        return max(deadline - loop.time(), 0.05)

    try:
        async with asyncio.timeout(left()):
            await producer.stop()
        return
    except TimeoutError:
        log.warning("producer closed with records unsent: the broker did not take them")
    except Exception as exc:
        log.warning("producer not closed cleanly", error=describe(exc, 200))
    # Its sender retries for ever, and `stop` (marked done) does not come back to it.
    # The batches it held are failed, so nothing waits for them any more (aiokafka
    # internals: the producer has no public way to give up).
    with contextlib.suppress(Exception):
        producer._message_accumulator.fail_all(KafkaError("producer closed at stop"))
    sender = getattr(producer, "_sender", None)
    with contextlib.suppress(Exception):
        if sender is not None:
            async with asyncio.timeout(left()):
                await sender.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(left()):
            await producer.client.close()


#: How long a stop waits for the batch in hand (FastStream's graceful timeout).
GRACEFUL_TIMEOUT_S = 10.0


def make_broker(settings: ServiceSettings) -> KafkaBroker:
    return KafkaBroker(
        # FastStream takes a str as ONE address; KAFKA_BOOTSTRAP_SERVERS may list several.
        [server.strip() for server in settings.kafka_bootstrap_servers.split(",")],
        client_id=f"procure-{settings.service}",
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
        # The broker only consumes: a service publishes through its relay's own producer
        # (the outbox and dead letters, `OutboxRelay`). FastStream's producer and admin
        # client sat idle, and a Kafka client that names no topic refreshes the metadata
        # of every topic in the cluster (bench/levers.md, lever 49).
        consumer_only=True,
        security=security_from(settings),
        graceful_timeout=GRACEFUL_TIMEOUT_S,
        logger=faststream_logger(),  # JSON like every other line of the service
        log_level=logging.DEBUG,  # one INFO line per message is too loud; ours are structured
        description=f"The {settings.service} service of the procurement platform",
    )


async def ensure_topics(settings: ServiceSettings, topics: dict[str, bool]) -> list[str]:
    """Create `topics` (name -> compacted) when missing. Existing ones are left alone; those
    that should be compacted and are not are logged and returned: the broker deletes
    their old records, so a consumer that starts later misses entries it needs."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        deleting = await _not_compacted(
            admin, [t for t, c in topics.items() if c and t in existing]
        )
        for name in deleting:
            log.warning(
                "topic should be compacted and is not: its old records will be deleted",
                topic=name,
                fix=f"kafka-configs.sh --alter --entity-type topics --entity-name {name} "
                "--add-config cleanup.policy=compact",
            )
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs={"cleanup.policy": "compact"} if compacted else {},
            )
            for name, compacted in topics.items()
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another instance created them first
    finally:
        await admin.close()
    await await_leaders(settings, list(topics))
    return deleting


async def _not_compacted(admin: AIOKafkaAdminClient, names: list[str]) -> list[str]:
    """Those of `names` whose `cleanup.policy` is not `compact`."""
    if not names:
        return []
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None}) for n in names]
    )
    policies = {
        name: {entry[0]: entry[1] for entry in entries}.get("cleanup.policy")
        for response in responses
        for _code, _message, _type, name, entries in response.resources
    }
    return [n for n in names if policies.get(n) != "compact"]


def leaderless(described: list[dict[str, Any]], topics: list[str]) -> set[str]:
    """Those of `topics` a metadata answer does not show with every partition led."""
    led = {
        t["topic"]
        for t in described
        if t["error_code"] == 0
        and t["partitions"]
        and all(p["leader"] >= 0 for p in t["partitions"])
    }
    return set(topics) - led


async def await_leaders(
    settings: ServiceSettings, topics: list[str], timeout: float = 30.0
) -> bool:
    """Wait until every broker's metadata shows every partition of `topics` with a leader.
    A topic just created (here or by another service) reaches the brokers of a cluster one
    by one; a consumer that joins while the broker it asks lags gets none of the topic's
    partitions until its next metadata refresh. False (and a warning) when `timeout`
    passes; the consumer's periodic refresh (METADATA_MAX_AGE_MS) then picks them up."""
    client = AIOKafkaClient(**client_kwargs(settings))
    await client.bootstrap()
    try:
        deadline = time.monotonic() + timeout
        while True:
            waiting: set[str] = set()
            for broker in client.cluster.brokers():
                answer = await client.send(broker.nodeId, MetadataRequest(topics))
                waiting |= leaderless(answer.to_object()["topics"], topics)
            if not waiting:
                return True
            if time.monotonic() >= deadline:
                log.warning("topics without leaders yet", topics=sorted(waiting))
                return False
            await asyncio.sleep(0.2)
    finally:
        await client.close()
