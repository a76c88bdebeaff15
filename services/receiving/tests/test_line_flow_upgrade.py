"""Upgrading receiving to correlate each PO line with its own flow (migration 0003): a
line stored before keeps its PO's flow, what its receipts and close published until
then, so a PO half received across the upgrade goes on publishing as it did."""

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, text

import procure_receiving
from procure_receiving.models import po_lines
from procure_runtime import migrate
from procure_runtime.db import Database

MIGRATIONS = Path(procure_receiving.__file__).parent / "migrations"


async def test_lines_stored_before_the_upgrade_keep_their_pos_flow(
    database_url: Callable[[str], str],
) -> None:
    db = Database(database_url("line_flow_upgrade"))
    try:
        await migrate.upgrade(db, MIGRATIONS, "0002")
        async with db.engine.begin() as conn:
            for po, flow in (("po-1", "so-1"), ("po-2", None)):
                await conn.execute(
                    text(
                        "INSERT INTO purchase_orders (id, number, vendor, ship_to, drop_ship,"
                        " status, submitted_by, correlation_id, submitted_at)"
                        " VALUES (:id, :id, '{}', '{}', false, 'Submitted', '{}', :flow,"
                        " CURRENT_TIMESTAMP)"
                    ),
                    {"id": po, "flow": flow},
                )
                await conn.execute(
                    text(
                        "INSERT INTO po_lines (po_id, line_id, position, charge_id, product,"
                        " unit_cost, ordered, received, closed, closed_quantity)"
                        " VALUES (:po, 'ln-1', 0, 'ch-1', '{}', '1.00', 2, 0, false, 0)"
                    ),
                    {"po": po},
                )
        await migrate.upgrade(db, MIGRATIONS)
        async with db.engine.connect() as conn:
            flows = dict(
                (await conn.execute(select(po_lines.c.po_id, po_lines.c.correlation_id))).all()
            )
        assert flows == {"po-1": "so-1", "po-2": None}
    finally:
        await db.dispose()
