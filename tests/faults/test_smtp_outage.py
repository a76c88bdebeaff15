"""Fault 4: the SMTP server is down from the first approvals until everything was
delivered, while N charges go through approval, PO, receipt and delivery. Every email
due in that time is retried with backoff and sent once it is back: exactly one per
triggering event and recipient (flow.check), none lost."""

import asyncio

import pytest

from procure_devstack.stackclient import StackClient

from . import flow

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.faults(checks=("lost", "duplicates", "emails", "dead_letters")),
]


async def test_smtp_down_for_a_while_sends_every_email_once(client: StackClient) -> None:
    sink = client.stack.sink
    sent_before = 0

    async def down() -> None:
        nonlocal sent_before
        sink.stop()
        sent_before = len(sink.messages)

    async def up() -> None:
        await asyncio.sleep(2)  # retries keep failing for a while after the last trigger
        assert len(sink.messages) == sent_before  # nothing got through while it was down
        sink.start()  # the same port

    done = await flow.run(client, flow.Hooks(charged=down, delivered=up))
    await flow.check(client, done)
