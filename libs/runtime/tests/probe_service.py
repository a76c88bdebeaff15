"""A tiny service used to test the runtime on the real broker: it stores charges from
`charge.created` (and a note, deferred) and emits `charge.ready`; `charge.ready` for a charge it has not seen
parks; `units.picked` always fails."""

from typing import Any

from sqlalchemy import Column, Integer, SmallInteger, String, Table, func, select

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_runtime import Applying, EventHandlers, Park, ServiceRuntime, UnitOfWork
from procure_runtime.db import new_metadata
from procure_runtime.http import create_app
from procure_runtime.settings import ServiceSettings

CREATED = spec_for_topic("charge.created")
READY = spec_for_topic("charge.ready")
PICKED = spec_for_topic("units.picked")

metadata = new_metadata()
charges = Table(  # a 16-bit quantity: one the contract allows can be too large for it
    "charges",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("quantity", SmallInteger),
)
readies = Table(
    "readies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("charge_id", String(200)),
    Column("event_id", String(200)),
)
notes = Table(  # written with `insert_later`, like quotes' history lines
    "notes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("charge_id", String(200), unique=True),
)
handlers = EventHandlers()


RUNS: list[list[str]] = []  # the charge ids of each run `on_created` was handed


@handlers.on_batch(CREATED)
async def on_created(items: list[Applying]) -> None:
    """A batch handler: the run's charges in one statement."""
    RUNS.append([i.data.charge.id for i in items])
    await items[0].uow.session.execute(
        charges.insert(),
        [{"id": i.data.charge.id, "quantity": i.data.charge.quantity} for i in items],
    )
    for item in items:
        data = item.data
        item.uow.insert_later(notes, charge_id=data.charge.id)
        item.uow.emit(
            READY,
            ev.ChargeReadyV1(
                charge_id=data.charge.id,
                product=data.charge.product,
                quantity=data.charge.quantity,
                destination=data.ship_to,
            ),
        )


@handlers.on(READY)
async def on_ready(uow: UnitOfWork, data: ev.ChargeReadyV1, event: CloudEvent) -> None:
    await uow.session.execute(readies.insert().values(charge_id=data.charge_id, event_id=event.id))
    if not await uow.session.scalar(select(charges.c.id).where(charges.c.id == data.charge_id)):
        raise Park(f"charge {data.charge_id} not seen yet")  # the insert above is rolled back


@handlers.on(PICKED)
async def on_picked(uow: UnitOfWork, data: Any, event: CloudEvent) -> None:
    raise RuntimeError("this handler always fails")


def build(settings: ServiceSettings) -> tuple[Any, ServiceRuntime]:
    runtime = ServiceRuntime(
        "probe", metadata, None, handlers, publishes=[READY], settings=settings
    )
    return create_app(runtime), runtime


async def count(runtime: ServiceRuntime, table: Table, **where: str) -> int:
    async with runtime.db.session() as session:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(table.c[column] == value)
        return int(await session.scalar(query) or 0)
