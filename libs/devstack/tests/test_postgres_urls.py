"""The local cluster's URLs: no TLS over loopback (each round trip paid for it on both
ends), asyncpg's default elsewhere; and the same URL usable by asyncpg itself."""

from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from procure_devstack import postgres
from procure_runtime.db import Database


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_cluster_on_this_host_is_reached_without_tls(host: str) -> None:
    url = postgres.database_url("procure_quotes", host=host, port=5432)
    assert url.endswith("/procure_quotes?ssl=disable")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "fd00::5", "db.internal"])
def test_the_url_reads_back_as_given(host: str) -> None:
    """An IPv6 host is bracketed and a password's reserved characters are escaped, so
    SQLAlchemy (the services) and asyncpg (the tools) read what was meant."""
    url = postgres.database_url("procure_x", user="app", password="p@ss/w:rd?#", host=host)
    parsed = make_url(url)
    assert (parsed.host, parsed.port, parsed.database) == (host, 5432, "procure_x")
    assert (parsed.username, parsed.password) == ("app", "p@ss/w:rd?#")


def test_a_cluster_elsewhere_keeps_asyncpgs_default() -> None:
    url = postgres.database_url("procure_quotes", host="db.internal", port=5432)
    assert url == "postgresql+asyncpg://procure:procure@db.internal:5432/procure_quotes"


def test_asyncpg_reads_the_tls_choice_as_libpqs_sslmode() -> None:
    dsn = postgres.asyncpg_dsn("postgresql+asyncpg://u:p@127.0.0.1:5432/db?ssl=disable")
    assert dsn == "postgresql://u:p@127.0.0.1:5432/db?sslmode=disable"
    assert postgres.asyncpg_dsn("postgresql+asyncpg://u:p@h:1/db") == "postgresql://u:p@h:1/db"


def test_another_database_keeps_the_urls_options() -> None:
    url = "postgresql+asyncpg://u:p@127.0.0.1:5432/procure?ssl=disable"
    assert postgres.with_database(url, "test_x") == (
        "postgresql+asyncpg://u:p@127.0.0.1:5432/test_x?ssl=disable"
    )


async def _tls_of(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))


@pytest.mark.postgres
async def test_services_and_tools_talk_to_the_local_cluster_in_the_clear(
    postgres_url: Callable[[str], str],
) -> None:
    url = postgres_url("tls")
    db = Database(url)  # as a service connects
    try:
        async with db.engine.connect() as conn:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            assert (await conn.execute(text(query))).scalar() is False
            server_offers_tls = (await conn.execute(text("SHOW ssl"))).scalar() == "on"
    finally:
        await db.dispose()
    conn = await asyncpg.connect(postgres.asyncpg_dsn(url))  # as the tools connect
    try:
        assert await _tls_of(conn) is False
    finally:
        await conn.close()
    if not server_offers_tls:  # then "in the clear" is no choice of ours (in CI: a failure)
        pytest.skip("the server offers no TLS: nothing was turned off")
    plain = postgres.asyncpg_dsn(url).split("?")[0]  # the control: asyncpg would use it
    conn = await asyncpg.connect(plain)
    try:
        assert await _tls_of(conn) is True
    finally:
        await conn.close()
