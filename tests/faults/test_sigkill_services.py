"""Fault 1: each service in turn is SIGKILLed (no shutdown of any kind) while the events
it consumes are in flight, then started again, as N charges go through approval, PO,
receipt and delivery on the six-process stack. The end state is exact (flow.check)."""

import asyncio

import pytest

from procure_devstack.stackclient import StackClient

from . import flow

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.e2e,
    pytest.mark.faults(checks=("lost", "duplicates", "emails", "dead_letters")),
]


async def test_sigkill_each_service_mid_stream_loses_and_doubles_nothing(
    client: StackClient,
) -> None:
    def kill(*names: str) -> flow.Hook:
        async def hook() -> None:
            for name in names:
                await asyncio.to_thread(client.stack.kill_and_restart, name)

        return hook

    done = await flow.run(
        client,
        flow.Hooks(
            charged=kill("purchasing"),
            approved_half=kill("quotes", "notifier"),
            submitted=kill("receiving", "quotes"),
            received_half=kill("inventory", "shipping"),
            delivered=kill("notifier", "quotes"),
        ),
    )
    await flow.check(client, done)
