"""The ``procure`` command: run the whole platform on one machine and look inside it.

Commands::

    procure up [--detach]        Kafka + SMTP sink + every service, waits for /readyz
    procure down                 stop what `up` started (idempotent)
    procure token --roles R...   print a JWT for the services' HTTP APIs
    procure tail TOPIC...        print the events on topics, one line each

State lives under ``PROCURE_DATA_DIR`` (default ``./var``)::

    var/kafka/          the local broker (LocalKafka), its pid file and log
    var/mail/           every message the SMTP sink received, as .eml
    var/logs/<name>.log stdout/stderr of each service and of the sink ("smtp")
    var/run/<name>.pid  pid of each service and of the sink

Adding a command: write a function that takes the subparsers object, adds a
parser and sets ``handler=`` (a function ``Namespace -> exit code``), and
decorate it with ``@command``. Commands that live in other modules register
the same way once the module is imported from ``_load_commands``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib.util
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

from procure_devstack.kafka import KafkaError, LocalKafka, stop_from_pidfile

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord, TopicPartition

    from procure_runtime.settings import ServiceSettings

__all__ = [
    "SERVICES",
    "StackError",
    "StackPaths",
    "build_parser",
    "command",
    "discover_services",
    "format_record",
    "jwt_secret",
    "main",
    "make_dev_token",
    "parse_roles",
    "summarize_data",
    "tail",
]

#: Every service of the platform, in start order (section 1 of the spec).
SERVICES = ("quotes", "inventory", "purchasing", "receiving", "shipping", "notifier")

KAFKA_PORT = 9092
SMTP_HOST = "127.0.0.1"
SMTP_PORT = 1025
SMTP_NAME = "smtp"
SMTP_MODULE = "procure_devstack.smtp"
# The modules whose absence means the notifier is not installed (`procure up`'s summary).
NOTIFIER_MODULES = ("procure_notifier", "procure_notifier.sender")
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0

Registrar = Callable[[Any], None]
_REGISTRARS: list[Registrar] = []


def command(register: Registrar) -> Registrar:
    """Decorator: ``register(subparsers)`` adds one subcommand to ``procure``."""
    _REGISTRARS.append(register)
    return register


class StackError(RuntimeError):
    """The local stack could not be started or stopped."""


# ------------------------------------------------------------------------ helpers


def jwt_secret() -> str:
    """``PROCURE_JWT_SECRET``, or the development secret the services default to."""
    from procure_runtime.settings import DEV_JWT_SECRET

    return os.environ.get("PROCURE_JWT_SECRET") or DEV_JWT_SECRET


def make_dev_token(
    *, sub: str, name: str, email: str, roles: Sequence[str], ttl_s: int = 12 * 3600
) -> str:
    """A token signed with ``jwt_secret()``."""
    import warnings

    from procure_runtime.auth import make_token
    from procure_runtime.settings import DEV_JWT_SECRET

    secret = jwt_secret()
    with warnings.catch_warnings():
        if secret == DEV_JWT_SECRET:
            # PyJWT flags the public dev secret as short; a real secret keeps the warning.
            warnings.filterwarnings("ignore", message="The HMAC key is")
        return make_token(secret, sub=sub, name=name, email=email, roles=list(roles), ttl_s=ttl_s)


def service_port(name: str) -> int:
    from procure_runtime.settings import DEFAULT_PORTS

    return int(os.environ.get(f"{name.upper()}_PORT", DEFAULT_PORTS[name]))


def discover_services() -> list[str]:
    """The services whose ``procure_<name>.app`` module exists, in start order."""
    found = []
    for name in SERVICES:
        try:
            spec = importlib.util.find_spec(f"procure_{name}.app")
        except (ImportError, ValueError):  # the package itself is missing or broken
            spec = None
        if spec is not None:
            found.append(name)
    return found


@dataclass(frozen=True)
class StackPaths:
    """Where ``procure up`` keeps its state."""

    root: Path

    @classmethod
    def from_env(cls) -> StackPaths:
        return cls(Path(os.environ.get("PROCURE_DATA_DIR") or "var").resolve())

    @property
    def kafka(self) -> Path:
        return self.root / "kafka"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def make(self) -> None:
        for directory in (self.kafka, self.mail, self.logs, self.run):
            directory.mkdir(parents=True, exist_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):
        # A zombie still answers kill(0); its state field says it is dead.
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ManagedProcess:
    """A ``python -m <module>`` child in its own process group, tracked by a pid file."""

    name: str
    module: str
    args: list[str]
    pid_file: Path
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    log_offset: int = 0
    reported_dead: bool = False

    @classmethod
    def for_service(cls, paths: StackPaths, name: str) -> ManagedProcess:
        return cls(
            name=name,
            module=f"procure_{name}",
            args=[],
            pid_file=paths.run / f"{name}.pid",
            log_file=paths.logs / f"{name}.log",
        )

    @classmethod
    def for_sink(cls, paths: StackPaths) -> ManagedProcess:
        return cls(
            name=SMTP_NAME,
            module=SMTP_MODULE,
            args=["--host", SMTP_HOST, "--port", str(SMTP_PORT), "--maildir", str(paths.mail)],
            pid_file=paths.run / f"{SMTP_NAME}.pid",
            log_file=paths.logs / f"{SMTP_NAME}.log",
        )

    @property
    def pid(self) -> int | None:
        if self.proc is not None:
            return self.proc.pid
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _is_ours(self, pid: int) -> bool:
        """Guard against a stale pid file whose pid now belongs to something else."""
        if not _pid_alive(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no /proc: trust the pid file
        return self.module.encode() in argv

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        pid = self.pid
        return pid is not None and self._is_ours(pid)

    def start(self, env: Mapping[str, str]) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            log.write(f"\n=== procure up: {self.name} at {datetime.now(UTC):%F %T}Z ===\n".encode())
            log.flush()
            # Own session: `down` signals the whole group, and a Ctrl-C in the
            # terminal reaches only `procure up`, which then stops things in order.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self.proc.pid}\n")
        self.reported_dead = False

    def signal(self, sig: signal.Signals) -> None:
        pid = self.pid
        if pid is None or not self.alive():
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def forget(self) -> None:
        self.pid_file.unlink(missing_ok=True)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(self.log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return f"(no {self.log_file})"
        return "\n".join(text.splitlines()[-lines:])


def _stop_processes(procs: Sequence[ManagedProcess], timeout: float) -> list[str]:
    """SIGTERM every live process group at once, SIGKILL what is left after ``timeout``."""
    running = [p for p in procs if p.alive()]
    for p in running:
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(p.alive() for p in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in running:
        if p.alive():
            print(f"  {p.name} did not stop within {timeout:.0f}s: SIGKILL", file=sys.stderr)
            p.signal(signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while any(p.alive() for p in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in procs:
        p.forget()
    return [p.name for p in running]


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _startup_lock(paths: StackPaths) -> Iterator[None]:
    """Serialize concurrent `procure up`s so they cannot start duplicates."""
    with (paths.run / "up.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another `procure up` is starting the stack; waiting for it…", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ----------------------------------------------------------------------- up/down


@dataclass
class Stack:
    """What ``procure up`` runs, and what of it this invocation started."""

    paths: StackPaths
    services: list[ManagedProcess]
    sink: ManagedProcess | None  # None: PROCURE_SMTP_HOST names an external server
    external_kafka: str | None  # KAFKA_BOOTSTRAP_SERVERS, when set
    started: list[ManagedProcess] = field(default_factory=list)
    started_kafka: bool = False

    @classmethod
    def from_env(cls, paths: StackPaths) -> Stack:
        return cls(
            paths=paths,
            services=[ManagedProcess.for_service(paths, n) for n in discover_services()],
            sink=None if os.environ.get("PROCURE_SMTP_HOST") else ManagedProcess.for_sink(paths),
            external_kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None,
        )

    @property
    def bootstrap(self) -> str:
        return self.external_kafka or f"127.0.0.1:{KAFKA_PORT}"

    def local_kafka(self) -> LocalKafka:
        return LocalKafka(self.paths.kafka, port=KAFKA_PORT)

    def smtp_env(self) -> dict[str, str]:
        if self.sink is None:
            return {}
        return {
            "PROCURE_SMTP_HOST": SMTP_HOST,
            "PROCURE_SMTP_PORT": str(SMTP_PORT),
            "PROCURE_SMTP_TLS": "none",
        }

    def is_up(self) -> bool:
        kafka_ok = self.external_kafka is not None or self.local_kafka().is_running()
        sink_ok = self.sink is None or self.sink.alive()
        return kafka_ok and sink_ok and all(s.alive() for s in self.services)

    def service_env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.smtp_env())
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                "PROCURE_DATA_DIR": str(self.paths.root),
                "PROCURE_JWT_SECRET": jwt_secret(),
                f"{name.upper()}_PORT": str(service_port(name)),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    # -- starting

    def start_kafka(self, timeout: float) -> None:
        if self.external_kafka is not None:
            print(f"kafka: using KAFKA_BOOTSTRAP_SERVERS={self.external_kafka}")
            return
        broker = self.local_kafka()
        if broker.is_running():
            print(f"kafka: already running (pid {broker.pid}) on {broker.bootstrap}")
            return
        print(f"kafka: starting on {broker.bootstrap} (data in {broker.data_dir})…", flush=True)
        began = time.monotonic()
        try:
            broker.start()
        except KafkaError as exc:
            hint = (
                " (set KAFKA_BOOTSTRAP_SERVERS to use a broker you run)"
                if "in use" in str(exc)
                else ""
            )
            raise StackError(f"kafka: {exc}{hint}") from exc
        self.started_kafka = True
        try:
            broker.wait_ready(timeout)
        except KafkaError as exc:
            raise StackError(f"kafka: {exc}") from exc
        print(f"kafka: ready in {time.monotonic() - began:.1f}s")

    def start_sink(self) -> None:
        from procure_devstack.smtp import wait_listening

        if self.sink is None:
            print(f"smtp: using PROCURE_SMTP_HOST={os.environ['PROCURE_SMTP_HOST']}")
            return
        if self.sink.alive():
            print(f"smtp: sink already running (pid {self.sink.pid}) on {SMTP_HOST}:{SMTP_PORT}")
            return
        if _port_open(SMTP_PORT, SMTP_HOST):
            raise StackError(
                f"smtp: port {SMTP_PORT} is in use by another program "
                "(stop it, or set PROCURE_SMTP_HOST/PROCURE_SMTP_PORT to use it)"
            )
        self.sink.start(dict(os.environ, PYTHONUNBUFFERED="1"))
        self.started.append(self.sink)
        if not wait_listening(SMTP_HOST, SMTP_PORT, timeout=15.0):
            raise StackError(f"smtp: the sink did not start:\n{self.sink.log_tail()}")
        print(f"smtp: sink listening on {SMTP_HOST}:{SMTP_PORT}")

    def start_services(self) -> None:
        for service in self.services:
            port = service_port(service.name)
            if service.alive():
                print(f"{service.name}: already running (pid {service.pid}) on port {port}")
                continue
            if _port_open(port):
                raise StackError(
                    f"{service.name}: port {port} is in use by another program "
                    f"(stop it, or set {service.name.upper()}_PORT)"
                )
            service.start(self.service_env(service.name))
            self.started.append(service)
            print(f"{service.name}: started (pid {service.pid}), log {service.log_file}")

    def wait_services_ready(self, timeout: float) -> None:
        import httpx

        pending = {s.name: s for s in self.services}
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name, service in list(pending.items()):
                    if not service.alive():
                        raise StackError(
                            f"{name} exited before becoming ready; end of {service.log_file}:\n"
                            f"{service.log_tail()}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        url = f"http://127.0.0.1:{service_port(name)}/readyz"
                        if client.get(url).status_code == 200:
                            print(f"{name}: ready")
                            del pending[name]
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    names = ", ".join(pending)
                    tails = "\n".join(
                        f"--- {s.log_file}:\n{s.log_tail(20)}" for s in pending.values()
                    )
                    raise StackError(f"not ready after {timeout:.0f}s: {names}\n{tails}")
                time.sleep(0.5)

    # -- stopping

    def stop_started(self) -> None:
        """Undo a failed start: stop only what this invocation started."""
        _stop_processes(list(reversed(self.started)), STOP_TIMEOUT_S)
        self.started.clear()
        if self.started_kafka:
            self.local_kafka().stop()
            self.started_kafka = False

    def report_deaths(self) -> bool:
        """Print (once) each process that died; False when nothing is left running."""
        anything = False
        for proc in [*self.services, *([self.sink] if self.sink else [])]:
            if proc.alive():
                anything = True
            elif not proc.reported_dead:
                proc.reported_dead = True
                print(
                    f"\n{proc.name} exited; end of {proc.log_file}:\n{proc.log_tail(20)}\n",
                    file=sys.stderr,
                    flush=True,
                )
        if self.external_kafka is None and self.local_kafka().is_running():
            anything = True
        return anything

    def failed(self) -> list[str]:
        """The processes started here that ended on their own with an error: not with
        status 0, nor by the SIGTERM `procure down` sends."""
        ended = [p for p in [*self.services, *([self.sink] if self.sink else [])] if p.proc]
        return [
            p.name
            for p in ended
            if p.proc is not None and p.proc.poll() not in (None, 0, -signal.SIGTERM)
        ]

    def watch(self, interval: float = 1.0) -> int:
        """Until nothing is left running: 0 when it was stopped, 1 when a process failed."""
        while self.report_deaths():
            time.sleep(interval)
        if failed := self.failed():
            print(f"everything has stopped; failed: {', '.join(failed)}", file=sys.stderr)
            return 1
        print("everything has stopped", file=sys.stderr)
        return 0

    # -- reporting

    def print_summary(self, *, already: bool) -> None:
        print()
        print(
            "procure is already up" if already else "procure is up", f"(state in {self.paths.root})"
        )
        if self.services:
            for service in self.services:
                port = service_port(service.name)
                print(f"  {service.name:<11} http://127.0.0.1:{port}   log {service.log_file}")
        else:
            print("  services:   none yet (no procure_<name>.app module is importable)")
        kafka_where = "external" if self.external_kafka else f"local, {self.paths.kafka}"
        print(f"  {'kafka':<11} {self.bootstrap}   ({kafka_where})")
        if self.sink is not None:
            print(f"  {'smtp sink':<11} {SMTP_HOST}:{SMTP_PORT}   mail in {self.paths.mail}")
        else:  # where the notifier sends: its own reading of PROCURE_SMTP_HOST/PORT
            try:  # a service of its own: this package does not depend on it
                from procure_notifier.sender import SmtpSettings
            except ImportError as exc:
                # Not installed, or installed and broken (a dependency of its own
                # missing): the second is worth its own words, not "not installed".
                absent = isinstance(exc, ModuleNotFoundError) and exc.name in NOTIFIER_MODULES
                why = "is not installed" if absent else f"does not import: {exc}"
                print(f"  {'smtp':<11} -   (the notifier {why}: no mail is sent)")
            else:
                smtp = SmtpSettings()
                print(f"  {'smtp':<11} {smtp.host}:{smtp.port}   (external)")
        token = make_dev_token(
            sub="dev-admin",
            name="Dev Admin",
            email="admin@example.com",
            roles=["admin"],
        )
        print("\nadmin token (12 h):")
        print(f"  export PROCURE_TOKEN={token}")
        sys.stdout.flush()


def cmd_up(args: argparse.Namespace) -> int:
    paths = StackPaths.from_env()
    paths.make()
    stack = Stack.from_env(paths)
    with _sigterm_as_interrupt():
        try:
            with _startup_lock(paths):
                if stack.is_up():
                    stack.print_summary(already=True)
                    if not args.detach:
                        print("\n(it runs detached; `procure down` stops it)")
                    return 0
                stack.start_kafka(args.timeout)
                stack.start_sink()
                stack.start_services()
                stack.wait_services_ready(args.timeout)
        except StackError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            print("stopping what this run started…", file=sys.stderr)
            stack.stop_started()
            return 1
        except KeyboardInterrupt:
            print("\ninterrupted; stopping what this run started…", file=sys.stderr)
            stack.stop_started()
            return 130
        stack.print_summary(already=False)
        if args.detach:
            print("\n`procure down` stops it.")
            return 0
        print("\nCtrl-C stops everything.", flush=True)
        try:
            return stack.watch()
        except KeyboardInterrupt:
            print("\nstopping…", file=sys.stderr)
    return down(paths, STOP_TIMEOUT_S)


def down(paths: StackPaths, timeout: float) -> int:
    """Stop services, then the sink, then the local broker, from their pid files."""
    names = list(SERVICES)
    if paths.run.is_dir():  # services that pid files know of but SERVICES does not
        names += sorted(
            p.stem for p in paths.run.glob("*.pid") if p.stem not in (*SERVICES, SMTP_NAME)
        )
    services = [ManagedProcess.for_service(paths, n) for n in names]
    stopped = _stop_processes(services, timeout)
    stopped += _stop_processes([ManagedProcess.for_sink(paths)], timeout)
    if stop_from_pidfile(paths.kafka, timeout=max(timeout, 30.0)):
        stopped.append("kafka")
    if stopped:
        print(f"stopped: {', '.join(stopped)}")
    else:
        print(f"nothing was running (state in {paths.root})")
    return 0


@command
def _register_up(sub: Any) -> None:
    p = sub.add_parser(
        "up",
        help="start Kafka, the SMTP sink and every service; wait until all are ready",
        description="Start a local single-node Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set), "
        "an SMTP sink (unless PROCURE_SMTP_HOST is set) and every service that exists, "
        "each as its own process; wait until every /readyz answers 200.",
    )
    p.add_argument("--detach", "-d", action="store_true", help="return once ready")
    p.add_argument("--timeout", type=float, default=READY_TIMEOUT_S, help="readiness timeout, s")
    p.set_defaults(handler=cmd_up)


@command
def _register_down(sub: Any) -> None:
    p = sub.add_parser("down", help="stop everything `procure up` started")
    p.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S, help="SIGKILL after, s")
    p.set_defaults(handler=lambda args: down(StackPaths.from_env(), args.timeout))


# -------------------------------------------------------------------------- token


def parse_roles(text: str) -> list[str]:
    """``"sales,billing"`` -> ``["sales", "billing"]``; unknown roles raise ValueError."""
    from procure_runtime.auth import ROLES

    roles = list(dict.fromkeys(r.strip() for r in text.split(",") if r.strip()))
    if not roles:
        raise ValueError(f"give at least one role; known roles: {', '.join(ROLES)}")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(
            f"unknown role{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known roles: {', '.join(ROLES)}"
        )
    return roles


class _Roles(argparse.Action):
    """``--roles sales,billing`` or ``--roles sales billing`` (or both at once)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        try:
            setattr(namespace, self.dest, parse_roles(",".join(values)))
        except ValueError as exc:
            parser.error(f"argument --roles: {exc}")


