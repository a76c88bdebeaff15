"""Where a run happens: the broker (KAFKA_BOOTSTRAP_SERVERS, else a LocalKafka for the
run), throwaway databases (SQLite files, PostgreSQL via procure_devstack.postgres) and
service settings on a topic prefix of their own."""

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from procure_devstack.ports import free_ports
from procure_devstack.testing import unique
from procure_runtime.settings import ServiceSettings, load_settings, loop_factory

PARTITIONS = 3  # the services' default; every scenario uses the same
T = TypeVar("T")


def save_figures(out: Path, kind: str, meta: dict[str, Any], body: dict[str, Any]) -> Path:
    """A tool's figures as `<out>/<stamp>-<kind>.json`: `{"meta": {"stamp", ...meta},
    ...body}`. Prints where."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stamp}-{kind}.json"
    path.write_text(json.dumps({"meta": {"stamp": stamp, **meta}, **body}, indent=2))
    print(f"wrote {path}")
    return path


def event_loop() -> str:
    """The event loop the services run on (`PROCURE_EVENT_LOOP`, uvloop where installed)."""
    return ServiceSettings().event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run the harness on the services' event loop: the services measured in-process and
    the raw baselines then share it, and the harness beside a stack costs what it would."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop())) as runner:
        return runner.run(main)


@contextlib.contextmanager
def broker() -> Iterator[str]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
        return
    from procure_devstack.kafka import LocalKafka

    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        port, controller = free_ports(2)
        kafka = LocalKafka(Path(tmp), port=port, controller_port=controller)
        kafka.start()
        try:
            kafka.wait_ready(timeout=120)
            yield kafka.bootstrap
        finally:
            kafka.stop()


class Databases:
    """Fresh databases per scenario; PostgreSQL ones are dropped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._pg: list[str] = []
        self._pg_ready = False

    def url(self, backend: str, name: str) -> str:
        if backend == "sqlite":
            return f"sqlite+aiosqlite:///{self.workdir / f'{name}-{unique()}.db'}"
        from procure_devstack import postgres

        if not self._pg_ready:
            postgres.ensure_cluster_running()
            postgres.ensure_role()
            self._pg_ready = True
        db = f"bench_{name}_{unique()}"
        self._pg.append(db)
        return postgres.ensure_database(db)

    def drop_all(self) -> None:
        from procure_devstack import postgres

        for db in self._pg:
            with contextlib.suppress(Exception):
                postgres.drop_database(db)
        self._pg.clear()


def settings(service: str, url: str, bootstrap: str, workdir: Path, **kw: Any) -> ServiceSettings:
    return load_settings(
        service,
        database_url=url,
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"bench.{unique()}.",
        data_dir=workdir,
        topic_partitions=PARTITIONS,
        log_level="WARNING",  # per-event INFO lines would be part of the measurement
        **kw,
    )
