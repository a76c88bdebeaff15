"""The notifier's Kafka handlers: two keep the stakeholder directory, one per trigger of
section 6 queues the emails it causes (never sends them: the sender does)."""

from collections.abc import Callable, Iterable
from typing import Any

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Product
from procure_notifier import directory
from procure_notifier.domain import (
    ChargeInfo,
    Item,
    Mail,
    Notice,
    address_key,
    item_of,
    mails_for,
    product_label,
    stakeholders,
    team_mails,
)
from procure_notifier.domain import NotificationType as T
from procure_notifier.models import metadata
from procure_notifier.notifications import is_enabled, record
from procure_runtime import Applying, EventHandlers, Park, UnitOfWork
from procure_runtime.replica import replicate

handlers = EventHandlers()
# The purchasing team's current setting is replicated (the registry lists the notifier as
# a consumer of `settings.procurement`) for ops to inspect, but recipients come from
# `approval.requested` / `charge.forwarded`, which carry the team in force at the time.
replicate(handlers, metadata, "settings")


def _product(product: Product) -> str:
    return product_label(product.name, product.sku)


def _queue_item(
    data: ev.ApprovalRequestedV1 | ev.ChargeForwardedV1, known: dict[str, ChargeInfo]
) -> Item:
    """The line for a charge on its way to the queue, with its parent from the directory
    (those events do not carry it)."""
    return Item(
        _product(data.product),
        data.quantity,
        data.charge_id,
        known[data.charge_id].parent,
        data.sales_order_id,
    )


async def _known(uow: UnitOfWork, charge_ids: Iterable[str]) -> dict[str, ChargeInfo]:
    """The charges an event names; parks the event until every one of them is known, and
    so is the sales order each names. Topics are not ordered with each other: a direct
    charge (`charge.created`) can come before the `opportunity.won` of its sales order,
    and a mail made meanwhile would miss that order's owner for good."""
    wanted = set(charge_ids)
    known = await directory.charge_infos(uow.session, wanted)
    if missing := sorted(wanted - known.keys()):
        raise Park(f"charges not seen yet (opportunity.won / charge.created): {missing}")
    if orders := sorted({str(c.sales_order_id) for c in known.values() if not c.order_known}):
        raise Park(f"sales orders not seen yet (opportunity.won): {orders}")
    return known


Lines = list[tuple[str, int]]  # (charge id, quantity)


async def _tell_stakeholders(
    items: list[Applying],
    kind: T,
    notice_of: Callable[[Any], tuple[Notice, Lines] | None],
) -> None:
    """A run of one trigger's events: each stakeholder of an event's charges gets one mail
    with their lines. The setting is read and the charges looked up once a run (the run
    parks until every charge is known: one at a time, only the event naming it does)."""
    told = [(i, found) for i in items if (found := notice_of(i.data)) is not None]
    if not told or not await is_enabled(items[0].uow.session, kind):
        return
    known = await _known(items[0].uow, (c for _, (_, lines) in told for c, _ in lines))
    for i, (notice, lines) in told:
        mails = mails_for(
            (item_of(known[c], quantity, notice.po_number), stakeholders(known[c]))
            for c, quantity in lines
        )
        await record(i.uow, i.event, notice, mails)


# --- the stakeholder directory ---------------------------------------------------------


@handlers.on_batch(spec_for_topic("opportunity.won"))
async def on_opportunity_won(items: list[Applying]) -> None:
    await directory.record_won(items[0].uow, [(i.data, i.event.id) for i in items])


@handlers.on_batch(spec_for_topic("charge.created"))
async def on_charge_created(items: list[Applying]) -> None:
    await directory.record_charges(
        items[0].uow, [(i.data.charge, i.data.sales_order_id, i.event.id) for i in items]
    )


# --- triggers (section 6) --------------------------------------------------------------


@handlers.on_batch(spec_for_topic("approval.requested"))
async def on_approval_requested(items: list[Applying]) -> None:
    """The purchasing team named in the event is told; a run looks up its charges (for
    their parents, if known) in one query."""
    if not await is_enabled(items[0].uow.session, T.APPROVAL_REQUESTED):
        return
    known = await _known(items[0].uow, [i.data.charge_id for i in items])
    for i in items:
        data: ev.ApprovalRequestedV1 = i.data
        notice = Notice(
            T.APPROVAL_REQUESTED,
            "Waiting Approval",
            sales_order_id=data.sales_order_id,
            details=(
                ("Extended cost", str(data.extended_cost)),
                ("Approval threshold", str(data.threshold)),
            ),
        )
        await record(
            i.uow, i.event, notice, team_mails(data.purchasing_team, [_queue_item(data, known)])
        )


@handlers.on_batch(spec_for_topic("approval.decided"))
async def on_approval_decided(items: list[Applying]) -> None:
    await _tell_stakeholders(items, T.APPROVAL_DECIDED, _decided)


def _decided(data: ev.ApprovalDecidedV1) -> tuple[Notice, Lines]:
    status = "Approved, Need to Order/Fulfill" if data.approved else "Rejected, Canceled"
    details = [("Decision", "approved" if data.approved else "rejected")]
    details.append(("Decided by", data.decided_by.name))
    if data.note:
        details.append(("Note", data.note))
    notice = Notice(T.APPROVAL_DECIDED, status, details=tuple(details))
    return notice, [(data.charge_id, data.quantity)]