def cmd_token(args: argparse.Namespace) -> int:
    sub = args.sub
    print(
        make_dev_token(
            sub=sub,
            name=args.name or sub,
            email=args.email or f"{sub}@example.com",
            roles=args.roles,
            ttl_s=args.ttl,
        )
    )
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number")
    return value


@command
def _register_token(sub: Any) -> None:
    p = sub.add_parser(
        "token",
        help="print a JWT (HS256, PROCURE_JWT_SECRET) for the services' APIs",
        description="Print a bearer token signed with PROCURE_JWT_SECRET (or the dev secret).",
    )
    p.add_argument(
        "--roles",
        nargs="+",
        action=_Roles,
        required=True,
        help="comma- or space-separated, e.g. sales,billing",
    )
    p.add_argument("--sub", default="dev-user", help="person id (default dev-user)")
    p.add_argument("--name", default=None, help="display name (default: the sub)")
    p.add_argument("--email", default=None, help="default <sub>@example.com")
    p.add_argument("--ttl", type=_positive_int, default=12 * 3600, help="seconds (default 12 h)")
    p.set_defaults(handler=cmd_token)


# --------------------------------------------------------------------------- tail


def _short(value: Any, width: int = 40) -> str:
    text = (
        value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    )
    return text if len(text) <= width else text[: width - 1] + "…"


