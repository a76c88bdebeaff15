"""Kafka over SASL_SSL (SCRAM-SHA-512, a CA made by the test): a service configured only
through the spec's `KAFKA_*` variables works end to end; a wrong password, an unknown
user and a client that does not trust the broker's CA are all refused."""

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context

from procure_contracts import CloudEvent, new_event
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.kafka import LocalKafka, SaslSslListener
from procure_devstack.ports import free_ports
from procure_devstack.testing import eventually, running, token, unique
from procure_devstack.tls import CertificateAuthority
from procure_quotes.app import build
from procure_runtime.settings import load_settings

pytestmark = pytest.mark.kafka
USER, PASSWORD = "alice", "alice-s3cret-for-scram"
WON = spec_for_topic("opportunity.won")


@dataclass
class Secured:
    broker: LocalKafka
    ca_file: Path

    @property
    def bootstrap(self) -> str:
        return self.broker.sasl_ssl_bootstrap

    def failed_logins(self) -> int:
        return self.broker.log_tail(100_000).count(
            "invalid credentials with SASL mechanism SCRAM-SHA-512"
        )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A broker of its own whose only client listener for the tests is SASL_SSL."""
    root = tmp_path_factory.mktemp("sasl-ssl")
    tls = CertificateAuthority().write_server_files(root / "tls", "127.0.0.1", "localhost")
    port, controller, secured = free_ports(3)
    listener = SaslSslListener(port=secured, keystore=tls.keystore_file, users={USER: PASSWORD})
    broker = LocalKafka(root / "kafka", port=port, controller_port=controller, sasl_ssl=listener)
    broker.start()
    try:
        broker.wait_ready(timeout=120)
        yield Secured(broker, tls.ca_file)
    finally:
        broker.stop()


def scram(secured: Secured, *, user: str = USER, password: str = PASSWORD, **kw: Any) -> dict:
    return {
        "bootstrap_servers": secured.bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_context": create_ssl_context(cafile=str(kw.pop("cafile", secured.ca_file))),
        **kw,
    }


async def refused(**client: Any) -> bool:
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **client)
    try:
        await producer.start()
    except KafkaConnectionError:
        return True
    finally:
        await producer.stop()
    return False


async def read_events(secured: Secured, topic: str, count: int) -> list[CloudEvent]:
    """Everything on `topic` (as another SCRAM client), once `count` events have landed
    and a second more has brought nothing else."""
    consumer = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", group_id=unique("reader-"), **scram(secured)
    )
    await consumer.start()
    got: list[CloudEvent] = []
    try:
        deadline, settled = time.monotonic() + 60, None
        while time.monotonic() < deadline and (settled is None or time.monotonic() < settled):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                got += [CloudEvent.from_bytes(r.value) for r in records]
            if settled is None and len(got) >= count:
                settled = time.monotonic() + 1.0
        return got
    finally:
        await consumer.stop()


async def test_a_service_configured_by_the_kafka_env_flows_over_sasl_ssl(
    secured: Secured, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prefix = unique("sec") + "."
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": secured.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
        "KAFKA_SSL_CAFILE": str(secured.ca_file),
        "PROCURE_TOPIC_PREFIX": prefix,
        "PROCURE_TOPIC_PARTITIONS": "1",
        "PROCURE_DATA_DIR": str(tmp_path),
        "QUOTES_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'quotes.db'}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings("quotes")
    assert settings.kafka_bootstrap_servers == secured.bootstrap
    assert settings.kafka_sasl_password.get_secret_value() == PASSWORD

    service_item = f.charge(f.product(procurement=False), 2)
    bought_item = f.charge(f.product(unit_cost="40.00"), 3)
    won = f.opportunity_won(service_item, bought_item)
    key = WON.key_of(won)
    event = new_event(WON.type, won, source="/tests/crm", subject=key, correlationid=key)
    app, runtime = build(settings)
    async with running(app, runtime) as http:
        producer = AIOKafkaProducer(acks="all", **scram(secured))
        await producer.start()
        try:
            await producer.send_and_wait(
                f"{prefix}opportunity.won", event.to_bytes(), key=key.encode()
            )
        finally:
            await producer.stop()

        ready = await read_events(secured, f"{prefix}charge.ready", 1)
        need = await read_events(secured, f"{prefix}charge.need_order", 1)
        assert [(e.data["charge_id"], e.data["quantity"]) for e in ready] == [(service_item.id, 2)]
        assert [(e.data["charge_id"], e.data["quantity"]) for e in need] == [(bought_item.id, 3)]
        assert {e.causationid for e in ready + need} == {event.id}

        headers = {"Authorization": f"Bearer {token(settings, 'sales')}"}
        so = (await http.get(f"/sales-orders/{won.sales_order.id}", headers=headers)).json()
        assert so["status"] == "New"
        ready_check = (await http.get("/readyz")).json()
        assert ready_check["checks"] == {"database": "ok", "kafka": "ok"}


async def test_a_service_with_a_wrong_kafka_password_is_refused_and_not_ready(
    secured: Secured, tmp_path: Path
) -> None:
    settings = load_settings(
        "quotes",
        kafka_bootstrap_servers=secured.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password="not-" + PASSWORD,
        kafka_ssl_cafile=str(secured.ca_file),
        topic_prefix=unique("sec") + ".",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'quotes.db'}",
        data_dir=tmp_path,
    )
    failed_before = secured.failed_logins()
    app, runtime = build(settings)
    await runtime.start()
    try:
        await eventually(lambda: secured.failed_logins() > failed_before, timeout=30)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:

            async def says_why() -> bool:
                response = await http.get("/readyz")
                assert response.status_code == 503
                checks = response.json()["checks"]
                assert checks["database"] == "ok"
                # Not just "connecting": why the last attempt failed, password left out.
                assert checks["kafka"].startswith("connecting (last attempt: "), checks
                # The cause, which aiokafka's "Unable to bootstrap" leaves out.
                assert "SaslAuthenticationFailed" in checks["kafka"], checks
                assert "invalid credentials" in checks["kafka"], checks
                assert settings.kafka_sasl_password.get_secret_value() not in checks["kafka"]
                return True

            await eventually(says_why, timeout=60)
        assert not runtime.broker_ready
    finally:
        await runtime.stop()


@pytest.mark.parametrize(
    ("user", "password"),
    [(USER, "not-" + PASSWORD), ("mallory", PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
async def test_a_client_with_wrong_credentials_is_refused(
    secured: Secured, user: str, password: str
) -> None:
    failed_before = secured.failed_logins()
    assert await refused(**scram(secured, user=user, password=password))
    assert secured.failed_logins() > failed_before  # refused by SCRAM, not unreachable
    assert not await refused(**scram(secured))  # the right credentials still get in


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    secured: Secured, tmp_path: Path
) -> None:
    impostor = tmp_path / "other-ca.pem"
    impostor.write_bytes(CertificateAuthority("some other CA").cert_pem)
    failed_before = secured.failed_logins()

    assert await refused(**scram(secured, cafile=impostor))
    # The system trust store does not know the test CA either.
    system = scram(secured)
    system["ssl_context"] = create_ssl_context()
    assert await refused(**system)
    # Plain TCP (no TLS) on the secured port gets nowhere.
    assert await refused(bootstrap_servers=secured.bootstrap)

    await asyncio.sleep(0.2)
    assert secured.failed_logins() == failed_before  # the password was never sent
    assert not await refused(**scram(secured))
