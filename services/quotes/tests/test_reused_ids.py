"""A client-chosen sales order id (`POST /opportunities/{id}/win`) or charge id
(`POST /charges`) is in use from the moment a request is accepted, not only once quotes'
consumer has stored the record from the event the request published: a second request
naming it meanwhile is a 409 that changes nothing, whether it comes after the first or
races it."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token, unique
from procure_quotes.app import build

pytestmark = pytest.mark.kafka
T = spec_for_topic


@asynccontextmanager
async def consumer_held(runtime: Any) -> AsyncIterator[None]:
    """Quotes' consumer takes no batch until the block ends: the events the requests
    published wait, as they would behind a slow or lagging consumer."""
    gate = asyncio.Event()
    process_batch = runtime.consumer.process_batch

    async def held(records: Any) -> None:
        await gate.wait()
        await process_batch(records)

    runtime.consumer.process_batch = held
    try:
        yield
    finally:
        gate.set()
        runtime.consumer.process_batch = process_batch


async def _json(http, url: str, headers) -> Any:
    response = await http.get(url, headers=headers)
    return response.json() if response.status_code == 200 else None


async def _opportunity_with_item(http, headers, product_id: str) -> str:
    opp = await http.post(
        "/opportunities",
        headers=headers,
        json={
            "name": "Fit-out",
            "owner": f.person().model_dump(),
            "organization": f.organization().model_dump(),
        },
    )
    assert opp.status_code == 201, opp.text
    opp_id = opp.json()["id"]

    async def added() -> bool:
        r = await http.post(
            f"/opportunities/{opp_id}/items",
            headers=headers,
            json={"product_id": product_id, "quantity": 1},
        )
        return r.status_code == 201  # 422 until the product's catalog event is applied

    await eventually(added)
    return opp_id


def _win_body(items: list[dict[str, Any]], so_id: str) -> dict[str, Any]:
    return {
        "sales_order": {"id": so_id, "ship_to": f.address().model_dump()},
        "items": [{"quote_item_id": i["id"], "parent": f.parent().model_dump()} for i in items],
    }


def _charge_body(charge_id: str, product_id: str, quantity: int) -> dict[str, Any]:
    return {
        "id": charge_id,
        "parent": f.parent().model_dump(),
        "product_id": product_id,
        "quantity": quantity,
        "organization": f.organization().model_dump(),
        "ship_to": f.address().model_dump(),
    }


def _refused(response, noun: str, id_: str) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("conflict")
    assert problem["detail"] == f"{noun} {id_!r} exists already"


async def _check(http, kafka, sales, winner: str, loser: str, so_id: str, charge_id: str) -> None:
    """Once the consumer has caught up: the sales order and the charge are the first
    request's, the loser's opportunity is still open (and can still be won), and each
    id went out in one event only."""
    so = await eventually(lambda: _json(http, f"/sales-orders/{so_id}", sales))
    assert [c["quantity"] for c in so["charges"]] == [1]
    opp = await _json(http, f"/opportunities/{winner}", sales)
    assert opp["status"] == "Won"
    opp = await _json(http, f"/opportunities/{loser}", sales)
    assert opp["status"] == "Open"
    charge = await eventually(lambda: _json(http, f"/charges/{charge_id}", sales))
    won = await kafka.read_events(
        "opportunity.won", 1, settle=1.0, where=lambda e: e.subject in (winner, loser)
    )
    assert [e.data["sales_order"]["id"] for e in won] == [so_id]
    created = await kafka.read_events(
        "charge.created", 1, settle=1.0, where=lambda e: e.subject == charge_id
    )
    assert [e.data["charge"]["quantity"] for e in created] == [charge["quantity"]]
    again = await http.post(
        f"/opportunities/{loser}/win",
        headers=sales,
        json=_win_body(opp["items"], unique("so-")),
    )
    assert again.status_code == 202, again.text


@dataclass
class TwoOpen:
    runtime: Any
    http: Any
    kafka: KafkaProbe
    sales: dict[str, str]
    product: Any
    opps: list[str]  # two open opportunities, each with one quote item of `product`
    items: dict[str, list[dict[str, Any]]]  # their quote items
    so_id: str = field(default_factory=lambda: unique("so-"))  # ids no one has named yet
    charge_id: str = field(default_factory=lambda: unique("ch-"))


@asynccontextmanager
async def two_open_opportunities(service_settings: Any) -> AsyncIterator[TwoOpen]:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    product = f.product(procurement=False)
    sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(T("catalog.products"), product)
        opps = [await _opportunity_with_item(http, sales, product.id) for _ in range(2)]
        items = {o: (await _json(http, f"/opportunities/{o}", sales))["items"] for o in opps}
        yield TwoOpen(runtime, http, kafka, sales, product, opps, items)


async def test_an_id_named_again_before_the_consumer_stored_it_is_a_409(service_settings) -> None:
    async with two_open_opportunities(service_settings) as s:
        runtime, http, kafka, sales, product = s.runtime, s.http, s.kafka, s.sales, s.product
        so_id, charge_id, items, (first, second) = s.so_id, s.charge_id, s.items, s.opps

        async with consumer_held(runtime):
            won = await http.post(
                f"/opportunities/{first}/win", headers=sales, json=_win_body(items[first], so_id)
            )
            assert won.status_code == 202, won.text
            _refused(
                await http.post(
                    f"/opportunities/{second}/win",
                    headers=sales,
                    json=_win_body(items[second], so_id),
                ),
                "sales order",
                so_id,
            )
            assert (await _json(http, f"/opportunities/{second}", sales))["status"] == "Open"

            made = await http.post(
                "/charges", headers=sales, json=_charge_body(charge_id, product.id, 1)
            )
            assert made.status_code == 202, made.text
            _refused(
                await http.post(
                    "/charges", headers=sales, json=_charge_body(charge_id, product.id, 2)
                ),
                "charge",
                charge_id,
            )
            # a charge id the wizard made is taken as well
            _refused(
                await http.post(
                    "/charges",
                    headers=sales,
                    json=_charge_body(won.json()["charge_ids"][0], product.id, 1),
                ),
                "charge",
                won.json()["charge_ids"][0],
            )

        await _check(http, kafka, sales, first, second, so_id, charge_id)
        # once stored, the id is still refused, as before
        _refused(
            await http.post("/charges", headers=sales, json=_charge_body(charge_id, product.id, 1)),
            "charge",
            charge_id,
        )


async def test_racing_requests_naming_one_new_id_give_one_202_and_one_409(
    service_settings,
) -> None:
    async with two_open_opportunities(service_settings) as s:
        runtime, http, kafka, sales, product = s.runtime, s.http, s.kafka, s.sales, s.product
        so_id, charge_id, items, opps = s.so_id, s.charge_id, s.items, s.opps

        async with consumer_held(runtime):
            wins = await asyncio.gather(
                *(
                    http.post(
                        f"/opportunities/{o}/win", headers=sales, json=_win_body(items[o], so_id)
                    )
                    for o in opps
                )
            )
            assert sorted(r.status_code for r in wins) == [202, 409], [r.text for r in wins]
            winner, loser = opps if wins[0].status_code == 202 else opps[::-1]
            _refused(next(r for r in wins if r.status_code == 409), "sales order", so_id)

            charges = await asyncio.gather(
                *(
                    http.post(
                        "/charges", headers=sales, json=_charge_body(charge_id, product.id, 1)
                    )
                    for _ in range(2)
                )
            )
            assert sorted(r.status_code for r in charges) == [202, 409], [r.text for r in charges]
            _refused(next(r for r in charges if r.status_code == 409), "charge", charge_id)

        await _check(http, kafka, sales, winner, loser, so_id, charge_id)
