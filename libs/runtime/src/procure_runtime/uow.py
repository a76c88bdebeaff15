"""The unit of work handed to handlers and routes: one DB transaction plus the events it
emits, which land in the outbox inside that same transaction."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import CloudEvent, new_event
from procure_contracts.registry import EventSpec
from procure_contracts.shapes import Shape
from procure_runtime.db import dialect_of


@dataclass
class Outgoing:
    spec: EventSpec
    event: CloudEvent
    key: str


@dataclass
class UnitOfWork:
    session: AsyncSession
    source: str
    cause: CloudEvent | None = None
    outgoing: list[Outgoing] = field(default_factory=list)
    # Insert-or-ignore rows written when the unit of work ends (see `insert_later`).
    deferred: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)

    @property
    def dialect(self) -> str:
        return dialect_of(self.session)

    def emit(
        self,
        spec: EventSpec,
        data: Shape,
        *,
        correlationid: str | None = None,
        subject: str | None = None,
    ) -> CloudEvent:
        """Record an event to publish once (and only if) this transaction commits.
        `correlationid` defaults to the cause's; `causationid` is the cause's id."""
        key = spec.key_of(data)
        event = new_event(
            spec.type,
            data,
            source=self.source,
            subject=subject or key,
            correlationid=correlationid or (self.cause.correlationid if self.cause else None),
            causationid=self.cause.id if self.cause else None,
        )
        self.outgoing.append(Outgoing(spec, event, key))
        return event

    def insert_later(self, table: Table, **row: Any) -> None:
        """Insert-or-ignore `row` when the unit of work ends, in one statement with every
        other deferred row of `table` (of the whole batch, for consumers): for rows that
        nothing reads back in the same transaction and whose insert has no outcome to
        check (history lines). Rows are written in the order they were deferred."""
        self.deferred.append((table, row))


def deferred_rows(uows: Iterable[UnitOfWork]) -> dict[Table, list[dict[str, Any]]]:
    """The deferred rows of `uows` by table (in first-use order), each table's in the
    order they were deferred."""
    by_table: dict[Table, list[dict[str, Any]]] = {}
    for uow in uows:
        for table, row in uow.deferred:
            by_table.setdefault(table, []).append(row)
    return by_table
