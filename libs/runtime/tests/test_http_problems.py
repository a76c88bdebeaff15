"""The HTTP layer's problem+json for what the database refuses: bad input is a 4xx, never
a 500, and leaves nothing behind."""

from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy import Column, Integer, Numeric, String, Table, func, select

from procure_runtime.db import Database, new_metadata
from procure_runtime.http import install_problem_handlers

metadata = new_metadata()
rows = Table(
    "rows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code", String(5)),
    Column("amount", Numeric(18, 2)),
    Column("units", Integer),
)


async def test_a_value_the_database_refuses_as_data_is_a_422_not_a_500(postgres_url) -> None:
    """On PostgreSQL, SQLAlchemy's asyncpg adapter raises a data exception (SQLSTATE class
    22) as a plain `DBAPIError`: without the mapping it reached the catch-all as a 500. A
    value asyncpg cannot encode raises before the server sees it."""
    db = Database(postgres_url("problems"))
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/rows")
    async def add(body: dict[str, str | int]) -> dict[str, str]:
        async with db.session() as session:
            await session.execute(rows.insert(), [{"code": "first"}])  # undone with the rest
            values = {k: Decimal(v) if k == "amount" else v for k, v in body.items()}
            await session.execute(rows.insert().values(**values))
            await session.commit()
        return {"status": "ok"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            for body in (
                {"code": "too long"},  # 22001
                {"amount": "1e20"},  # 22003: over Numeric(18, 2)
                {"units": 2**40},  # 22000 from the driver: out of int32 range
                {"amount": "1E+300000"},  # asyncpg cannot encode it (its adapter says 22000)
            ):
                response = await http.post("/rows", json=body)
                assert response.status_code == 422, (body, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                assert response.json()["type"].endswith("invalid"), response.json()
            async with db.session() as session:  # no partial change
                assert await session.scalar(select(func.count()).select_from(rows)) == 0
            assert (await http.post("/rows", json={"code": "fits"})).status_code == 200
    finally:
        await db.dispose()
