"""The walking skeleton on the real broker: quotes consumes `opportunity.won` and
`charge.created` from any producer, stores them once and routes units (R3/R4)."""

import pytest
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token
from procure_quotes.app import build

pytestmark = pytest.mark.kafka
WON = spec_for_topic("opportunity.won")
CREATED = spec_for_topic("charge.created")


async def test_external_won_opportunity_routes_each_charge(service_settings) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    service_item = f.charge(f.product(procurement=False), 2)
    reserved_item = f.charge(f.product(inventory=True), 5, reservations=[("res-1", "loc-1", 2)])
    bought_item = f.charge(f.product(unit_cost="40.00"), 3)
    won = f.opportunity_won(service_item, reserved_item, bought_item)

    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        sent = await kafka.publish(WON, won)
        ready = await kafka.read_events("charge.ready", 1, settle=1.0)
        need = await kafka.read_events("charge.need_order", 2, settle=1.0)

        assert [(e.data["charge_id"], e.data["quantity"]) for e in ready] == [(service_item.id, 2)]
        assert sorted(
            (e.data["charge_id"], e.data["quantity"], e.data["extended_cost"]) for e in need
        ) == sorted([(reserved_item.id, 3, "300.00"), (bought_item.id, 3, "120.00")])
        for e in ready + need:
            assert e.correlationid == won.sales_order.id
            assert e.causationid == sent.id
            assert e.data["destination"] == won.sales_order.ship_to.model_dump(mode="json")

        auth = {"Authorization": f"Bearer {token(settings, 'sales')}"}
        so = (await http.get(f"/sales-orders/{won.sales_order.id}", headers=auth)).json()
        assert so["status"] == "New"
        routed = {c["id"]: c["routed"] for c in so["charges"]}
        assert routed == {
            service_item.id: {"ready": 2, "awaiting_pick": 0, "to_procurement": 0},
            reserved_item.id: {"ready": 0, "awaiting_pick": 2, "to_procurement": 3},
            bought_item.id: {"ready": 0, "awaiting_pick": 0, "to_procurement": 3},
        }


async def test_direct_charge_without_sales_order_correlates_by_charge(service_settings) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    created = f.charge_created(
        f.charge(f.product(unit_cost="10.00"), 4, ship_to=f.address("Site B"))
    )

    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(CREATED, created)
        [need] = await kafka.read_events("charge.need_order", 1, settle=1.0)
        assert need.correlationid == created.charge.id
        assert need.data["sales_order_id"] is None
        assert need.data["destination"]["name"] == "Site B"  # the charge's own ship_to wins (R4)
        auth = {"Authorization": f"Bearer {token(settings, 'sales')}"}
        charge = await eventually(
            lambda: _json_ok(http.get(f"/charges/{created.charge.id}", headers=auth))
        )
        assert charge["sales_order_id"] is None


async def _json_ok(call):
    response = await call
    return response.json() if response.status_code == 200 else None
