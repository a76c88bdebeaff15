"""Money amounts are exact to the cent on both databases (`MoneyAmount`): SQLite has no
decimal type, and SQLAlchemy stored a Decimal there as a float, so an amount of 16
significant digits or more came back changed, the contract's largest beyond its own
bound. Both round an amount of more decimals half away from zero, as PostgreSQL does."""

from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, Table, insert, select, text

import procure_inventory
from procure_inventory.models import products
from procure_runtime import migrate
from procure_runtime.db import Database, MoneyAmount, insert_many, new_metadata

metadata = new_metadata()
amounts = Table(
    "amounts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("amount", MoneyAmount(), nullable=True),
)

GIVEN_AND_STORED = [
    ("0.10", "0.10"),
    ("12.5", "12.50"),
    ("2.675", "2.68"),
    ("-2.675", "-2.68"),
    ("2.665", "2.67"),
    ("99999999999999.99", "99999999999999.99"),
    ("1234567890123456.78", "1234567890123456.78"),
    ("9999999999999999.99", "9999999999999999.99"),
    ("-9999999999999999.99", "-9999999999999999.99"),
]


@pytest.mark.parametrize("bulk", [False, True], ids=["insert", "insert_many"])
async def test_an_amount_comes_back_as_it_was_stored_to_the_cent(database_url, bulk) -> None:
    db = Database(database_url("money"))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        rows = [
            {"id": n, "amount": Decimal(given)} for n, (given, _) in enumerate(GIVEN_AND_STORED)
        ]
        rows.append({"id": len(rows), "amount": None})
        async with db.session() as session:
            if bulk:  # on PostgreSQL, one array per column (`insert_many`'s own path)
                await insert_many(session, amounts, rows)
            else:
                await session.execute(insert(amounts), rows)
        async with db.session() as session:
            got = (await session.execute(select(amounts.c.amount).order_by(amounts.c.id))).all()
    finally:
        await db.dispose()
    assert [str(a) if a is not None else None for (a,) in got] == [
        *(stored for _, stored in GIVEN_AND_STORED),
        None,
    ]


async def test_amounts_stored_before_the_upgrade_read_the_same_after_it(
    database_url, db_backend
) -> None:
    """On SQLite the upgrade turns the floats stored until then into whole cents."""
    location = Path(procure_inventory.__file__).parent / "migrations"
    db = Database(database_url("money_upgrade"))
    try:
        await migrate.upgrade(db, location, "0008")
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO products (id, sku, name, is_inventory, subject_to_procurement,"
                    " serialized, unit_cost, unit_price, updated_at) VALUES"
                    " ('p-1', 's', 'n', true, true, false, 12.5, 1234.56, CURRENT_TIMESTAMP)"
                )
            )
        await migrate.upgrade(db, location)
        async with db.session() as session:
            cost, price = (
                await session.execute(select(products.c.unit_cost, products.c.unit_price))
            ).one()
    finally:
        await db.dispose()
    assert (str(cost), str(price)) == ("12.50", "1234.56")
