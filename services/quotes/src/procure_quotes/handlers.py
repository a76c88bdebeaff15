"""Quotes' Kafka handlers: one thin function per event type."""

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Address, ChargeSpec, Organization
from procure_contracts.status import SalesOrderStatus
from procure_runtime import EventHandlers, Reject, UnitOfWork
from procure_runtime.logging import get_logger
from sqlalchemy import select

from procure_quotes.domain import ReservationsExceedQuantity, extended_cost, route_charge
from procure_quotes.models import charges, sales_orders

log = get_logger("procure.quotes")
handlers = EventHandlers()

OPPORTUNITY_WON = spec_for_topic("opportunity.won")
CHARGE_CREATED = spec_for_topic("charge.created")
CHARGE_READY = spec_for_topic("charge.ready")
CHARGE_NEED_ORDER = spec_for_topic("charge.need_order")


@handlers.on(OPPORTUNITY_WON)
async def on_opportunity_won(uow: UnitOfWork, data: ev.OpportunityWonV1, event: CloudEvent) -> None:
    so = data.sales_order
    if await uow.session.scalar(select(sales_orders.c.id).where(sales_orders.c.id == so.id)):
        log.info("sales order exists already; event ignored", sales_order_id=so.id)
        return
    await uow.session.execute(
        sales_orders.insert().values(
            id=so.id,
            opportunity_id=data.opportunity.id,
            status=SalesOrderStatus.NEW,
            owner=so.owner.model_dump(mode="json"),
            organization=data.organization.model_dump(mode="json"),
            ship_to=so.ship_to.model_dump(mode="json"),
        )
    )
    for charge in data.charges:
        await create_charge(
            uow,
            charge,
            data.organization,
            charge.ship_to or so.ship_to,
            so.id,
            data.opportunity.id,
            event,
        )


@handlers.on(CHARGE_CREATED)
async def on_charge_created(uow: UnitOfWork, data: ev.ChargeCreatedV1, event: CloudEvent) -> None:
    destination = data.charge.ship_to or data.ship_to
    await create_charge(
        uow, data.charge, data.organization, destination, data.sales_order_id, None, event
    )


async def create_charge(
    uow: UnitOfWork,
    charge: ChargeSpec,
    organization: Organization,
    destination: Address,
    sales_order_id: str | None,
    opportunity_id: str | None,
    event: CloudEvent,
) -> None:
    """Store a charge once and route its units (R3/R4) through the outbox."""
    if await uow.session.scalar(select(charges.c.id).where(charges.c.id == charge.id)):
        log.info("charge exists already; ignored", charge_id=charge.id)
        return
    try:
        routing = route_charge(
            charge.quantity,
            charge.product.subject_to_procurement,
            [r.quantity for r in charge.reservations],
        )
    except ReservationsExceedQuantity as exc:
        raise Reject(f"charge {charge.id}: {exc}") from None
    await uow.session.execute(
        charges.insert().values(
            id=charge.id,
            sales_order_id=sales_order_id,
            opportunity_id=opportunity_id,
            quote_item_id=charge.quote_item_id,
            parent=charge.parent.model_dump(mode="json"),
            owner=charge.owner.model_dump(mode="json"),
            product=charge.product.model_dump(mode="json"),
            organization=organization.model_dump(mode="json"),
            destination=destination.model_dump(mode="json"),
            quantity=charge.quantity,
            unit_price=charge.unit_price,
            routed_ready=routing.ready,
            routed_awaiting_pick=routing.awaiting_pick,
            routed_to_procurement=routing.to_procurement,
            created_by_event=event.id,
        )
    )
    correlation = sales_order_id or charge.id
    if routing.ready:
        uow.emit(
            CHARGE_READY,
            ev.ChargeReadyV1(
                charge_id=charge.id,
                sales_order_id=sales_order_id,
                product=charge.product,
                quantity=routing.ready,
                destination=destination,
            ),
            correlationid=correlation,
        )
    if routing.to_procurement:
        uow.emit(
            CHARGE_NEED_ORDER,
            ev.ChargeNeedOrderV1(
                charge_id=charge.id,
                sales_order_id=sales_order_id,
                product=charge.product,
                quantity=routing.to_procurement,
                extended_cost=extended_cost(routing.to_procurement, charge.product.unit_cost),
                organization=organization,
                destination=destination,
            ),
            correlationid=correlation,
        )