@handlers.on_batch(spec_for_topic("charge.forwarded"))
async def on_charge_forwarded(items: list[Applying]) -> None:
    """The team in the event is the setting in force when purchasing queued the units.
    A run looks its charges up in one query."""
    if not await is_enabled(items[0].uow.session, T.FORWARDED_TO_PURCHASING):
        return
    told = [i for i in items if i.data.purchasing_team]
    known = await _known(items[0].uow, [i.data.charge_id for i in told])
    for i in told:
        data: ev.ChargeForwardedV1 = i.data
        item = _queue_item(data, known)
        notice = Notice(
            T.FORWARDED_TO_PURCHASING, "Need to Order/Fulfill", sales_order_id=data.sales_order_id
        )
        await record(i.uow, i.event, notice, team_mails(data.purchasing_team, [item]))


@handlers.on_batch(spec_for_topic("po.submitted"))
async def on_po_submitted(items: list[Applying]) -> None:
    await _tell_stakeholders(items, T.ON_ORDER, _on_order)


def _on_order(data: ev.POSubmittedV1) -> tuple[Notice, Lines] | None:
    lines = [(line.charge_id, line.quantity) for line in data.lines if line.charge_id]
    if not lines:
        return None  # a PO of stock lines only concerns no stakeholder
    notice = Notice(
        T.ON_ORDER,
        "On Order",
        po_number=data.po.number,
        details=(("Vendor", data.po.vendor.name), ("Submitted by", data.submitted_by.name)),
    )
    return notice, lines


@handlers.on_batch(spec_for_topic("units.received"))
async def on_units_received(items: list[Applying]) -> None:
    await _tell_stakeholders(items, T.RECEIVED, _received)


def _received(data: ev.UnitsReceivedV1) -> tuple[Notice, Lines] | None:
    """Drop-ship receipts are announced by the `shipment.delivered` that follows them."""
    lines = [(line.charge_id, line.quantity) for line in data.lines if line.charge_id]
    if data.drop_ship or not lines:
        return None
    notice = Notice(
        T.RECEIVED,
        "Ready to Deliver/Ship",
        po_number=data.number,
        details=(("PO status", data.po_status), ("Received by", data.received_by.name)),
    )
    return notice, lines


@handlers.on_batch(spec_for_topic("shipment.delivered"))
async def on_shipment_delivered(items: list[Applying]) -> None:
    await _tell_stakeholders(items, T.DELIVERED, _delivered)


def _delivered(data: ev.ShipmentDeliveredV1) -> tuple[Notice, Lines]:
    to = data.destination
    notice = Notice(
        T.DELIVERED,
        "Delivered/Shipped",
        po_number=data.po_number if data.drop_ship else None,
        details=(
            ("Destination", f"{to.name}, {to.line1}, {to.postal_code} {to.city}, {to.country}"),
            ("Delivered by", data.delivered_by.name),
            ("Drop-ship", "yes" if data.drop_ship else "no"),
        ),
    )
    return notice, [(i.charge_id, i.quantity) for i in data.items]


@handlers.on_batch(spec_for_topic("shipment.canceled"))
async def on_shipment_canceled(items: list[Applying]) -> None:
    await _tell_stakeholders(items, T.DELIVERY_CANCELED, _canceled)


def _canceled(data: ev.ShipmentCanceledV1) -> tuple[Notice, Lines]:
    details = [("Canceled by", data.canceled_by.name)]
    if data.reason:
        details.append(("Reason", data.reason))
    notice = Notice(
        T.DELIVERY_CANCELED, "Delivery canceled, Ready to Deliver/Ship", details=tuple(details)
    )
    return notice, [(i.charge_id, i.quantity) for i in data.items]


@handlers.on_batch(spec_for_topic("salesorder.ready_to_fulfill"))
async def on_ready_to_fulfill(items: list[Applying]) -> None:
    """Only the owner is told (the event names them), with the order's charges: it waits
    until the directory has the sales order, whose `opportunity.won` may come after it,
    and each charge the event names (`charge_ids`), so the mail lists those whatever
    order their own events came in. Without them (an older producer's event): the
    charges the directory has for the order. A run reads its charges in one query."""
    session = items[0].uow.session
    if not await is_enabled(session, T.READY_TO_FULFILL):
        return
    so_ids = [i.data.sales_order_id for i in items]
    if missing := sorted(set(so_ids) - await directory.known_sales_orders(session, so_ids)):
        raise Park(f"sales orders not seen yet (opportunity.won): {missing}")
    known = await _known(items[0].uow, {c for i in items for c in i.data.charge_ids or ()})
    unnamed = [i.data.sales_order_id for i in items if i.data.charge_ids is None]
    charges = await directory.sales_orders_charges(session, unnamed) if unnamed else {}
    for i in items:
        data: ev.SalesOrderReadyToFulfillV1 = i.data
        of_order = (
            [known[cid] for cid in dict.fromkeys(data.charge_ids)]
            if data.charge_ids is not None
            else charges.get(data.sales_order_id, [])
        )
        lines = [item_of(c, c.quantity) for c in of_order]
        mail = Mail(address_key(data.owner.email), data.owner.name, lines)
        notice = Notice(T.READY_TO_FULFILL, "Ready to Fulfill", sales_order_id=data.sales_order_id)
        await record(i.uow, i.event, notice, [mail])
