"""Fault: a consumer group reset to the earliest offset re-reads everything, and nothing
changes — no state, no outgoing event (the inbox absorbs every redelivery)."""

from decimal import Decimal

import pytest

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token
from procure_quotes.app import build

pytestmark = [pytest.mark.kafka, pytest.mark.faults(checks=("lost", "duplicates", "dead_letters"))]
T = spec_for_topic
CHARGES = 20


async def _views(http, headers, so_ids):
    return [(await http.get(f"/sales-orders/{so}", headers=headers)).json() for so in so_ids]


async def test_reset_to_earliest_changes_nothing(service_settings) -> None:
    settings = service_settings("quotes")
    person = f.person("Ann Approver")
    wins = [f.opportunity_won(f.charge(f.product(unit_cost="10.00"), 2)) for _ in range(CHARGES)]
    headers = {"Authorization": f"Bearer {token(settings, 'sales')}"}
    async with KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka:
        app, runtime = build(settings)
        async with running(app, runtime) as http:
            for i, won in enumerate(wins):
                charge = won.charges[0]
                await kafka.publish(T("opportunity.won"), won)
                await kafka.publish(
                    T("po.submitted"),
                    ev.POSubmittedV1(
                        po=ev.PORef(
                            id=f"po-{i}",
                            number=f"PO-{i:06d}",
                            vendor=f.vendor(),
                            ship_to=ev.POShipTo(kind="location", location_id="loc"),
                        ),
                        lines=[
                            ev.POLine(
                                line_id=f"l-{i}",
                                charge_id=charge.id,
                                product=charge.product,
                                quantity=2,
                                unit_cost=Decimal("10.00"),
                            )
                        ],
                        submitted_by=person,
                    ),
                )
                await kafka.publish(
                    T("units.received"),
                    ev.UnitsReceivedV1(
                        receipt_id=f"r-{i}",
                        po_id=f"po-{i}",
                        number=f"PO-{i:06d}",
                        drop_ship=False,
                        po_status="Received Full",
                        received_by=person,
                        lines=[
                            ev.ReceivedLine(
                                line_id=f"l-{i}",
                                charge_id=charge.id,
                                product_id=charge.product.id,
                                quantity=2,
                                location_id="loc",
                                open_after=0,
                            )
                        ],
                    ),
                )
                await kafka.publish(
                    T("shipment.delivered"),
                    ev.ShipmentDeliveredV1(
                        delivery_id=f"d-{i}",
                        drop_ship=False,
                        destination=f.address(),
                        delivered_by=person,
                        items=[
                            ev.DeliveredItem(
                                item_id=f"it-{i}",
                                charge_id=charge.id,
                                seq=1,
                                sales_order_id=won.sales_order.id,
                                product_id=charge.product.id,
                                quantity=2,
                            )
                        ],
                    ),
                )
            so_ids = [w.sales_order.id for w in wins]

            async def all_fulfillable():
                return all(v.get("can_fulfill") for v in await _views(http, headers, so_ids))

            await eventually(all_fulfillable, timeout=60)
            await eventually(lambda: _backlog_empty(runtime), timeout=60)  # all published
            before = await _views(http, headers, so_ids)
        ready = await kafka.read_events(
            "salesorder.ready_to_fulfill", CHARGES, timeout=30, settle=1.0
        )
        published_before = len(ready)
        need_before = len(
            await kafka.read_events("charge.need_order", CHARGES, timeout=30, settle=1.0)
        )
        assert published_before == CHARGES

        await kafka.reset_group_to_earliest(settings.group_id, runtime.handlers.topics)
        app, runtime = build(settings)
        async with running(app, runtime) as http:

            async def drained():
                return (
                    runtime.consumer is not None
                    and await kafka.lag(settings.group_id, runtime.handlers.topics) == 0
                )

            await eventually(drained, timeout=60)
            after = await _views(http, headers, so_ids)
        assert after == before
        await eventually(lambda: _backlog_empty(runtime), timeout=60)
        for topic, count in (
            ("salesorder.ready_to_fulfill", published_before),
            ("charge.need_order", need_before),
        ):
            again = await kafka.read(
                topic, until=lambda got, n=count: len(got) >= n, settle=2.0, timeout=30
            )
            assert len(again) == count, f"{topic}: the redelivery published something new"
        assert await kafka.read("dlq.quotes", timeout=1.0) == []


async def _backlog_empty(runtime) -> bool:
    return await runtime.relay.backlog() == 0
