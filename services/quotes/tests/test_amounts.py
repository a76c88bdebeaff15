"""Amounts a request gives must be ones the services can store (`Numeric(18, 2)`): a
unit price beyond it, with more than two decimals, or a charge whose units at their unit
cost or price exceed it is a 422 that changes nothing. Before, a quote item's price was
refused by the database (a 500 for a value asyncpg cannot encode), and a direct charge
was accepted (202) and then lost or retried by quotes' and purchasing's consumers."""

import pytest

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token
from procure_quotes.app import build

pytestmark = pytest.mark.kafka

HUGE = ["1E+300000", "1E-20000", "1e20", "12.345"]


async def test_unpayable_amounts_are_refused_where_they_enter(service_settings) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    cheap, dear = f.product(), f.product(unit_cost="1000000000000000.00", unit_price="1.00")
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        for product in (cheap, dear):
            await kafka.publish(spec_for_topic("catalog.products"), product)
        sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
        opp = await http.post(
            "/opportunities",
            headers=sales,
            json={
                "name": "Fit-out",
                "owner": f.person().model_dump(),
                "organization": f.organization().model_dump(),
            },
        )
        items_url = f"/opportunities/{opp.json()['id']}/items"

        async def added(body: dict) -> int:
            return (await http.post(items_url, headers=sales, json=body)).status_code

        await eventually(lambda: _is(added({"product_id": dear.id, "quantity": 9}), 201))
        refused = [
            *({"product_id": cheap.id, "quantity": 1, "unit_price": p} for p in HUGE),
            {"product_id": dear.id, "quantity": 10},  # 10 x 10^15 at unit cost
            {"product_id": cheap.id, "quantity": 2, "unit_price": "9000000000000000.00"},
        ]
        for body in refused:
            answer = await http.post(items_url, headers=sales, json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
        over = await http.post(items_url, headers=sales, json=refused[-2])
        assert "exceed 9999999999999999.99" in over.json()["detail"]
        opp_now = (await http.get(f"/opportunities/{opp.json()['id']}", headers=sales)).json()
        assert [i["quantity"] for i in opp_now["items"]] == [9]  # the first only

        charge = {
            "parent": f.parent().model_dump(),
            "organization": f.organization().model_dump(),
            "ship_to": f.address().model_dump(),
        }
        for body in refused:
            answer = await http.post("/charges", headers=sales, json={**charge, **body})
            assert answer.status_code == 422, (body, answer.text)
        assert await kafka.read_events("charge.created", 1, timeout=1.0) == []
        ok = await http.post(
            "/charges", headers=sales, json={**charge, "product_id": dear.id, "quantity": 9}
        )
        assert ok.status_code == 202, ok.text


async def _is(call, code: int) -> bool:
    return (await call) == code


async def test_a_request_whose_event_would_be_too_large_is_refused(service_settings) -> None:
    """Free text is not bounded by the contract, so a request could make an event over
    what the broker takes (1 MiB by default). It was accepted (202), and the outbox
    relay, refused that record for good, published nothing of the service after it."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    product = f.product()
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(spec_for_topic("catalog.products"), product)
        sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
        body = {
            "product_id": product.id,
            "quantity": 1,
            "organization": f.organization().model_dump(),
            "ship_to": f.address().model_dump(),
        }
        parent = f.parent().model_dump()
        huge = {**body, "id": "ch-huge", "parent": {**parent, "name": "P" * 1_100_000}}
        fine = {**body, "id": "ch-fine", "parent": parent}

        async def answered(body: dict) -> int:
            return (await http.post("/charges", headers=sales, json=body)).status_code

        await eventually(lambda: _is(answered(fine), 202))  # once the product is known
        refused = await http.post("/charges", headers=sales, json=huge)
        assert refused.status_code == 422, refused.text[:300]
        assert "events are at most 1,000,000" in refused.json()["detail"]
        [made] = await kafka.read_events("charge.created", 1, settle=1.0)
        assert made.data["charge"]["id"] == "ch-fine"
        again = await http.post("/charges", headers=sales, json={**huge, "parent": parent})
        assert again.status_code == 202, again.text  # its id was not taken by the refusal


async def test_a_charge_from_another_system_whose_amounts_no_service_can_store_is_rejected(
    service_settings,
) -> None:
    """As a request's charge is refused (422): its units at their unit cost would make a
    `charge.need_order` no one can store, and at their unit price a `charge.posted`
    that fails to build when billing posts it. Rejected at once, with nothing stored."""
    settings = service_settings("quotes")
    app, runtime = build(settings)
    dear = f.charge(f.product(unit_cost="1000000000000000.00", unit_price="1.00"), 10)
    pricey = f.charge(f.product(unit_cost="1.00", unit_price="2000000000000000.00"), 5)
    # A credit is a negative price; one too large to post was accepted and then failed
    # every `POST /charges/{id}/post` with a 500.
    credit = f.charge(f.product(unit_cost="1.00", unit_price="-6000000000000000.00"), 2)
    fine = f.charge(f.product(), 2)
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        won = [f.opportunity_won(c) for c in (dear, pricey, credit, fine)]
        for data in won:
            await kafka.publish(spec_for_topic("opportunity.won"), data)
        dead = await kafka.read("dlq.quotes", until=lambda got: len(got) >= 3, settle=1.0)
        assert [d.headers["x-error-type"] for d in dead] == ["rejected"] * 3
        assert "exceed 9999999999999999.99" in dead[0].headers["x-error-message"]
        admin = {"Authorization": f"Bearer {token(settings, 'admin')}"}

        async def status(so_id: str) -> int:
            return (await http.get(f"/sales-orders/{so_id}", headers=admin)).status_code

        await eventually(lambda: _is(status(won[3].sales_order.id), 200))
        assert [await status(w.sales_order.id) for w in won[:3]] == [404] * 3
