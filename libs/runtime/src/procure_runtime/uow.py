"""The unit of work handed to handlers and routes: one DB transaction plus the events it
emits, which land in the outbox inside that same transaction."""

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import CloudEvent, new_event
from procure_contracts.registry import EventSpec
from procure_contracts.shapes import Shape


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

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name

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
