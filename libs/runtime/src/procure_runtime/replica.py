"""Local replicas of another service's compacted topics (products, vendors, locations,
procurement settings): the latest document per key, kept by the runtime so that a
service can validate references without calling anyone."""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import JSON, Column, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import CloudEvent
from procure_contracts.registry import EventSpec, spec_for_topic
from procure_contracts.shapes import Shape
from procure_runtime.consumer import EventHandlers
from procure_runtime.db import UTCDateTime, among, dialect_of, upsert_insert, utcnow
from procure_runtime.uow import UnitOfWork

KINDS = {
    "products": "catalog.products",
    "vendors": "catalog.vendors",
    "locations": "catalog.locations",
    "settings": "settings.procurement",
}


def _table_name(kind: str) -> str:
    return f"replica_{kind}"


def replica_tables(metadata: MetaData, *kinds: str) -> None:
    """Declare a replica table per kind (in `models.py`, so migrations see it)."""
    for kind in kinds:
        Table(
            _table_name(kind),
            metadata,
            Column("id", String(200), primary_key=True),
            Column("doc", JSON, nullable=False),
            Column("event_id", String(200), nullable=False),
            Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
        )


def replicate(handlers: EventHandlers, metadata: MetaData, *kinds: str) -> None:
    """Register the handlers that keep the replica tables current (in `handlers.py`)."""
    for kind in kinds:
        spec = spec_for_topic(KINDS[kind])
        handlers.on(spec)(_upsert_into(metadata.tables[_table_name(kind)], spec))


def add_replicas(metadata: MetaData, handlers: EventHandlers, *kinds: str) -> None:
    """Both at once, for services that declare tables and handlers in one place."""
    replica_tables(metadata, *kinds)
    replicate(handlers, metadata, *kinds)


def _upsert_into(table: Table, spec: EventSpec) -> Any:
    async def upsert(uow: UnitOfWork, data: Shape, event: CloudEvent) -> None:
        values = {
            "id": spec.key_of(data),
            "doc": data,
            "event_id": event.id,
            "updated_at": utcnow(),
        }
        stmt = upsert_insert(table, uow.dialect).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={
                "doc": stmt.excluded.doc,
                "event_id": stmt.excluded.event_id,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        await uow.session.execute(stmt)

    upsert.__name__ = f"replicate_{table.name}"
    return upsert


async def get(
    session: AsyncSession, metadata: MetaData, kind: str, id_: str
) -> dict[str, Any] | None:
    """The latest document of `kind` with this id, or None when not replicated (yet)."""
    table = metadata.tables[_table_name(kind)]
    return await session.scalar(select(table.c.doc).where(table.c.id == id_))


async def get_many(
    session: AsyncSession, metadata: MetaData, kind: str, ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """`get` for many ids in one query: the documents replicated so far, by id."""
    table = metadata.tables[_table_name(kind)]
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(table.c.id, table.c.doc).where(among(table.c.id, wanted, dialect_of(session)))
    )
    return {row.id: row.doc for row in rows}


async def get_all(session: AsyncSession, metadata: MetaData, kind: str) -> list[dict[str, Any]]:
    table = metadata.tables[_table_name(kind)]
    return list((await session.scalars(select(table.c.doc).order_by(table.c.id))).all())
