"""Shipping on the real broker: the Ready tab fills from `charge.ready`, `units.picked`
and `units.received`; drop-ship goes straight to Delivered (R12); Deliver/Ship and cancel
round-trip (R13, R15); pick and packing lists, one document per destination (R14)."""

import asyncio
from decimal import Decimal
from html.parser import HTMLParser

import pytest

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Location
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token, unique
from procure_receiving.app import build as build_receiving
from procure_shipping.app import build

pytestmark = pytest.mark.kafka
WON = spec_for_topic("opportunity.won")
READY = spec_for_topic("charge.ready")
PICKED = spec_for_topic("units.picked")
RECEIVED = spec_for_topic("units.received")
LOCATIONS = spec_for_topic("catalog.locations")


def charge_ready(charge, won: ev.OpportunityWonV1, quantity: int) -> ev.ChargeReadyV1:
    return ev.ChargeReadyV1(
        charge_id=charge.id,
        sales_order_id=won.sales_order.id,
        product=charge.product,
        quantity=quantity,
        destination=charge.ship_to or won.sales_order.ship_to,
    )


async def tab(http, auth, name: str, charge_ids: set[str]) -> list[dict]:
    items = (await http.get(f"/delivery/{name}", headers=auth)).json()["items"]
    return [i for i in items if i["charge_id"] in charge_ids]