def summarize_data(data: Mapping[str, Any], limit: int = 4) -> str:
    """The first few scalar fields as ``k=v``; then ids of nested objects and list sizes."""
    scalars: list[str] = []
    others: list[str] = []
    for key, value in data.items():
        if value is None or isinstance(value, str | int | float | bool):
            scalars.append(f"{key}={_short(value)}")
        elif isinstance(value, Mapping) and isinstance(value.get("id"), str | int):
            others.append(f"{key}.id={_short(value['id'])}")
        elif isinstance(value, list):
            others.append(f"{key}=[{len(value)}]")
        if len(scalars) >= limit:
            break
    return " ".join((scalars + others)[:limit])


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def format_record(record: ConsumerRecord[bytes, bytes], topic: str | None = None) -> str:
    """One line: time topic partition@offset key type subject correlationid data-summary.

    The time is the event's ``time`` when it has one, else the record timestamp.
    """
    from procure_contracts import CloudEvent

    key = "-" if record.key is None else record.key.decode(errors="replace")
    head = f"{topic or record.topic} {record.partition}@{record.offset} key={key}"
    stamp = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    if record.value is None:
        return f"{_iso(stamp)} {head} <tombstone: no value>"
    raw = record.value
    try:
        event = CloudEvent.from_bytes(raw)
    except ValueError:  # pydantic's ValidationError included
        return f"{_iso(stamp)} {head} <undecodable {len(raw)} bytes>"
    return " ".join(
        [
            _iso(event.time or stamp),
            head,
            event.type,
            f"subject={event.subject or '-'}",
            f"corr={event.correlationid or '-'}",
            summarize_data(event.data),
        ]
    ).rstrip()


