"""Run a real single-node Apache Kafka broker as a local process, without Docker.

The broker jars come from Maven Central through ``deploy/kafka/pom.xml`` (the
``dependency:copy-dependencies`` goal) and are cached under
``~/.cache/procure/kafka-<version>/libs``; an unpacked Kafka distribution can be
used instead by setting ``KAFKA_HOME``. The broker runs in KRaft combined mode
(broker and controller in one JVM) on loopback.

Library use::

    broker = LocalKafka(data_dir=tmp_path / "kafka", port=19092)
    broker.start()
    broker.wait_ready()
    ...  # connect clients to broker.bootstrap
    broker.stop()

A secured client listener (SASL_SSL with SCRAM users created at format time and a
PEM key store, e.g. from ``procure_devstack.tls``) is added with ``sasl_ssl=``; the
PLAINTEXT listener on ``port`` stays for inter-broker traffic and the readiness probe::

    listener = SaslSslListener(port=19094, keystore=files.keystore_file,
                               users={"alice": "alice-secret"})
    broker = LocalKafka(data_dir, port=19093, sasl_ssl=listener)
    broker.sasl_ssl_bootstrap  # "127.0.0.1:19094"

Several nodes (each broker and controller) on loopback, for fault tests::

    cluster = LocalKafkaCluster(tmp_path / "cluster", size=3)
    cluster.start()            # formats, launches and waits for every node
    cluster.bootstrap          # "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3"
    cluster.kill(1)            # SIGKILL node index 1 (node.id 2)
    cluster.start(1)           # bring it back
    cluster.stop()

Command line::

    python -m procure_devstack.kafka fetch
    python -m procure_devstack.kafka start [--data-dir DIR] [--port N] [--foreground]
    python -m procure_devstack.kafka stop [--data-dir DIR]

Environment:
    ``KAFKA_HOME``           use ``$KAFKA_HOME/libs`` and skip Maven.
    ``PROCURE_KAFKA_CACHE``  root of the jar cache (default ``~/.cache/procure``).
    ``PROCURE_KAFKA_POM``    path of the POM (default: found from this file).
    ``JAVA_HOME``            JVM to use (default: ``java`` on ``PATH``).

Only the standard library is used, so this works before any venv exists.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .ports import free_port, free_ports

__all__ = [
    "KAFKA_VERSION",
    "KafkaAlreadyRunningError",
    "KafkaError",
    "LocalKafka",
    "LocalKafkaCluster",
    "SaslSslListener",
    "api_versions",
    "ensure_jars",
    "main",
    "stop_from_pidfile",
]

#: Must match ``kafka.version`` in deploy/kafka/pom.xml (it is also passed to Maven).
KAFKA_VERSION = "4.4.0"

DEFAULT_DATA_DIR = Path("var/kafka")
DEFAULT_PORT = 9092

_POM_RELPATH = Path("deploy/kafka/pom.xml")
_LOG4J_RELPATH = Path("deploy/kafka/log4j2.properties")
_COMPLETE_MARKER = ".procure-complete"
_PID_FILE = "kafka.pid"
_LOG_FILE = "kafka.log"
_PROPS_FILE = "server.properties"
_CLUSTER_ID_FILE = "cluster.id"
_MAIN_CLASS = "kafka.Kafka"
_STORAGE_TOOL = "kafka.tools.StorageTool"
# What bin/kafka-run-class.sh passes, minus the heap (set per broker).
_JVM_OPTS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


class KafkaError(RuntimeError):
    """The broker or its tooling failed."""


class KafkaAlreadyRunningError(KafkaError):
    """A broker recorded in the data dir's pid file is still alive."""


# --------------------------------------------------------------------------- jars


def _find_repo_file(relpath: Path) -> Path | None:
    for parent in Path(__file__).resolve().parents:
        candidate = parent / relpath
        if candidate.is_file():
            return candidate
    return None