async def test_received_units_appear_on_the_ready_tab(service_settings) -> None:
    """Receiving and shipping in one process on one topic prefix: a receipt's units are
    ready to ship at the receiving location, one stable item however many receipts."""
    r_settings = service_settings("receiving")
    settings = service_settings("shipping", prefix=r_settings.topic_prefix)
    r_app, r_runtime = build_receiving(r_settings)
    app, runtime = build(settings)
    charge = f.charge(f.product(serialized=True), 3)
    won = f.opportunity_won(charge)
    location = Location(id=unique("loc-"), name="Main warehouse", address=f.address("WH"))
    po = ev.POSubmittedV1(
        po=ev.PORef(
            id=unique("po-"),
            number="PO-000042",
            vendor=f.vendor(),
            ship_to=ev.POShipTo(kind="location", location_id=location.id),
        ),
        lines=[
            ev.POLine(
                line_id="line-1",
                charge_id=charge.id,
                product=charge.product,
                quantity=3,
                unit_cost=Decimal("100.00"),
            )
        ],
        submitted_by=f.person("Polly Purchaser"),
    )
    auth = {"Authorization": f"Bearer {token(settings, 'receiving')}"}
    receipt_url = f"/purchase-orders/{po.po.id}/receipts"
    async with (
        running(r_app, r_runtime) as receiving,
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(LOCATIONS, location)
        await kafka.publish(spec_for_topic("po.submitted"), po)
        await kafka.publish(WON, won)

        async def receive(quantity: int, serials: list[str]) -> bool:
            line = {"line_id": "line-1", "quantity": quantity, "location_id": location.id}
            answer = await receiving.post(
                receipt_url, headers=auth, json={"lines": [line | {"serials": serials}]}
            )
            return answer.status_code == 201  # 404/422 until receiving saw the PO and location

        await eventually(lambda: receive(2, ["SN-1", "SN-2"]))
        [item] = await eventually(lambda: tab(http, auth, "ready", {charge.id}))
        assert item == {
            "item_id": item["item_id"],
            "charge_id": charge.id,
            "sales_order_id": won.sales_order.id,
            "product": charge.product.model_dump(mode="json"),
            "quantity": 2,
            "location_id": location.id,
            "destination": won.sales_order.ship_to.model_dump(mode="json"),
            "serials": ["SN-1", "SN-2"],
        }
        assert await receive(1, ["SN-3"])

        async def three_ready() -> list[dict]:
            items = await tab(http, auth, "ready", {charge.id})
            return items if items[0]["quantity"] == 3 else []

        [merged] = await eventually(three_ready)
        assert merged["item_id"] == item["item_id"]
        assert merged["serials"] == ["SN-1", "SN-2", "SN-3"]
        assert await tab(http, auth, "delivered", {charge.id}) == []


async def test_drop_ship_units_go_straight_to_delivered(service_settings) -> None:
    settings = service_settings("shipping")
    app, runtime = build(settings)
    charge = f.charge(f.product(), 2)
    won = f.opportunity_won(charge)
    received = ev.UnitsReceivedV1(
        receipt_id=unique("rc-"),
        po_id=unique("po-"),
        number="PO-000007",
        drop_ship=True,
        po_status="Received Full",
        received_by=f.person("Rex Receiver"),
        lines=[
            ev.ReceivedLine(
                line_id="l1",
                charge_id=charge.id,
                product_id=charge.product.id,
                quantity=2,
                open_after=0,
            )
        ],
    )
    auth = {"Authorization": f"Bearer {token(settings, 'shipping')}"}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(RECEIVED, received)  # before its charge is known: parks
        await kafka.publish(WON, won)
        [event] = await kafka.read_events("shipment.delivered", 1)
        assert event.data["drop_ship"] is True and event.data["po_number"] == "PO-000007"
        assert event.data["destination"] == won.sales_order.ship_to.model_dump(mode="json")
        assert event.data["delivered_by"]["name"] == "Rex Receiver"
        assert event.correlationid == won.sales_order.id
        [sent] = event.data["items"]
        assert (sent["charge_id"], sent["quantity"], sent["seq"]) == (charge.id, 2, 1)
        assert sent["location_id"] is None and sent["transfer_id"] is None

        [item] = await eventually(lambda: tab(http, auth, "delivered", {charge.id}))
        assert (item["item_id"], item["delivery_id"]) == (
            sent["item_id"],
            event.data["delivery_id"],
        )
        assert item["quantity"] == 2 and item["drop_ship"] is True
        assert await tab(http, auth, "ready", {charge.id}) == []

        refused = await http.post(
            f"/deliveries/{item['delivery_id']}/cancel", headers=auth, json={}
        )
        assert refused.status_code == 409 and "drop-ship" in refused.json()["detail"]
        assert await tab(http, auth, "delivered", {charge.id}) == [item]


async def test_deliver_then_cancel_round_trips(service_settings) -> None:
    settings = service_settings("shipping")
    app, runtime = build(settings)
    stocked, service = f.charge(f.product(inventory=True), 3), f.charge(f.product(), 2)
    won = f.opportunity_won(stocked, service)
    picked = ev.UnitsPickedV1(
        charge_id=stocked.id, location_id="loc-a", quantity=3, serials=["S1", "S2", "S3"]
    )
    auth = {"Authorization": f"Bearer {token(settings, 'shipping')}"}
    ids = {stocked.id, service.id}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(PICKED, picked)  # before its charge is known: parks
        await kafka.publish(READY, charge_ready(service, won, 2))
        await kafka.publish(WON, won)
        ready = await eventually(lambda: _when(tab(http, auth, "ready", ids), 2))
        by_charge = {i["charge_id"]: i for i in ready}
        stocked_item, service_item = by_charge[stocked.id], by_charge[service.id]
        assert (stocked_item["location_id"], stocked_item["quantity"]) == ("loc-a", 3)
        assert (service_item["location_id"], service_item["quantity"]) == (None, 2)

        delivered = await http.post(
            "/deliveries",
            headers=auth,
            json={
                "items": [
                    {"item_id": stocked_item["item_id"], "quantity": 2, "serials": ["S3", "S1"]},
                    {"item_id": service_item["item_id"]},
                ]
            },
        )
        assert delivered.status_code == 201, delivered.text
        delivery = delivered.json()
        out = {i["charge_id"]: i for i in delivery["items"]}
        assert (out[stocked.id]["quantity"], out[stocked.id]["seq"]) == (2, 1)
        assert out[stocked.id]["transfer_id"] and out[service.id]["transfer_id"] is None
        assert (out[service.id]["quantity"], out[service.id]["serials"]) == (2, [])

        [shipped] = await kafka.read_events("shipment.delivered", 1)
        assert shipped.data["delivery_id"] == delivery["id"] and shipped.data["drop_ship"] is False
        assert {i["item_id"]: i["serials"] for i in shipped.data["items"]} == {
            out[stocked.id]["item_id"]: ["S3", "S1"],
            out[service.id]["item_id"]: [],
        }
        [left] = await tab(http, auth, "ready", ids)
        assert (left["item_id"], left["quantity"], left["serials"]) == (
            stocked_item["item_id"],
            1,
            ["S2"],
        )
        on_delivered = await tab(http, auth, "delivered", ids)
        assert {(i["item_id"], i["delivery_id"], i["quantity"]) for i in on_delivered} == {
            (out[stocked.id]["item_id"], delivery["id"], 2),
            (out[service.id]["item_id"], delivery["id"], 2),
        }

        cancel_url = f"/deliveries/{delivery['id']}/cancel"
        one = await http.post(
            cancel_url,
            headers=auth,
            json={
                "items": [{"item_id": out[stocked.id]["item_id"], "quantity": 1}],
                "reason": "dented",
            },
        )
        assert one.status_code == 200, one.text
        rest = await http.post(cancel_url, headers=auth, json={"reason": "customer away"})
        assert rest.status_code == 200, rest.text
        again = await http.post(cancel_url, headers=auth, json={})
        assert again.status_code == 409

        canceled = await kafka.read_events("shipment.canceled", 2)
        assert [e.data["reason"] for e in canceled] == ["dented", "customer away"]
        seqs = [
            (i["charge_id"], i["seq"], i["quantity"]) for e in canceled for i in e.data["items"]
        ]
        assert sorted(seqs) == sorted([(stocked.id, 2, 1), (stocked.id, 3, 1), (service.id, 2, 2)])
        for e in canceled:
            for i in e.data["items"]:
                if i["charge_id"] == stocked.id:
                    assert i["original_transfer_id"] == out[stocked.id]["transfer_id"]
                    assert i["transfer_id"] and i["transfer_id"] != i["original_transfer_id"]
                else:
                    assert i["transfer_id"] is None and i["original_transfer_id"] is None

        back = {i["item_id"]: i for i in await tab(http, auth, "ready", ids)}
        assert {k: (v["quantity"], sorted(v["serials"])) for k, v in back.items()} == {
            stocked_item["item_id"]: (3, ["S1", "S2", "S3"]),
            service_item["item_id"]: (2, []),
        }
        assert await tab(http, auth, "delivered", ids) == []


async def test_refused_deliveries_change_nothing(service_settings) -> None:
    settings = service_settings("shipping")
    app, runtime = build(settings)
    here, there = f.charge(f.product(), 2), f.charge(f.product(), 1, ship_to=f.address("Elsewhere"))
    won = f.opportunity_won(here, there)
    auth = {"Authorization": f"Bearer {token(settings, 'shipping')}"}
    ids = {here.id, there.id}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(READY, charge_ready(here, won, 2))
        await kafka.publish(READY, charge_ready(there, won, 1))
        before = await eventually(lambda: _when(tab(http, auth, "ready", ids), 2))
        item = {i["charge_id"]: i["item_id"] for i in before}
        refusals = [
            ([{"item_id": item[here.id], "quantity": 3}], 409, "conflict", "has 2 units"),
            ([{"item_id": "nope"}], 422, "unknown-reference", "nope"),
            ([{"item_id": item[here.id], "serials": ["X"]}], 422, "invalid", "does not hold"),
            (
                [{"item_id": item[here.id]}, {"item_id": item[there.id]}],
                422,
                "invalid",
                "destinations",
            ),
            (
                [{"item_id": item[here.id]}, {"item_id": item[here.id]}],
                422,
                "invalid",
                "more than once",
            ),
            ([], 422, "invalid", "items"),
        ]
        for items, status, kind, detail in refusals:
            answer = await http.post("/deliveries", headers=auth, json={"items": items})
            assert answer.status_code == status, (items, answer.text)
            assert answer.json()["type"].endswith(kind) and detail in answer.json()["detail"]
        reader = {"Authorization": f"Bearer {token(settings, 'receiving')}"}
        forbidden = await http.post(
            "/deliveries", headers=reader, json={"items": [{"item_id": item[here.id]}]}
        )
        assert forbidden.status_code == 403
        assert (
            await http.post("/deliveries/nope/cancel", headers=auth, json={})
        ).status_code == 404

        assert await tab(http, auth, "ready", ids) == before
        assert await tab(http, auth, "delivered", ids) == []
        assert await kafka.read_events("shipment.delivered", 1, timeout=3) == []

        # two shippers racing for the same units: one delivers, the other is refused
        race = {"items": [{"item_id": item[here.id], "quantity": 2}]}
        answers = await asyncio.gather(
            *(http.post("/deliveries", headers=auth, json=race) for _ in range(2))
        )
        assert sorted(a.status_code for a in answers) == [201, 409]
        [done] = await tab(http, auth, "delivered", ids)
        assert done["quantity"] == 2 and done["charge_id"] == here.id


async def test_pick_list_for_two_addresses_yields_two_documents(service_settings) -> None:
    settings = service_settings("shipping")
    app, runtime = build(settings)
    home, office = f.address("Home <b>site</b>", "Shelbyville"), f.address("Office", "Ogdenville")
    picked_charge = f.charge(f.product(inventory=True, name="Router", sku="RT-1"), 2, ship_to=home)
    ready_charge = f.charge(f.product(name="Support"), 1, ship_to=office)
    won = f.opportunity_won(picked_charge, ready_charge)
    location = Location(id=unique("loc-"), name="Back room", address=f.address("WH"))
    auth = {"Authorization": f"Bearer {token(settings, 'billing')}"}  # any valid token
    ids = {picked_charge.id, ready_charge.id}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(LOCATIONS, location)
        await kafka.publish(WON, won)
        await kafka.publish(
            PICKED,
            ev.UnitsPickedV1(
                charge_id=picked_charge.id,
                location_id=location.id,
                quantity=2,
                serials=["R1", "R2"],
            ),
        )
        await kafka.publish(READY, charge_ready(ready_charge, won, 1))
        ready = await eventually(lambda: _when(tab(http, auth, "ready", ids), 2))
        item_ids = [i["item_id"] for i in ready]

        async def named_location() -> dict:
            answer = await http.post("/pick-lists", headers=auth, json={"item_ids": item_ids})
            docs = answer.json()["documents"]
            return (
                answer.json()
                if any(
                    i["pick_location"] and i["pick_location"]["name"] == "Back room"
                    for d in docs
                    for i in d["items"]
                )
                else {}
            )

        picks = (await eventually(named_location))["documents"]
        assert len(picks) == 2
        by_place = {d["destination"]["name"]: d["items"] for d in picks}
        [router_line] = by_place[home.name]
        assert router_line | {"item_id": None} == {
            "item_id": None,
            "product": "Router",
            "product_id": picked_charge.product.id,
            "sku": "RT-1",
            "quantity": 2,
            "serials": ["R1", "R2"],
            "sales_order_id": won.sales_order.id,
            "charge_id": picked_charge.id,
            "pick_location": {"id": location.id, "name": "Back room"},
        }
        [support_line] = by_place[office.name]
        assert support_line["pick_location"] is None and support_line["product"] == "Support"

        packing = await http.post("/packing-lists", headers=auth, json={"item_ids": item_ids})
        assert len(packing.json()["documents"]) == 2
        assert all(
            "pick_location" not in i for d in packing.json()["documents"] for i in d["items"]
        )

        html = await http.post(
            "/pick-lists", headers=auth | {"Accept": "text/html"}, json={"item_ids": item_ids}
        )
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        page = Sections()
        page.feed(html.text)
        assert len(page.sections) == 2
        assert any(
            "Home <b>site</b>" in s and "RT-1" in s and "Back room" in s for s in page.sections
        )
        assert any("Office" in s and "Support" in s for s in page.sections)
        assert "<b>site</b>" not in html.text  # escaped

        unknown = await http.post("/packing-lists", headers=auth, json={"item_ids": ["nope"]})
        assert unknown.status_code == 422 and unknown.json()["type"].endswith("unknown-reference")
        assert (await http.post("/pick-lists", json={"item_ids": item_ids})).status_code == 401


class Sections(HTMLParser):
    """The text of each `<section>` of a printable page."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            self.sections.append("")
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._depth:
            self.sections[-1] += data


async def _when(call, count: int) -> list:
    items = await call
    return items if len(items) == count else []


async def test_one_charge_at_two_places_gets_a_seq_per_item(service_settings) -> None:
    """R13: a delivery taking a charge's units from two Ready items (picked at a location
    and ready without one) numbers them in turn, and the next delivery goes on from there."""
    settings = service_settings("shipping")
    app, runtime = build(settings)
    charge = f.charge(f.product(inventory=True), 5)
    won = f.opportunity_won(charge)
    picked = ev.UnitsPickedV1(charge_id=charge.id, location_id="loc-a", quantity=3)
    auth = {"Authorization": f"Bearer {token(settings, 'shipping')}"}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(WON, won)
        await kafka.publish(READY, charge_ready(charge, won, 2))
        await kafka.publish(PICKED, picked)
        ready = await eventually(lambda: _when(tab(http, auth, "ready", {charge.id}), 2))
        at = {i["location_id"]: i["item_id"] for i in ready}
        first = await http.post(
            "/deliveries",
            headers=auth,
            json={"items": [{"item_id": at["loc-a"], "quantity": 1}, {"item_id": at[None]}]},
        )
        assert first.status_code == 201, first.text
        assert [i["seq"] for i in first.json()["items"]] == [1, 2]
        second = await http.post(
            "/deliveries", headers=auth, json={"items": [{"item_id": at["loc-a"]}]}
        )
        assert second.status_code == 201, second.text
        assert [(i["seq"], i["quantity"]) for i in second.json()["items"]] == [(3, 2)]
        assert await tab(http, auth, "ready", {charge.id}) == []


async def test_a_delivery_with_the_clients_id_delivers_once(service_settings) -> None:
    """A shipper's tool that sends the delivery's `id` can retry a delivery whose answer
    it lost: the retry (or a racing twin) is a 409 and the units are delivered once."""
    settings = service_settings("shipping")
    app, runtime = build(settings)
    charge = f.charge(f.product(), 5)
    won = f.opportunity_won(charge)
    auth = {"Authorization": f"Bearer {token(settings, 'shipping')}"}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(READY, charge_ready(charge, won, 5))
        [item] = await eventually(lambda: _when(tab(http, auth, "ready", {charge.id}), 1))
        first_id, racing_id = unique("dl-client-"), unique("dl-client-")

        def body(delivery_id: str) -> dict:
            return {"id": delivery_id, "items": [{"item_id": item["item_id"], "quantity": 1}]}

        first = await http.post("/deliveries", headers=auth, json=body(first_id))
        assert first.status_code == 201, first.text
        assert first.json()["id"] == first_id
        retried = await http.post("/deliveries", headers=auth, json=body(first_id))
        assert retried.status_code == 409, retried.text
        assert retried.headers["content-type"].startswith("application/problem+json")
        assert retried.json()["detail"] == f"delivery {first_id!r} exists already"
        twins = await asyncio.gather(
            *(http.post("/deliveries", headers=auth, json=body(racing_id)) for _ in range(2))
        )
        assert sorted(a.status_code for a in twins) == [201, 409]

        [ready] = await tab(http, auth, "ready", {charge.id})
        assert ready["quantity"] == 3
        delivered = await tab(http, auth, "delivered", {charge.id})
        assert sorted(d["delivery_id"] for d in delivered) == sorted([first_id, racing_id])
        assert sum(d["quantity"] for d in delivered) == 2
        events = await kafka.read_events("shipment.delivered", 2, settle=1.0)
        assert sorted(e.data["delivery_id"] for e in events) == sorted([first_id, racing_id])


async def test_a_cancel_without_a_body_cancels_every_item(service_settings) -> None:
    """R15: `items` and `reason` are optional, and so is the body itself: none at all
    cancels every item still delivered, as `{}` does."""
    settings = service_settings("shipping")
    app, runtime = build(settings)
    one, two = f.charge(f.product(), 2), f.charge(f.product(), 1)
    won = f.opportunity_won(one, two)
    auth = {"Authorization": f"Bearer {token(settings, 'shipping')}"}
    ids = {one.id, two.id}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(READY, charge_ready(one, won, 2))
        await kafka.publish(READY, charge_ready(two, won, 1))
        ready = await eventually(lambda: _when(tab(http, auth, "ready", ids), 2))
        delivered = await http.post(
            "/deliveries", headers=auth, json={"items": [{"item_id": i["item_id"]} for i in ready]}
        )
        assert delivered.status_code == 201, delivered.text
        delivery = delivered.json()

        canceled = await http.post(f"/deliveries/{delivery['id']}/cancel", headers=auth)
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["delivery_id"] == delivery["id"]
        assert sorted((i["charge_id"], i["quantity"]) for i in canceled.json()["items"]) == sorted(
            [(one.id, 2), (two.id, 1)]
        )
        [event] = await kafka.read_events("shipment.canceled", 1)
        assert event.data["delivery_id"] == delivery["id"] and event.data["reason"] is None
        assert await tab(http, auth, "delivered", ids) == []
        assert sorted(
            (i["item_id"], i["quantity"]) for i in await tab(http, auth, "ready", ids)
        ) == sorted((i["item_id"], i["quantity"]) for i in ready)


async def test_a_cancel_naming_an_unknown_item_changes_nothing(service_settings) -> None:
    """§3: an item id that is not on the delivery (unknown, or an item of another
    delivery) is an unknown reference: 422 `unknown-reference`, and nothing is canceled."""
    settings = service_settings("shipping")
    app, runtime = build(settings)
    charge = f.charge(f.product(), 2)
    won = f.opportunity_won(charge)
    auth = {"Authorization": f"Bearer {token(settings, 'shipping')}"}
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(READY, charge_ready(charge, won, 2))
        [item] = await eventually(lambda: _when(tab(http, auth, "ready", {charge.id}), 1))
        deliveries = []
        for _ in range(2):
            answer = await http.post(
                "/deliveries",
                headers=auth,
                json={"items": [{"item_id": item["item_id"], "quantity": 1}]},
            )
            assert answer.status_code == 201, answer.text
            deliveries.append(answer.json())
        first, second = deliveries
        before = await tab(http, auth, "delivered", {charge.id})
        assert len(before) == 2

        url = f"/deliveries/{first['id']}/cancel"
        for item_id in ["nope", second["items"][0]["item_id"]]:
            answer = await http.post(url, headers=auth, json={"items": [{"item_id": item_id}]})
            assert answer.status_code == 422, answer.text
            assert answer.json()["type"].endswith("unknown-reference")
            assert item_id in answer.json()["detail"]
        mixed = {"items": [{"item_id": first["items"][0]["item_id"]}, {"item_id": "nope"}]}
        answer = await http.post(url, headers=auth, json=mixed)
        assert answer.status_code == 422 and answer.json()["type"].endswith("unknown-reference")

        assert await tab(http, auth, "delivered", {charge.id}) == before
        assert await tab(http, auth, "ready", {charge.id}) == []
        assert await kafka.read_events("shipment.canceled", 1, timeout=3) == []
