"""pytest fixtures for the real stack: a Kafka broker per session (KAFKA_BOOTSTRAP_SERVERS,
else testcontainers when a Docker engine answers, else the local launcher), PostgreSQL
(PROCURE_TEST_DATABASE_URL or the machine's cluster), a unique topic prefix, and
service settings pointing at all of that."""

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from procure_devstack.hangs import Watchdog, add_to_report
from procure_devstack.kafka import LocalKafka
from procure_devstack.ports import free_ports
from procure_devstack.testing import unique
from procure_runtime.settings import ServiceSettings, load_settings


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
        return
    if _docker_engine_answers():
        try:
            from testcontainers.kafka import KafkaContainer  # type: ignore[import-not-found]
        except ImportError:
            pass
        else:
            with KafkaContainer().with_kraft() as container:
                yield container.get_bootstrap_server()
            return
    port, controller = free_ports(2)
    broker = LocalKafka(tmp_path_factory.mktemp("kafka"), port=port, controller_port=controller)
    broker.start()
    broker.wait_ready(timeout=120)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def topic_prefix() -> str:
    """Every test session gets its own topics and consumer groups on a shared broker."""
    return unique("t") + "."


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[Callable[[str], str]]:
    """Factory: a fresh PostgreSQL database per call (name -> SQLAlchemy URL)."""
    base = os.environ.get("PROCURE_TEST_DATABASE_URL")
    created: list[str] = []
    from procure_devstack import postgres

    if not base:
        postgres.ensure_cluster_running()
        postgres.ensure_role()

    def make(name: str) -> str:
        db = f"test_{name}_{unique()}"
        if base:
            return _with_database(base, db, create=True)
        created.append(db)
        return postgres.ensure_database(db)

    yield make
    if not base:
        for db in created:
            try:
                postgres.drop_database(db)
            except Exception:  # leave it; the next run uses new names anyway
                pass


def _with_database(base: str, db: str, *, create: bool) -> str:
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    from procure_devstack import postgres

    async def create_db() -> None:
        conn = await asyncpg.connect(postgres.asyncpg_dsn(base))
        try:
            await conn.execute(f'CREATE DATABASE "{db}"')
        finally:
            await conn.close()

    if create:
        asyncio.run(create_db())
    return postgres.with_database(base, db)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(
    db_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], str]:
    """Factory: a fresh database of this test's `db_backend` per call (name -> SQLAlchemy
    URL): a PostgreSQL database of its own, or an SQLite file under the test's tmp_path."""

    def make(name: str) -> str:
        if db_backend == "postgresql":
            return str(request.getfixturevalue("postgres_url")(name))
        return f"sqlite+aiosqlite:///{tmp_path / f'{name}-{unique()}.db'}"

    return make


@pytest.fixture
def service_settings(
    database_url: Callable[[str], str],
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> Callable[..., ServiceSettings]:
    """Factory: settings for a service on this test's database and the session broker.
    Each call gets its own topic prefix unless `prefix` is given."""

    def make(service: str, *, prefix: str | None = None, **overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {
            "database_url": database_url(service),
            "kafka_bootstrap_servers": kafka_bootstrap,
            "topic_prefix": prefix if prefix is not None else f"{topic_prefix}{unique()}.",
            "data_dir": tmp_path,
            "retry_backoff_s": 0.05,
            "topic_partitions": 1,
        }
        values.update(overrides)
        return load_settings(service, **values)

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # In CI a skipped test is a failure: nothing may pass by not running. Made so here,
    # where the report is made: by the time it is logged, pytest has counted the skip.
    report = yield
    add_to_report(item, report)
    if os.environ.get("CI") and report.skipped and report.when in ("setup", "call"):
        where = report.longrepr  # a skip's is (path, line, reason)
        if isinstance(where, tuple) and len(where) == 3:
            where = f"{where[2]} ({where[0]}:{where[1]})"
        report.outcome = "failed"  # in setup (a fixture skipped, a mark): an error
        report.longrepr = f"skipped in CI: {where}"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    # A test that hangs on an await reports what every task was awaiting (`hangs`).
    with Watchdog(item):
        return (yield)
