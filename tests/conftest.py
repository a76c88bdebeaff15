"""The real stack shared by the end-to-end and fault suites: the six services as separate
processes (`procure_devstack.stack`), a topic probe, and a client per test that checks,
when the test is done, that nothing was dead-lettered unless the test said so."""

import sys
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from procure_devstack.stack import Stack, launch_stack
from procure_devstack.stackclient import StackClient, dead_letters
from procure_devstack.testing import KafkaProbe


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the whole stack over HTTP and Kafka")
    config.addinivalue_line(
        "markers",
        "dead_letters: the test puts messages in dead-letter topics and checks them itself",
    )


@pytest.fixture(scope="session")
def stack(
    kafka_bootstrap: str,
    postgres_url: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with launch_stack(tmp_path_factory.mktemp("stack"), kafka_bootstrap, postgres_url) as s:
        try:
            yield s
        except BaseException:
            print(s.logs(), file=sys.stderr)
            raise


@pytest.fixture(scope="session")
async def kafka(stack: Stack) -> AsyncIterator[KafkaProbe]:
    async with KafkaProbe(stack.bootstrap, stack.prefix) as probe:
        yield probe


@pytest.fixture
async def client(
    stack: Stack, kafka: KafkaProbe, request: pytest.FixtureRequest
) -> AsyncIterator[StackClient]:
    before = {(r.topic, r.partition, r.offset) for r in await dead_letters(kafka)}
    # Patient waits: after a SIGKILL a mail waits out its lease (PROCURE_SMTP_TIMEOUT_S).
    async with StackClient(stack, kafka, timeout=90.0) as c:
        yield c
        if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
            print(stack.logs(), file=sys.stderr)
        # Nothing may have been dead-lettered by any service, whatever the scenario,
        # unless the test put it there (and then it checks them itself).
        if request.node.get_closest_marker("dead_letters") is None:
            letters = [
                (r.topic, r.headers.get("x-error-message"))
                for r in await dead_letters(kafka)
                if (r.topic, r.partition, r.offset) not in before
            ]
            assert letters == [], f"dead letters: {letters}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
