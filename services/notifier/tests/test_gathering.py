"""The notifier is on no routing path: its fetches gather longer than the routing
services' (procure_runtime.kafka.OFF_THE_ROUTING_PATH), and `PROCURE_FETCH_WAIT_MS` and
`PROCURE_FETCH_MIN_BYTES` still set the wait and the bytes."""

import pytest

from procure_devstack.testing import eventually, running
from procure_notifier.app import build
from procure_runtime.kafka import GATHER_BYTES, OFF_THE_ROUTING_PATH

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(
    ("wait_ms", "min_bytes", "expected"),
    [
        (None, None, (OFF_THE_ROUTING_PATH.min_bytes, OFF_THE_ROUTING_PATH.wait_ms)),
        (100, None, (OFF_THE_ROUTING_PATH.min_bytes, 100)),
        (None, 4096, (4096, OFF_THE_ROUTING_PATH.wait_ms)),
        (0, None, (1, 500)),
    ],
)
async def test_the_notifier_gathers_longer_than_a_routing_service(
    service_settings, quick_smtp, wait_ms, min_bytes, expected
) -> None:
    assert OFF_THE_ROUTING_PATH.wait_ms > 50 and OFF_THE_ROUTING_PATH.min_bytes > GATHER_BYTES
    settings = service_settings("notifier", fetch_wait_ms=wait_ms, fetch_min_bytes=min_bytes)
    app, runtime = build(settings, quick_smtp(9))  # no mail is sent
    async with running(app, runtime):
        [subscriber] = runtime.broker.subscribers
        consumer = await eventually(lambda: getattr(subscriber, "consumer", None))
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == expected
