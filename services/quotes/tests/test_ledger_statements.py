"""The reads a bulk event makes (ledgers, their PO lines and approvals, the sales orders
and their charges) are statements built once, their lists of ids given at execution."""

from typing import Any

from sqlalchemy import Select, event, text

from procure_quotes import ledger
from procure_quotes.models import metadata
from procure_runtime import UnitOfWork
from procure_runtime.db import Database


async def test_a_bulk_events_reads_are_built_once(database_url) -> None:
    db = Database(database_url("ledger_reads"))
    ran: list[Any] = []

    @event.listens_for(db.engine.sync_engine, "before_execute")
    def seen(conn, clauseelement, multiparams, params, execution_options) -> None:
        if isinstance(clauseelement, Select):
            ran.append(clauseelement)

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        ran.clear()
        for n in range(2):  # two events: different ids, the same statements
            async with db.session() as session:
                uow = UnitOfWork(session, "quotes")
                assert await ledger.load(session, [f"ch-{n}", f"ch-{n}b"]) == {}
                assert await ledger.load(session, [f"ch-{n}"], whole=True, lock=False) == {}
                assert await ledger.lines_of(session, [f"ch-{n}"]) == {f"ch-{n}": ([], [])}
                await ledger.refresh_sales_orders(uow, [f"so-{n}"])
    finally:
        await db.dispose()
    first, second = ran[: len(ran) // 2], ran[len(ran) // 2 :]
    # Each load reads the charges, their PO lines and approvals; the refresh reads the
    # orders and their charges.
    assert len(first) == 3 + 3 + 2 + 2
    assert all(a is b for a, b in zip(first, second, strict=True))


async def test_a_ledgers_lookups_are_planned_for_the_ids_they_are_given(postgres_url) -> None:
    """PostgreSQL plans a prepared statement once for any parameters (a generic plan)
    after five runs, and keeps that plan. Made while `charge_po_lines` is nearly empty
    (a first deployment, its backlog filling the table), the plan scans the table, and
    each batch then tests every row against its few hundred ids: 80 to 130 ms a batch at
    10,000 rows (bench/levers.md, lever 63). The ledger's lookups are planned for each
    list of ids instead."""
    db = Database(postgres_url("ledger_plans"))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        async with db.session() as session:
            for n in range(8):
                await ledger.load(session, [f"ch-{n}", f"ch-{n}b"])
            plans = (
                await session.execute(
                    text(
                        "SELECT statement, generic_plans, custom_plans "
                        "FROM pg_prepared_statements WHERE statement LIKE 'SELECT %'"
                    )
                )
            ).all()
    finally:
        await db.dispose()
    lookups = {
        table: (generic, custom)
        for statement, generic, custom in plans
        for table in ("charges", "charge_po_lines", "approvals")
        if f"FROM {table} " in statement
    }
    assert lookups == {t: (0, 8) for t in ("charges", "charge_po_lines", "approvals")}
