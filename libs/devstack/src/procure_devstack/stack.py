"""The whole stack as the end-to-end tests, the fault suite and the benchmark run it: the
six services as separate processes on free ports, each with its own database, a Kafka
cluster under a topic prefix of their own, and an SMTP sink, started the way
`procure up` starts them. The `Stack` lets a test stop, kill and restart services and
the sink while work is in flight."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .cli import SERVICES, ManagedProcess, _stop_processes
from .ports import free_ports
from .smtp import SmtpSink
from .testing import unique

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Stack:
    urls: dict[str, str]
    secret: str
    bootstrap: str
    prefix: str
    sink: SmtpSink
    procs: dict[str, ManagedProcess] = field(repr=False)
    envs: dict[str, dict[str, str]] = field(repr=False)

    def logs(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {p.name} ({p.log_file}):\n{p.log_tail(lines)}" for p in self.procs.values()
        )

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL a service (no cleanup of any kind), start it again, wait until ready."""
        self.kill(name)
        self.start(name)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.signal(signal.SIGKILL)
        _wait_dead(proc)
        proc.forget()

    def stop(self, name: str) -> None:
        """A clean stop (SIGTERM), as a deployment's rolling restart does."""
        _stop_processes([self.procs[name]], STOP_TIMEOUT_S)

    def start(self, name: str) -> None:
        proc = self.procs[name]
        proc.start(self.envs[name])
        wait_ready({name: proc}, self.urls)

    def pid(self, name: str) -> int | None:
        return self.procs[name].pid

    def group_id(self, name: str) -> str:
        """The service's consumer group, as its settings derive it."""
        from procure_runtime.settings import load_settings

        url = self.envs[name][f"{name.upper()}_DATABASE_URL"]
        return load_settings(name, topic_prefix=self.prefix, database_url=url).group_id


def wait_ready(procs: Mapping[str, ManagedProcess], urls: Mapping[str, str]) -> None:
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


def _wait_dead(proc: ManagedProcess) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)


@contextlib.contextmanager
def launch_stack(
    root: Path,
    bootstrap: str,
    database_url: Callable[[str], str],
    *,
    partitions: int = 1,
    replication: int = 1,
    env: Mapping[str, str] | None = None,
    mail_files: bool = True,
) -> Iterator[Stack]:
    """Start the six services (and a sink) under `root`; stop them all on exit.

    `database_url(service)` gives each service its database; `env` adds or overrides
    variables for every service (e.g. `PROCURE_SMTP_RETRY_BACKOFF_S`). With `mail_files`
    the sink also writes each mail to `root/mail` (a benchmark only counts them)."""
    sink = SmtpSink(maildir=root / "mail" if mail_files else None)
    sink.start()
    prefix = f"{unique('stack')}."
    secret = f"stack-secret-{unique()}-{unique()}"  # long enough for PyJWT's HS256 check
    shared = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PROCURE_TOPIC_PREFIX": prefix,
        "PROCURE_TOPIC_PARTITIONS": str(partitions),
        "PROCURE_TOPIC_REPLICATION": str(replication),
        "PROCURE_DATA_DIR": str(root),
        "PROCURE_SMTP_HOST": "127.0.0.1",
        "PROCURE_SMTP_PORT": str(sink.port),
        "PROCURE_SMTP_TLS": "none",
        "PROCURE_SMTP_FROM": "procure@stack.example",
        "PROCURE_SMTP_RETRY_BACKOFF_S": "0.5",
        "PROCURE_SMTP_RETRY_MAX_S": "2",  # a test's outage ends; mail should follow soon
        # A mail a SIGKILLed notifier had claimed waits out the claim's lease (10 x this,
        # 300 s by default) before another start sends it: 50 s here.
        "PROCURE_SMTP_TIMEOUT_S": "5",
        "PROCURE_JWT_SECRET": secret,
        "PROCURE_RETRY_BACKOFF_S": "0.1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
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
            f"{name.upper()}_DATABASE_URL": database_url(name),
        }
        for name in SERVICES
    }
    stack = Stack(
        urls=urls,
        secret=secret,
        bootstrap=bootstrap,
        prefix=prefix,
        sink=sink,
        procs=procs,
        envs=envs,
    )
    try:
        for name, proc in procs.items():
            proc.start(envs[name])
        wait_ready(procs, urls)
        yield stack
    finally:
        _stop_processes(list(procs.values()), STOP_TIMEOUT_S)
        sink.stop()
