"""Set up the machine's Debian PostgreSQL cluster for development and tests.

PostgreSQL comes from Debian's packages (``postgresql-common``): the cluster is
started with ``pg_ctlcluster`` and administered as the ``postgres`` OS user
over the local socket (peer auth), so this needs root (or to run as
``postgres``). Services then connect over TCP to 127.0.0.1 with a password:
Debian's ``pg_hba.conf`` asks for scram-sha-256 there, which a role with a
password satisfies without editing any config file. Over loopback they do not use
TLS (``?ssl=disable`` in the URL): see ``database_url``.

Library use::

    ensure_cluster_running()
    ensure_role()                                   # procure / procure
    url = ensure_database("procure_quotes")         # postgresql+asyncpg://...
    drop_database("procure_quotes")

Command line (stdout is meant for ``eval``)::

    python -m procure_devstack.postgres setup [--databases quotes,inventory,...]
    # export QUOTES_DATABASE_URL=postgresql+asyncpg://procure:procure@127.0.0.1:5432/procure_quotes?ssl=disable
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_CLUSTER",
    "DEFAULT_PASSWORD",
    "DEFAULT_ROLE",
    "DEFAULT_VERSION",
    "Cluster",
    "PostgresError",
    "asyncpg_dsn",
    "check_connection",
    "cluster_status",
    "database_url",
    "drop_database",
    "ensure_cluster_running",
    "ensure_database",
    "ensure_role",
    "main",
    "with_database",
]

DEFAULT_VERSION = os.environ.get("PROCURE_PG_VERSION", "15")
DEFAULT_CLUSTER = os.environ.get("PROCURE_PG_CLUSTER", "main")
DEFAULT_ROLE = "procure"
DEFAULT_PASSWORD = "procure"
HOST = "127.0.0.1"

# Names go into SQL through psql's :"var" quoting, but a plain identifier keeps
# the printed URLs and env var names unsurprising.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """The cluster could not be started or a psql command failed."""


@dataclass(frozen=True)
class Cluster:
    """One row of ``pg_lsclusters``."""

    version: str
    name: str
    port: int
    status: str

    @property
    def online(self) -> bool:
        return self.status.startswith("online")


def _check_identifier(name: str, what: str) -> str:
    if not _IDENTIFIER.match(name):
        raise PostgresError(f"{what} {name!r} must match {_IDENTIFIER.pattern}")
    return name


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PostgresError(
            f"{tool} not found: install Debian's postgresql packages, or point "
            "<NAME>_DATABASE_URL at a server you run yourself"
        )
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return [_need("runuser"), "-u", "postgres", "--", *cmd]
    import pwd

    if pwd.getpwuid(os.geteuid()).pw_name == "postgres":
        return cmd
    raise PostgresError("administering the local cluster needs root (or the postgres user)")


def cluster_status(version: str = DEFAULT_VERSION, cluster: str = DEFAULT_CLUSTER) -> Cluster:
    """The cluster's port and status, from ``pg_lsclusters``."""
    out = subprocess.run(
        [_need("pg_lsclusters"), "--no-header"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise PostgresError(f"pg_lsclusters failed: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == version and fields[1] == cluster:
            return Cluster(version=fields[0], name=fields[1], port=int(fields[2]), status=fields[3])
    raise PostgresError(
        f"no PostgreSQL cluster {version}/{cluster} (pg_lsclusters lists: "
        f"{out.stdout.strip() or 'nothing'})"
    )


def _psql(
    script: str,
    *,
    dbname: str = "postgres",
    variables: dict[str, str] | None = None,
    port: int | None = None,
) -> str:
    """Run ``script`` (from stdin, so ``:'var'`` interpolation and ``\\gexec`` work)."""
    cmd = [_need("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", dbname]
    if port is not None:
        cmd += ["-p", str(port)]
    for key, value in (variables or {}).items():
        cmd += ["-v", f"{key}={value}"]
    result = subprocess.run(
        _as_postgres(cmd),
        input=script,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",  # runuser keeps the cwd, which postgres may not be allowed to read
    )
    if result.returncode != 0:
        raise PostgresError(f"psql failed (exit {result.returncode}): {result.stderr.strip()}")
    return result.stdout


def _accepts_connections(port: int) -> bool:
    try:
        _psql("SELECT 1;", port=port)
    except PostgresError:
        return False
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def ensure_cluster_running(
    version: str = DEFAULT_VERSION, cluster: str = DEFAULT_CLUSTER, timeout: float = 60.0
) -> Cluster:
    """Start the Debian cluster unless it is online; wait until it accepts connections.

    Idempotent. Returns the cluster (its ``port`` is what the URLs use).
    """
    status = cluster_status(version, cluster)
    if not status.online:
        result = subprocess.run(
            [_need("pg_ctlcluster"), version, cluster, "start"],
            capture_output=True,
            text=True,
            check=False,
        )
        # A concurrent caller may have started it between the two commands.
        if result.returncode != 0 and not cluster_status(version, cluster).online:
            raise PostgresError(
                f"pg_ctlcluster {version} {cluster} start failed (exit {result.returncode}): "
                f"{(result.stdout + result.stderr).strip()}"
            )
    deadline = time.monotonic() + timeout
    while not _accepts_connections(status.port):
        if time.monotonic() >= deadline:
            raise PostgresError(
                f"PostgreSQL {version}/{cluster} does not accept connections on port "
                f"{status.port} after {timeout:.0f}s"
            )
        time.sleep(0.25)
    return cluster_status(version, cluster)


def database_url(
    name: str,
    *,
    user: str = DEFAULT_ROLE,
    password: str = DEFAULT_PASSWORD,
    host: str = HOST,
    port: int = 5432,
) -> str:
    """The SQLAlchemy async URL the services take in ``<NAME>_DATABASE_URL``.

    To a cluster on this host, without TLS (``?ssl=disable``): asyncpg uses TLS whenever
    the server offers it, and Debian's cluster does, so every round trip was encrypted
    and decrypted on both ends of the loopback, which protects nothing. That was ~35 us
    of the service's CPU and ~15 us of PostgreSQL's a statement, about twice the
    client's cost of a small one (bench/levers.md, lever 41). Another host keeps
    asyncpg's default. The role and password are percent-encoded and an IPv6 host is
    bracketed, so any of them reads back as given."""
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    where = f"[{host}]" if ":" in host else host
    url = f"postgresql+asyncpg://{credentials}@{where}:{port}/{name}"
    return f"{url}?ssl=disable" if _is_loopback(host) else url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return False


def asyncpg_dsn(url: str) -> str:
    """``url`` as the services take it (SQLAlchemy's) as a DSN for ``asyncpg.connect``:
    the scheme without the driver, and ``ssl=`` (a keyword argument SQLAlchemy hands to
    ``asyncpg.connect``) as libpq's ``sslmode=``, which is what asyncpg reads in a DSN
    (it would send ``ssl`` to the server as a setting, and fail)."""
    parts = urlsplit(url)
    query = [("sslmode" if k == "ssl" else k, v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))


def with_database(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead, its options kept."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def ensure_role(
    role: str = DEFAULT_ROLE,
    password: str = DEFAULT_PASSWORD,
    *,
    createdb: bool = True,
    port: int | None = None,
) -> None:
    """Create the login role, or reset its password (and CREATEDB) if it exists.

    CREATEDB lets test fixtures make throwaway databases over TCP as this role.
    """
    _check_identifier(role, "role")
    extra = "CREATEDB" if createdb else "NOCREATEDB"
    script = f"""
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \\gexec
SELECT format('ALTER ROLE %I LOGIN {extra} PASSWORD %L', :'role', :'password') \\gexec
"""
    _psql(script, variables={"role": role, "password": password}, port=port)


def ensure_database(
    name: str,
    owner: str = DEFAULT_ROLE,
    *,
    password: str = DEFAULT_PASSWORD,
    port: int | None = None,
) -> str:
    """Create database ``name`` owned by ``owner`` unless it exists; return its URL.

    The owner role must exist (``ensure_role``); ``password`` is only used to
    build the URL. An existing database is handed to ``owner`` if needed.
    """
    _check_identifier(name, "database name")
    _check_identifier(owner, "owner")
    if port is None:
        port = cluster_status().port
    script = """
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'owner') \\gexec
"""
    variables = {"db": name, "owner": owner}
    try:
        _psql(script, variables=variables, port=port)
    except PostgresError as exc:
        # Two callers raced past the NOT EXISTS check; the loser retries once.
        if "already exists" not in str(exc) and "duplicate key" not in str(exc):
            raise
        _psql(script, variables=variables, port=port)
    return database_url(name, user=owner, password=password, port=port)


def drop_database(name: str, *, port: int | None = None) -> None:
    """Drop database ``name`` if it exists, disconnecting its sessions."""
    _check_identifier(name, "database name")
    _psql('DROP DATABASE IF EXISTS :"db" WITH (FORCE);', variables={"db": name}, port=port)


async def _check(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        await conn.execute("CREATE TEMP TABLE procure_setup_check (x int)")
    finally:
        await conn.close()


def check_connection(url: str) -> None:
    """Connect to ``url`` over TCP as the services will (raises on failure)."""
    try:
        asyncio.run(_check(url))
    except Exception as exc:
        raise PostgresError(f"cannot connect to {url}: {exc}") from exc


# ---------------------------------------------------------------------------- CLI


def _service_names() -> list[str]:
    from procure_runtime.settings import DEFAULT_PORTS

    return list(DEFAULT_PORTS)


def setup(
    services: Sequence[str], *, role: str = DEFAULT_ROLE, password: str = DEFAULT_PASSWORD
) -> dict[str, str]:
    """Start the cluster, create the role and ``procure_<service>`` per service.

    Returns ``{"<NAME>_DATABASE_URL": url}``.
    """
    cluster = ensure_cluster_running()
    ensure_role(role, password, port=cluster.port)
    env: dict[str, str] = {}
    for service in services:
        url = ensure_database(f"procure_{service}", role, password=password, port=cluster.port)
        check_connection(url)
        env[f"{service.upper()}_DATABASE_URL"] = url
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m procure_devstack.postgres",
        description="Start the local PostgreSQL cluster and create the services' databases.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    setup_p = sub.add_parser(
        "setup",
        help="start the cluster, create the role and a database per service; "
        "print `export <NAME>_DATABASE_URL=...` lines",
    )
    setup_p.add_argument(
        "--databases",
        default=",".join(_service_names()),
        help="comma-separated service names; each gets database procure_<service> "
        "(default: all six services)",
    )
    args = parser.parse_args(argv)

    services = [s.strip().lower() for s in args.databases.split(",") if s.strip()]
    if not services:
        parser.error("--databases needs at least one service name")
    try:
        env = setup(services)
    except PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, url in env.items():
        print(f"export {key}={url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
