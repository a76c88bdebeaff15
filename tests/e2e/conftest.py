"""The real stack for the end-to-end suite, started the way `procure up` starts it: the six
services as separate processes on free ports, each with its own PostgreSQL database,
the session's Kafka broker under a topic prefix of their own, and an SMTP sink."""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from procure_devstack.cli import SERVICES, ManagedProcess, _stop_processes
from procure_devstack.smtp import SmtpSink
from procure_devstack.testing import KafkaProbe, free_port, unique

from .client import Stack, StackClient

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: drives the whole stack over HTTP and Kafka")


def _wait_ready(procs: dict[str, ManagedProcess], urls: dict[str, str]) -> None:
    pending = dict(procs)
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as http:
        while pending:
            for name, proc in list(pending.items()):
                if not proc.alive():
                    raise RuntimeError(f"{name} exited before becoming ready:\n{proc.log_tail()}")
                try:
                    if http.get(f"{urls[name]}/readyz").status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f}s: {', '.join(pending)}")
            time.sleep(0.3)


def _log_tails(procs: dict[str, ManagedProcess], lines: int = 30) -> str:
    return "\n".join(f"--- {p.name} ({p.log_file}):\n{p.log_tail(lines)}" for p in procs.values())


@pytest.fixture(scope="session")
def stack(
    kafka_bootstrap: str,
    postgres_url: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("stack")
    sink = SmtpSink(maildir=root / "mail")
    sink.start()
    prefix = f"{unique('e2e')}."
    secret = f"e2e-secret-{unique()}-{unique()}"  # long enough for PyJWT's HS256 check
    shared = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROCURE_TOPIC_PREFIX": prefix,
        "PROCURE_TOPIC_PARTITIONS": "1",
        "PROCURE_DATA_DIR": str(root),
        "PROCURE_SMTP_HOST": "127.0.0.1",
        "PROCURE_SMTP_PORT": str(sink.port),
        "PROCURE_SMTP_TLS": "none",
        "PROCURE_SMTP_FROM": "procure@e2e.example",
        "PROCURE_SMTP_RETRY_BACKOFF_S": "0.5",
        "PROCURE_JWT_SECRET": secret,
        "PROCURE_RETRY_BACKOFF_S": "0.1",
        "PYTHONUNBUFFERED": "1",
    }
    ports = {name: free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    procs = {
        name: ManagedProcess(
            name=name,
            module=f"procure_{name}",
            args=[],
            pid_file=root / "run" / f"{name}.pid",
            log_file=root / "logs" / f"{name}.log",
        )
        for name in SERVICES
    }
    envs = {
        name: {
            **os.environ,
            **shared,
            f"{name.upper()}_PORT": str(ports[name]),
            f"{name.upper()}_DATABASE_URL": postgres_url(name),
        }
        for name in SERVICES
    }

    def kill_and_restart(name: str) -> None:
        proc = procs[name]
        proc.signal(signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while proc.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.forget()
        proc.start(envs[name])
        _wait_ready({name: proc}, urls)

    try:
        for name, proc in procs.items():
            proc.start(envs[name])
        _wait_ready(procs, urls)
        yield Stack(
            urls=urls,
            secret=secret,
            bootstrap=kafka_bootstrap,
            prefix=prefix,
            sink=sink,
            logs=lambda: _log_tails(procs),
            kill_and_restart=kill_and_restart,
        )
    except BaseException:
        print(_log_tails(procs), file=sys.stderr)
        raise
    finally:
        _stop_processes(list(procs.values()), STOP_TIMEOUT_S)
        sink.stop()


@pytest.fixture(scope="session")
async def kafka(stack: Stack) -> AsyncIterator[KafkaProbe]:
    async with KafkaProbe(stack.bootstrap, stack.prefix) as probe:
        yield probe


@pytest.fixture
async def client(
    stack: Stack, kafka: KafkaProbe, request: pytest.FixtureRequest
) -> AsyncIterator[StackClient]:
    async with StackClient(stack, kafka) as c:
        yield c
        if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
            print(stack.logs(), file=sys.stderr)
        # Nothing may have been dead-lettered by any service, whatever the scenario.
        dead = await asyncio.gather(
            *(
                kafka.read(f"dlq.{name}", until=lambda got: True, timeout=10, settle=1.0)
                for name in SERVICES
            )
        )
        letters = [(r.topic, r.headers.get("x-error-message")) for records in dead for r in records]
        assert letters == [], f"dead letters: {letters}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
