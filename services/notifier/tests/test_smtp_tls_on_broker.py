"""`PROCURE_SMTP_TLS`: STARTTLS against a server with a test certificate, and `tls` that
refuses a server whose certificate does not verify (the mail waits, nothing is sent)."""

import asyncio

import pytest

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Person
from procure_devstack import factories as f
from procure_devstack.smtp import SmtpSink
from procure_devstack.testing import KafkaProbe, eventually, running, token
from procure_notifier.app import build

pytestmark = pytest.mark.kafka
READY = spec_for_topic("salesorder.ready_to_fulfill")
WON = spec_for_topic("opportunity.won")


async def _ready_to_fulfill(kafka: KafkaProbe, so_id: str, owner: Person) -> None:
    """A sales order won, then ready to fulfill: one mail, to its owner."""
    await kafka.publish(WON, f.opportunity_won(sales_order_id=so_id, so_owner=owner))
    await kafka.publish(READY, ev.SalesOrderReadyToFulfillV1(sales_order_id=so_id, owner=owner))


async def _rows(http, settings):
    auth = {"Authorization": f"Bearer {token(settings)}"}
    return (await http.get("/notifications", headers=auth)).json()["items"]


async def test_starttls_with_a_trusted_certificate(
    service_settings, quick_smtp, server_tls, certificate
) -> None:
    settings = service_settings("notifier")
    owner = f.person("Sam Sales")
    with SmtpSink(tls_context=server_tls, require_starttls=True) as sink:
        smtp = quick_smtp(sink.port, tls="starttls", cafile=str(certificate[0]))
        app, runtime = build(settings, smtp)
        async with (
            running(app, runtime) as http,
            KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
        ):
            await _ready_to_fulfill(kafka, "so-1", owner)
            await eventually(lambda: sink.messages, timeout=30)
            [msg] = sink.messages
            assert msg.tls and msg.rcpt_tos == [owner.email.lower()]
            assert msg.subject == "Ready to Fulfill: sales order so-1"
            [row] = await _rows(http, settings)
            assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_tls_refuses_a_server_whose_certificate_does_not_verify(
    service_settings, quick_smtp, server_tls
) -> None:
    settings = service_settings("notifier")
    with SmtpSink(tls_context=server_tls, implicit_tls=True) as sink:
        smtp = quick_smtp(sink.port, tls="tls")  # the system CAs do not know the test cert
        app, runtime = build(settings, smtp)
        async with (
            running(app, runtime) as http,
            KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
        ):
            owner = f.person("Sam Sales")
            await _ready_to_fulfill(kafka, "so-2", owner)

            async def refused():
                rows = await _rows(http, settings)
                return rows and rows[0]["attempts"] >= 2 and rows[0]["last_error"]

            await eventually(refused, timeout=30)
            await asyncio.sleep(0.5)
            [row] = await _rows(http, settings)
            assert row["status"] == "pending" and row["sent_at"] is None
            assert "certificate" in row["last_error"].lower()
            assert sink.messages == []