def _matches(
    record: ConsumerRecord[bytes, bytes], type_: str | None, correlation: str | None
) -> bool:
    if type_ is None and correlation is None:
        return True
    from procure_contracts import CloudEvent

    try:
        event = CloudEvent.from_bytes(record.value or b"")
    except ValueError:
        return False
    if type_ is not None and event.type != type_:
        # `--type charge.created` also matches procurement.charge.created.v1
        short = event.type.removeprefix("procurement.").rsplit(".v", 1)[0]
        if short != type_:
            return False
    return correlation is None or event.correlationid == correlation


async def tail(
    topics: Sequence[str],
    *,
    from_beginning: bool = False,
    type_: str | None = None,
    correlation: str | None = None,
    max_records: int | None = None,
    timeout: float | None = None,
    settings: ServiceSettings | None = None,
    out: TextIO | None = None,
    err: IO[str] | None = None,
) -> int:
    """Print every record of ``topics`` (prefix ``PROCURE_TOPIC_PREFIX`` applied).

    No consumer group: all partitions are assigned, including those of topics
    that appear later (read from their start). Stops after ``max_records``
    printed lines or ``timeout`` seconds; otherwise follows until cancelled.
    Returns the number of lines printed.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from procure_runtime.kafka import client_kwargs
    from procure_runtime.settings import load_settings

    out = out or sys.stdout
    err = err or sys.stderr
    # A database_url keeps load_settings from creating ./var for an SQLite file.
    settings = settings or load_settings("tail", database_url="none://")
    names = {settings.topic(t): t for t in topics}
    kwargs = client_kwargs(settings)
    deadline = None if timeout is None else time.monotonic() + timeout

    def remaining_ms(cap: float = 500.0) -> int:
        if deadline is None:
            return int(cap)
        return max(0, min(int(cap), math.ceil((deadline - time.monotonic()) * 1000)))

    admin = AIOKafkaAdminClient(client_id="procure-tail-admin", **kwargs)
    printed = 0
    assigned: set[TopicPartition] = set()
    waiting_note = False

    async def discover(first: bool) -> None:
        nonlocal waiting_note
        # All-topics metadata: asking for named topics could auto-create them.
        found: set[TopicPartition] = set()
        for meta in await admin.describe_topics():
            if meta["topic"] in names and meta["error_code"] == 0:
                found |= {TopicPartition(meta["topic"], p["partition"]) for p in meta["partitions"]}
        new = found - assigned
        if new:
            positions = {tp: await consumer.position(tp) for tp in assigned}
            consumer.assign(list(assigned | new))
            for tp, offset in positions.items():
                consumer.seek(tp, offset)
            if not first:  # a topic created after we started: everything in it is new
                await consumer.seek_to_beginning(*new)
            assigned.update(new)
        missing = set(names) - {tp.topic for tp in assigned}
        if missing and not waiting_note:
            shown = ", ".join(sorted(names[t] for t in missing))
            print(f"waiting for topic(s) to appear: {shown}", file=err)
            waiting_note = True

    try:
        await admin.start()
        # Made only now: a consumer that is never started warns "Unclosed" at exit.
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if from_beginning else "latest",
            client_id="procure-tail",
            **kwargs,
        )
        try:
            await consumer.start()
            await discover(first=True)
            next_discovery = time.monotonic() + 2.0
            while deadline is None or time.monotonic() < deadline:
                if time.monotonic() >= next_discovery:
                    await discover(first=False)
                    next_discovery = time.monotonic() + 2.0
                if not assigned:
                    await asyncio.sleep(remaining_ms() / 1000)
                    continue
                batches = await consumer.getmany(timeout_ms=remaining_ms())
                for records in batches.values():
                    for record in records:
                        if not _matches(record, type_, correlation):
                            continue
                        print(format_record(record, names.get(record.topic)), file=out, flush=True)
                        printed += 1
                        if max_records is not None and printed >= max_records:
                            return printed
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    return printed


def cmd_tail(args: argparse.Namespace) -> int:
    try:
        asyncio.run(
            tail(
                args.topics,
                from_beginning=args.from_beginning,
                type_=args.type,
                correlation=args.correlation,
                max_records=args.max,
                timeout=args.timeout,
            )
        )
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # main() handles `| head`
    except Exception as exc:  # broker unreachable, bad security settings, ...
        from aiokafka.errors import KafkaError as AIOKafkaError

        if isinstance(exc, AIOKafkaError | OSError):
            print(f"error: {exc!r}", file=sys.stderr)
            return 1
        raise
    return 0


@command
def _register_tail(sub: Any) -> None:
    p = sub.add_parser(
        "tail",
        help="print the events on topics, one line each (follows)",
        description="Print each record as: time topic partition@offset key type subject "
        "correlationid data-summary. Topic names get PROCURE_TOPIC_PREFIX; security "
        "comes from the KAFKA_* variables.",
    )
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    p.add_argument(
        "--type", default=None, help="only this event type (full or e.g. charge.created)"
    )
    p.add_argument("--correlation", default=None, metavar="ID", help="only this correlationid")
    p.add_argument(
        "--max", type=_positive_int, default=None, metavar="N", help="stop after N lines"
    )
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="stop after S seconds")
    p.set_defaults(handler=cmd_tail)


# --------------------------------------------------------------------------- main


def _load_commands() -> None:
    """Import the modules of commands defined outside this file (they use @command)."""
    import procure_devstack.demo  # `procure demo`
    import procure_devstack.dlq  # noqa: F401


def build_parser() -> argparse.ArgumentParser:
    _load_commands()
    parser = argparse.ArgumentParser(
        prog="procure",
        description="Run the procurement platform locally and look inside it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        # `procure tail ... | head`: the reader left; exit quietly like other CLI tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