def _pom_path() -> Path:
    env = os.environ.get("PROCURE_KAFKA_POM")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise KafkaError(f"PROCURE_KAFKA_POM={env} is not a file")
        return path
    found = _find_repo_file(_POM_RELPATH)
    if found is None:
        raise KafkaError(
            f"cannot find {_POM_RELPATH} above {Path(__file__).parent}; "
            "set PROCURE_KAFKA_POM or KAFKA_HOME"
        )
    return found


def _default_cache_dir() -> Path:
    root = os.environ.get("PROCURE_KAFKA_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "procure"
    return base / f"kafka-{KAFKA_VERSION}" / "libs"


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """Return a directory holding every jar the broker needs, fetching them if needed.

    ``$KAFKA_HOME/libs`` wins when ``KAFKA_HOME`` is set. Otherwise ``cache_dir``
    (default ``~/.cache/procure/kafka-<version>/libs``) is filled by Maven once;
    the download goes to a temporary sibling that is renamed into place, so a
    crash or a concurrent caller never sees a half-filled directory.
    """
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        libs = Path(kafka_home).expanduser() / "libs"
        if not any(libs.glob("kafka_*.jar")):
            raise KafkaError(f"KAFKA_HOME={kafka_home} has no libs/kafka_*.jar")
        return libs

    target = (cache_dir or _default_cache_dir()).expanduser().resolve()
    if (target / _COMPLETE_MARKER).is_file():
        return target

    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaError("Maven (mvn) is not on PATH; install it or set KAFKA_HOME")
    pom = _pom_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        cmd = [
            mvn, "-B", "-q", "-f", str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
            f"-Dkafka.version={KAFKA_VERSION}",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(tmp.glob("kafka_*.jar")):
            raise KafkaError(
                f"{' '.join(cmd)} failed (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )
        (tmp / _COMPLETE_MARKER).write_text(f"kafka {KAFKA_VERSION}\n")
        if target.exists():
            # Left by an interrupted older layout, or another caller just finished.
            if (target / _COMPLETE_MARKER).is_file():
                return target
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if (target / _COMPLETE_MARKER).is_file():  # lost a race: fine
                return target
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# ------------------------------------------------------------------ wire protocol


def api_versions(host: str, port: int, timeout: float = 5.0) -> dict[int, tuple[int, int]]:
    """Send a Kafka ApiVersions v0 request; return ``{api_key: (min, max)}``.

    Raises ``OSError`` if nothing answers and ``KafkaError`` on a bad answer.
    The broker only serves requests once its startup (including unfencing) is
    complete, so a good answer means clients can connect.
    """
    correlation_id = 0x5EED
    client_id = b"procure-devstack"
    # Request header v1: api_key=18 (ApiVersions), api_version=0, correlation id, client id.
    payload = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        body = _recv_exact(sock, size)
    # Response header v0 (ApiVersions never uses the flexible header), then
    # error_code int16 and [api_key int16, min int16, max int16].
    got_id, error_code, count = struct.unpack_from(">ihi", body, 0)
    if got_id != correlation_id:
        raise KafkaError(f"ApiVersions: correlation id {got_id} != {correlation_id}")
    if error_code != 0:
        raise KafkaError(f"ApiVersions: error code {error_code}")
    versions: dict[int, tuple[int, int]] = {}
    for i in range(count):
        key, lo, hi = struct.unpack_from(">hhh", body, 10 + 6 * i)
        versions[key] = (lo, hi)
    return versions


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


# ---------------------------------------------------------------------- processes


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaError("java is not on PATH (Kafka 4 needs Java 17+); set JAVA_HOME")
    return java


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie still answers kill(0); its state field says it is dead.
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _is_kafka_process(pid: int) -> bool:
    """Guard against a stale pid file whose pid now belongs to something else."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): trust the pid file
    return _MAIN_CLASS.encode() in cmdline


def _read_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / _PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The broker is a session leader (start_new_session), so its pgid is its pid.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _wait_dead(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                return True
        elif not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def _terminate(pid: int, timeout: float, proc: subprocess.Popen[bytes] | None) -> None:
    _signal_group(pid, signal.SIGTERM)
    if not _wait_dead(pid, timeout, proc):
        _signal_group(pid, signal.SIGKILL)
        _wait_dead(pid, 10.0, proc)


def stop_from_pidfile(data_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the broker recorded in ``data_dir/kafka.pid`` (e.g. started by another process).

    Returns True if a broker was running and has been stopped.
    """
    data_dir = Path(data_dir)
    pid = _read_pid(data_dir)
    was_running = pid is not None and _is_kafka_process(pid)
    if pid is not None and was_running:
        _terminate(pid, timeout, None)
    (data_dir / _PID_FILE).unlink(missing_ok=True)
    return was_running


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _new_cluster_id() -> str:
    # Same shape as Kafka's Uuid.randomUuid(): 16 random bytes, base64url, no
    # padding; Kafka also avoids a leading '-' so the id is never read as a flag.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class SaslSslListener:
    """A ``SASL_SSL`` client listener on 127.0.0.1:``port``.

    ``keystore`` is a PEM file holding the unencrypted PKCS#8 private key and the
    certificate chain (Kafka's ``ssl.keystore.type=PEM``). ``users`` (name ->
    password) become SCRAM credentials of ``mechanism`` when the storage is
    formatted, so they apply to a new data dir only; names and passwords must not
    contain ``,``, ``=``, ``[`` or ``]`` (the ``--add-scram`` syntax).
    """

    port: int
    keystore: Path
    users: Mapping[str, str] = field(default_factory=dict)
    mechanism: str = "SCRAM-SHA-512"

    name = "SASL_SSL"

    def properties(self) -> dict[str, str]:
        prefix = f"listener.name.{self.name.lower()}"
        return {
            "sasl.enabled.mechanisms": self.mechanism,
            f"{prefix}.{self.mechanism.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}.ssl.keystore.type": "PEM",
            f"{prefix}.ssl.keystore.location": str(Path(self.keystore).resolve()),
            f"{prefix}.ssl.client.auth": "none",
        }

    def format_args(self) -> list[str]:
        args: list[str] = []
        for user, password in self.users.items():
            args += ["--add-scram", f"{self.mechanism}=[name={user},password={password}]"]
        return args


class LocalKafka:
    """One KRaft broker+controller JVM with all its state in ``data_dir``.

    ``data_dir`` holds ``server.properties``, ``cluster.id``, ``kafka.pid``,
    ``kafka.log`` (the JVM's stdout/stderr, appended) and ``logs/`` (the
    partitions). Reusing ``data_dir`` after ``stop()`` or ``kill()`` keeps
    topics, messages and committed offsets.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = DEFAULT_PORT,
        controller_port: int | None = None,
        node_id: int = 1,
        heap: str = "512m",
        extra_props: Mapping[str, str] | None = None,
        sasl_ssl: SaslSslListener | None = None,
        initial_controllers: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.controller_port = (
            controller_port if controller_port is not None else self._default_controller_port(port)
        )
        self.node_id = node_id
        self.heap = heap
        self.extra_props: dict[str, str] = dict(extra_props or {})
        self.sasl_ssl = sasl_ssl
        # StorageTool's `--initial-controllers id@host:port:directory-id,...` for a
        # multi-node quorum; None formats a single node with `--standalone`.
        self.initial_controllers = initial_controllers
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"LocalKafka(data_dir='{self.data_dir}', port={self.port}, node_id={self.node_id})"

    @staticmethod
    def _default_controller_port(port: int) -> int:
        # Deterministic, so `start --port N` always gets the same quorum endpoint
        # (a random free port only when port + 1000 is out of range).
        candidate = port + 1000
        return candidate if candidate <= 65535 else free_port()

    # -- paths and config

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_ssl_bootstrap(self) -> str:
        """The secured client listener (needs ``sasl_ssl``)."""
        if self.sasl_ssl is None:
            raise KafkaError("this broker has no SASL_SSL listener")
        return f"127.0.0.1:{self.sasl_ssl.port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_FILE

    @property
    def pid_file(self) -> Path:
        return self.data_dir / _PID_FILE

    @property
    def properties_file(self) -> Path:
        return self.data_dir / _PROPS_FILE

    @property
    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid
        return _read_pid(self.data_dir)

    def properties(self) -> dict[str, str]:
        """The broker configuration written to ``server.properties``."""
        ctrl = f"127.0.0.1:{self.controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.bootstrap.servers": ctrl,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://{ctrl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            # The default 50 partitions are slow to create on a 2-core machine.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a kill, the controller refuses the new incarnation
            # (DUPLICATE_BROKER_REGISTRATION) until the old session expires:
            # 9 s by default, which every crash-and-restart test would pay.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "4000",
        }
        if self.sasl_ssl is not None:
            secured = f"{self.sasl_ssl.name}://127.0.0.1:{self.sasl_ssl.port}"
            props["listeners"] += f",{secured}"
            props["advertised.listeners"] += f",{secured}"
            props["listener.security.protocol.map"] += f",{self.sasl_ssl.name}:SASL_SSL"
            props.update(self.sasl_ssl.properties())
        props.update(self.extra_props)
        return props

    def _write_properties(self) -> None:
        lines = ["# Written by procure_devstack.kafka; rewritten on every start.\n"]
        lines += [f"{key}={value}\n" for key, value in self.properties().items()]
        self.properties_file.write_text("".join(lines))

    def _cluster_id(self) -> str:
        path = self.data_dir / _CLUSTER_ID_FILE
        if path.is_file():
            return path.read_text().strip()
        cid = _new_cluster_id()
        path.write_text(cid + "\n")
        return cid

    def _java_base(self, libs: Path, heap: str) -> list[str]:
        cmd = [_java(), f"-Xmx{heap}", f"-Xms{heap}", *_JVM_OPTS]
        log4j = _find_repo_file(_LOG4J_RELPATH)
        if log4j is not None:
            cmd.append(f"-Dlog4j2.configurationFile={log4j}")
        cmd += ["-cp", str(libs / "*")]  # java expands the '*' itself
        return cmd

    def _format_storage(self, libs: Path) -> None:
        if (self.data_dir / "logs" / "meta.properties").is_file():
            return  # already formatted: skip a ~2 s JVM start
        cmd = [
            *self._java_base(libs, "256m"),
            _STORAGE_TOOL, "format",
            "-t", self._cluster_id(),
            "-c", str(self.properties_file),
            "--ignore-formatted",
        ]  # fmt: skip
        if self.initial_controllers is None:
            cmd.append("--standalone")
        else:
            cmd += ["--initial-controllers", self.initial_controllers]
        if self.sasl_ssl is not None:
            cmd += self.sasl_ssl.format_args()
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaError(
                f"formatting {self.data_dir / 'logs'} failed (exit {result.returncode}):\n"
                f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
            )

    # -- lifecycle

    def _ports(self) -> list[int]:
        ports = [self.port, self.controller_port]
        if self.sasl_ssl is not None:
            ports.append(self.sasl_ssl.port)
        return ports

    def is_running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        pid = _read_pid(self.data_dir)
        return pid is not None and _is_kafka_process(pid)

    def start(self) -> None:
        """Format storage if new and launch the broker in the background.

        Returns without waiting; call ``wait_ready()``. Raises
        ``KafkaAlreadyRunningError`` if this data dir's broker is alive.
        """
        if self.is_running():
            raise KafkaAlreadyRunningError(
                f"a broker is already running from {self.data_dir} (pid {self.pid})"
            )
        self._proc = None
        for port in self._ports():
            if _port_in_use(port):
                raise KafkaError(f"port {port} on 127.0.0.1 is already in use")
        libs = ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_properties()
        self._format_storage(libs)

        cmd = [*self._java_base(libs, self.heap), _MAIN_CLASS, str(self.properties_file)]
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            log.write(f"\n=== procure_devstack.kafka: {self!r} ===\n".encode())
            log.flush()
            # Own session/process group: stop() can signal the whole group, and a
            # Ctrl-C in the launching terminal does not reach the broker.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Block until the broker answers an ApiVersions request (on the PLAINTEXT
        listener) and the SASL_SSL listener, if any, accepts connections.

        Raises ``KafkaError`` with the tail of ``kafka.log`` if the broker exits
        or is not ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                code = self._proc.returncode if self._proc is not None else None
                raise KafkaError(
                    f"broker exited (code {code}) before becoming ready:\n{self.log_tail()}"
                )
            try:
                api_versions("127.0.0.1", self.port, timeout=2.0)
                if self.sasl_ssl is None or _port_in_use(self.sasl_ssl.port):
                    return
            except (OSError, KafkaError):
                pass
            if time.monotonic() >= deadline:
                raise KafkaError(
                    f"broker not ready on {self.bootstrap} after {timeout:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker's process group (clean shutdown), SIGKILL after ``timeout``."""
        if self._proc is None:
            stop_from_pidfile(self.data_dir, timeout)
            return
        # poll() first: signalling the pid of an already reaped child could hit
        # an unrelated process group that reused it.
        if self._proc.poll() is None:
            _terminate(self._proc.pid, timeout, self._proc)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker at once, as a crash would (for fault tests)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                _signal_group(self._proc.pid, signal.SIGKILL)
                _wait_dead(self._proc.pid, 10.0, self._proc)
        else:
            pid = _read_pid(self.data_dir)
            if pid is not None and _is_kafka_process(pid):
                _signal_group(pid, signal.SIGKILL)
                _wait_dead(pid, 10.0, None)
        self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def wait(self) -> int:
        """Wait for a broker started by this object to exit; return its exit code."""
        if self._proc is None:
            raise KafkaError("wait() needs a broker started by this object")
        return self._proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines that this start wrote to ``kafka.log``."""
        try:
            with self.log_file.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no kafka.log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LocalKafka:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalKafkaCluster:
    """``size`` KRaft nodes, each broker and controller, on loopback under ``data_dir``.

    Node ``i`` (``node.id`` i + 1) lives in ``data_dir/node-<i+1>``; all share one
    cluster id and a dynamic controller quorum of every node. Ports and directory
    ids are chosen once and kept in ``data_dir/cluster.json``, so a cluster (or a
    single node) restarted from the same ``data_dir`` keeps its data. Topics default
    to replication factor ``min(size, 3)`` and ``min.insync.replicas`` one less.
    """

    def __init__(self, data_dir: Path, size: int = 3, heap: str = "512m") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.size = size
        self.data_dir.mkdir(parents=True, exist_ok=True)
        layout = self._layout()
        ctrl = [f"127.0.0.1:{n['controller_port']}" for n in layout["nodes"]]
        voters = ",".join(
            f"{i + 1}@{addr}:{n['directory_id']}"
            for i, (addr, n) in enumerate(zip(ctrl, layout["nodes"], strict=True))
        )
        rf = min(size, 3)
        isr = str(max(1, rf - 1))
        props = {
            "controller.quorum.bootstrap.servers": ",".join(ctrl),
            "default.replication.factor": str(rf),
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": str(rf),
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": isr,
        }
        self.nodes: list[LocalKafka] = []
        for i, node in enumerate(layout["nodes"]):
            node_dir = self.data_dir / f"node-{i + 1}"
            node_dir.mkdir(exist_ok=True)
            # LocalKafka formats with the cluster id found in its data dir.
            (node_dir / _CLUSTER_ID_FILE).write_text(layout["cluster_id"] + "\n")
            self.nodes.append(
                LocalKafka(
                    node_dir,
                    port=node["port"],
                    controller_port=node["controller_port"],
                    node_id=i + 1,
                    heap=heap,
                    extra_props=props,
                    initial_controllers=voters,
                )
            )

    def _layout(self) -> dict:
        path = self.data_dir / "cluster.json"
        if path.is_file():
            layout = json.loads(path.read_text())
            if len(layout["nodes"]) != self.size:
                raise KafkaError(f"{path} describes {len(layout['nodes'])} nodes, not {self.size}")
            return layout
        ports = free_ports(2 * self.size)
        layout = {
            "cluster_id": _new_cluster_id(),
            "nodes": [
                {
                    "port": ports[2 * i],
                    "controller_port": ports[2 * i + 1],
                    "directory_id": _new_cluster_id(),  # same Uuid shape
                }
                for i in range(self.size)
            ],
        }
        path.write_text(json.dumps(layout, indent=2) + "\n")
        return layout

    def __repr__(self) -> str:
        return f"LocalKafkaCluster(data_dir='{self.data_dir}', size={self.size})"

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, node_index: int | None = None, timeout: float = 120.0) -> None:
        """Start one node (or all of them, in parallel) and wait until it is ready.

        The nodes of a new cluster only become ready together, once a quorum of
        controllers is up, hence starting all before waiting for any.
        """
        nodes = self.nodes if node_index is None else [self.nodes[node_index]]
        with ThreadPoolExecutor(len(nodes)) as pool:
            list(pool.map(lambda node: node.start(), nodes))
            try:
                list(pool.map(lambda node: node.wait_ready(timeout), nodes))
            except BaseException:
                for node in nodes:
                    node.kill()
                raise

    def kill(self, node_index: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.nodes[node_index].kill()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every node (SIGTERM, SIGKILL after ``timeout``)."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(timeout), self.nodes))

    def __enter__(self) -> LocalKafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------- CLI


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m procure_devstack.kafka",
        description=f"Run a local Apache Kafka {KAFKA_VERSION} broker (KRaft, single node).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    start_p = sub.add_parser("start", help="start a broker (detached) and wait until it is ready")
    start_p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    start_p.add_argument("--port", type=int, default=DEFAULT_PORT)
    start_p.add_argument("--controller-port", type=int, default=None)
    start_p.add_argument("--timeout", type=float, default=90.0, help="readiness timeout, seconds")
    start_p.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C/SIGTERM stops the broker"
    )
    stop_p = sub.add_parser("stop", help="stop the broker started from --data-dir")
    stop_p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    stop_p.add_argument("--timeout", type=float, default=30.0)
    sub.add_parser("fetch", help="download the broker jars into the cache and print their dir")
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            print(ensure_jars())
            return 0
        if args.command == "stop":
            stopped = stop_from_pidfile(args.data_dir, args.timeout)
            print("stopped" if stopped else f"no broker running from {args.data_dir}")
            return 0

        broker = LocalKafka(args.data_dir, port=args.port, controller_port=args.controller_port)
        if broker.is_running():
            print(f"already running (pid {broker.pid}): {broker.bootstrap}", file=sys.stderr)
            print(broker.bootstrap)
            return 0
        began = time.monotonic()
        broker.start()
        try:
            broker.wait_ready(args.timeout)
        except BaseException:
            broker.stop()
            raise
        print(
            f"kafka {KAFKA_VERSION} ready in {time.monotonic() - began:.1f}s "
            f"(pid {broker.pid}, log {broker.log_file})",
            file=sys.stderr,
        )
        print(broker.bootstrap, flush=True)
        if args.foreground:
            with _sigterm_as_interrupt():
                try:
                    return broker.wait()
                except KeyboardInterrupt:
                    broker.stop()
        return 0
    except KafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
