"""Receiving on the real broker: submitted POs appear on the Receiving page, receipts
(R10) and closed lines (R9) publish their events, refusals change nothing."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Location
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token, unique
from procure_receiving.app import build
from procure_runtime import ServiceRuntime
from procure_runtime.replica import get as replica_get
from procure_runtime.settings import ServiceSettings

pytestmark = pytest.mark.kafka
PO_SUBMITTED = spec_for_topic("po.submitted")
LOCATIONS = spec_for_topic("catalog.locations")


def po_submitted(*lines: tuple[int, bool], drop_ship: bool = False) -> ev.POSubmittedV1:
    """A submitted PO with one line per (quantity, serialized)."""
    ship_to = (
        ev.POShipTo(kind="organization", address=f.address("Customer site"))
        if drop_ship
        else ev.POShipTo(kind="location", location_id="loc-main")
    )
    return ev.POSubmittedV1(
        po=ev.PORef(id=unique("po-"), number=f"PO-{unique()}", vendor=f.vendor(), ship_to=ship_to),
        lines=[
            ev.POLine(
                line_id=unique("line-"),
                charge_id=unique("ch-"),
                product=f.product(serialized=serialized),
                quantity=quantity,
                unit_cost=Decimal("10.00"),
            )
            for quantity, serialized in lines
        ],
        submitted_by=f.person("Polly Purchaser"),
    )


@dataclass
class Receiving:
    http: httpx.AsyncClient
    kafka: KafkaProbe
    settings: ServiceSettings
    runtime: ServiceRuntime

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.settings, 'receiving')}"}

    async def know(self, *pos: ev.POSubmittedV1) -> str:
        """Publish a location and the POs; wait until receiving knows them all."""
        location = Location(id=unique("loc-"), name="Main warehouse", address=f.address("WH"))
        await self.kafka.publish(LOCATIONS, location)
        for po in pos:
            await self.kafka.publish(PO_SUBMITTED, po)

        async def known() -> bool:
            async with self.runtime.db.session() as session:
                if not await replica_get(session, self.runtime.metadata, "locations", location.id):
                    return False
            for po in pos:
                answer = await self.http.get(f"/purchase-orders/{po.po.id}", headers=self.auth)
                if answer.status_code != 200:
                    return False
            return True

        await eventually(known)
        return location.id


@pytest.fixture
async def receiving(service_settings) -> AsyncIterator[Receiving]:
    settings = service_settings("receiving")
    app, runtime = build(settings)
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        yield Receiving(http, kafka, settings, runtime)


async def test_partial_receipt_then_rest_moves_po_to_received_full(receiving: Receiving) -> None:
    po = po_submitted((5, False), (2, True))
    plain, serial = po.lines
    http, kafka, auth = receiving.http, receiving.kafka, receiving.auth
    loc = await receiving.know(po)
    page = (await http.get("/receiving", headers=auth)).json()
    [item] = [i for i in page["items"] if i["po_id"] == po.po.id]
    assert item["status"] == "Submitted" and item["drop_ship"] is False
    assert [(ln["line_id"], ln["ordered"], ln["received"], ln["open"]) for ln in item["lines"]] == [
        (plain.line_id, 5, 0, 5),
        (serial.line_id, 2, 0, 2),
    ]

    first = await http.post(
        f"/purchase-orders/{po.po.id}/receipts",
        headers=auth,
        json={"lines": [{"line_id": plain.line_id, "quantity": 2, "location_id": loc}]},
    )
    assert first.status_code == 201, first.text
    assert first.json()["po_status"] == "Received Partial"
    page = (await http.get("/receiving", headers=auth)).json()
    [item] = [i for i in page["items"] if i["po_id"] == po.po.id]
    assert item["status"] == "Received Partial"
    assert [(ln["received"], ln["open"]) for ln in item["lines"]] == [(2, 3), (0, 2)]

    rest = await http.post(
        f"/purchase-orders/{po.po.id}/receipts",
        headers=auth,
        json={
            "vendor_invoice": "INV-77",
            "lines": [
                {"line_id": plain.line_id, "quantity": 3, "location_id": loc},
                {
                    "line_id": serial.line_id,
                    "quantity": 2,
                    "location_id": loc,
                    "serials": ["SN-1", "SN-2"],
                },
            ],
        },
    )
    assert rest.status_code == 201, rest.text
    assert rest.json()["po_status"] == "Received Full"
    page = (await http.get("/receiving", headers=auth)).json()
    assert po.po.id not in [i["po_id"] for i in page["items"]]

    events = await kafka.read_events("units.received", 2, settle=0.5)
    assert [e.data["po_status"] for e in events] == ["Received Partial", "Received Full"]
    assert [e.data["receipt_id"] for e in events] == [
        first.json()["receipt_id"],
        rest.json()["receipt_id"],
    ]
    last = events[1].data
    assert last["number"] == po.po.number and last["drop_ship"] is False
    assert last["received_by"]["id"] == "u-tester"
    assert [
        (
            ln["line_id"],
            ln["charge_id"],
            ln["quantity"],
            ln["location_id"],
            ln["serials"],
            ln["open_after"],
        )
        for ln in last["lines"]
    ] == [
        (plain.line_id, plain.charge_id, 3, loc, [], 0),
        (serial.line_id, serial.charge_id, 2, loc, ["SN-1", "SN-2"], 0),
    ]

    history = (await http.get(f"/purchase-orders/{po.po.id}", headers=auth)).json()
    assert history["status"] == "Received Full"
    assert [(r["vendor_invoice"], r["received_by"]["name"]) for r in history["receipts"]] == [
        (None, "Tess Tester"),
        ("INV-77", "Tess Tester"),
    ]
    assert history["receipts"][1]["lines"][1]["serials"] == ["SN-1", "SN-2"]
    assert [(ln["received"], ln["open"]) for ln in history["lines"]] == [(5, 0), (2, 0)]


async def test_refused_receipts_change_nothing(receiving: Receiving) -> None:
    po, other = po_submitted((3, False), (2, True)), po_submitted((1, False))
    plain, serial = po.lines
    http, kafka, auth = receiving.http, receiving.kafka, receiving.auth
    loc = await receiving.know(po, other)
    url = f"/purchase-orders/{po.po.id}/receipts"
    ok = await http.post(
        url,
        headers=auth,
        json={
            "lines": [
                {"line_id": serial.line_id, "quantity": 1, "location_id": loc, "serials": ["A"]}
            ]
        },
    )
    assert ok.status_code == 201
    before = (await http.get(f"/purchase-orders/{po.po.id}", headers=auth)).json()

    def line(line_id, quantity, location=loc, serials=None):
        body = {"line_id": line_id, "quantity": quantity, "location_id": location}
        return body | ({"serials": serials} if serials is not None else {})

    refusals = [
        (url, [line(plain.line_id, 4)], 409, "conflict", "3 units open"),
        ("/purchase-orders/nope/receipts", [line(plain.line_id, 1)], 404, "not-found", "nope"),
        (url, [line(other.lines[0].line_id, 1)], 422, "invalid", "is not on PO"),
        (url, [line(plain.line_id, 1, None)], 422, "invalid", "location is required"),
        (url, [line(plain.line_id, 1, "loc-x")], 422, "unknown-reference", "loc-x"),
        (url, [line(serial.line_id, 1, serials=[])], 422, "invalid", "exactly 1 distinct"),
        (url, [line(serial.line_id, 1, serials=["A"])], 409, "conflict", "received before"),
        # one bad line refuses the whole receipt, good lines included
        (
            url,
            [line(plain.line_id, 1), line(serial.line_id, 2)],
            409,
            "conflict",
            "1 units open",
        ),
    ]
    for target, lines, status, kind, detail in refusals:
        answer = await http.post(target, headers=auth, json={"lines": lines})
        assert answer.status_code == status, (lines, answer.text)
        problem = answer.json()
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert problem["type"].endswith(kind) and detail in problem["detail"], problem

    assert (await http.post(url, json={"lines": [line(plain.line_id, 1)]})).status_code == 401
    shipper = {"Authorization": f"Bearer {token(receiving.settings, 'shipping')}"}
    forbidden = await http.post(url, headers=shipper, json={"lines": [line(plain.line_id, 1)]})
    assert forbidden.status_code == 403

    assert (await http.get(f"/purchase-orders/{po.po.id}", headers=auth)).json() == before
    events = await kafka.read_events("units.received", 1, settle=2.0)
    assert [e.data["receipt_id"] for e in events] == [ok.json()["receipt_id"]]


async def test_closing_a_line_publishes_the_exact_rest(receiving: Receiving) -> None:
    po = po_submitted((5, False))
    [only] = po.lines
    http, kafka, auth = receiving.http, receiving.kafka, receiving.auth
    loc = await receiving.know(po)
    received = await http.post(
        f"/purchase-orders/{po.po.id}/receipts",
        headers=auth,
        json={"lines": [{"line_id": only.line_id, "quantity": 2, "location_id": loc}]},
    )
    assert received.json()["po_status"] == "Received Partial"
    close_url = f"/purchase-orders/{po.po.id}/lines/{only.line_id}/close"
    closed = await http.post(close_url, headers=auth, json={"reason": "discontinued"})
    assert closed.status_code == 200, closed.text
    assert closed.json() == {
        "po_id": po.po.id,
        "line_id": only.line_id,
        "quantity": 3,
        "po_status": "Received Full",
    }
    [event] = await kafka.read_events("po.line_closed", 1, settle=0.5)
    assert event.data["quantity"] == 3 and event.data["po_status"] == "Received Full"
    assert event.data["charge_id"] == only.charge_id
    assert event.data["closed_by"]["id"] == "u-tester"

    again = await http.post(close_url, headers=auth, json={"reason": "twice"})
    assert again.status_code == 409
    wrong_line = await http.post(
        f"/purchase-orders/{po.po.id}/lines/nope/close", headers=auth, json={"reason": "x"}
    )
    assert wrong_line.status_code == 422  # spec: "a line that is not on that PO → 422"
    assert wrong_line.json()["type"].endswith(":invalid")
    assert "'nope' is not on PO" in wrong_line.json()["detail"]
    page = (await http.get("/receiving", headers=auth)).json()
    assert po.po.id not in [i["po_id"] for i in page["items"]]
    history = (await http.get(f"/purchase-orders/{po.po.id}", headers=auth)).json()
    [line] = history["lines"]
    assert (line["received"], line["open"], line["closed"], line["closed_quantity"]) == (
        2,
        0,
        True,
        3,
    )
    assert line["close_reason"] == "discontinued"


async def test_racing_receipts_never_over_receive(receiving: Receiving) -> None:
    po = po_submitted((3, False))
    [only] = po.lines
    http, auth = receiving.http, receiving.auth
    loc = await receiving.know(po)
    body = {"lines": [{"line_id": only.line_id, "quantity": 2, "location_id": loc}]}
    url = f"/purchase-orders/{po.po.id}/receipts"
    answers = await asyncio.gather(*(http.post(url, headers=auth, json=body) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [201, 409]
    history = (await http.get(f"/purchase-orders/{po.po.id}", headers=auth)).json()
    assert history["lines"][0]["received"] == 2 and len(history["receipts"]) == 1


async def test_drop_ship_receipt_needs_no_location(receiving: Receiving) -> None:
    po = po_submitted((2, False), drop_ship=True)
    [only] = po.lines
    http, kafka, auth = receiving.http, receiving.kafka, receiving.auth
    await receiving.know(po)
    page = (await http.get("/receiving", headers=auth)).json()
    assert [i["drop_ship"] for i in page["items"] if i["po_id"] == po.po.id] == [True]
    answer = await http.post(
        f"/purchase-orders/{po.po.id}/receipts",
        headers=auth,
        json={"lines": [{"line_id": only.line_id, "quantity": 2}]},
    )
    assert answer.status_code == 201, answer.text
    [event] = await kafka.read_events("units.received", 1)
    assert event.data["drop_ship"] is True and event.data["po_status"] == "Received Full"
    assert event.data["lines"][0]["location_id"] is None


async def test_a_receipt_with_the_clients_id_is_received_once(receiving: Receiving) -> None:
    """A scanner that sends the receipt's `id` can retry a receipt whose answer it lost:
    the retry (or a racing twin) is a 409, the units are received once and one
    `units.received` carries that id. The same id on another PO is refused too."""
    po, other = po_submitted((5, False)), po_submitted((1, False))
    [only] = po.lines
    http, kafka, auth = receiving.http, receiving.kafka, receiving.auth
    loc = await receiving.know(po, other)
    url = f"/purchase-orders/{po.po.id}/receipts"
    first_id, racing_id = unique("rc-"), unique("rc-")

    def body(receipt_id: str, line_id: str = only.line_id) -> dict:
        return {
            "id": receipt_id,
            "lines": [{"line_id": line_id, "quantity": 1, "location_id": loc}],
        }

    first = await http.post(url, headers=auth, json=body(first_id))
    assert first.status_code == 201, first.text
    assert first.json()["receipt_id"] == first_id
    retried = await http.post(url, headers=auth, json=body(first_id))
    assert retried.status_code == 409, retried.text
    assert retried.headers["content-type"].startswith("application/problem+json")
    assert retried.json()["detail"] == f"receipt {first_id!r} exists already"
    elsewhere = await http.post(
        f"/purchase-orders/{other.po.id}/receipts",
        headers=auth,
        json=body(first_id, other.lines[0].line_id),
    )
    assert elsewhere.status_code == 409, elsewhere.text

    twins = await asyncio.gather(
        *(http.post(url, headers=auth, json=body(racing_id)) for _ in range(2))
    )
    assert sorted(a.status_code for a in twins) == [201, 409]

    history = (await http.get(f"/purchase-orders/{po.po.id}", headers=auth)).json()
    assert history["lines"][0]["received"] == 2
    assert len(history["receipts"]) == 2
    events = await kafka.read_events("units.received", 2, settle=1.0)
    assert sorted(e.data["receipt_id"] for e in events) == sorted([first_id, racing_id])
    other_history = (await http.get(f"/purchase-orders/{other.po.id}", headers=auth)).json()
    assert other_history["receipts"] == []


async def test_a_line_of_tens_of_thousands_of_serials_is_received(receiving: Receiving) -> None:
    """More serials than a statement may have parameters (asyncpg: 32,767). Checking that
    none was received before took one parameter each: the driver refused the statement
    and the receipt was a 503 however often it was retried."""
    count = 33_000
    po = po_submitted((count + 1, True))
    [line] = po.lines
    loc = await receiving.know(po)
    numbers = [f"SN{i:06d}" for i in range(count)]
    body = {"line_id": line.line_id, "quantity": count, "location_id": loc, "serials": numbers}
    answer = await receiving.http.post(
        f"/purchase-orders/{po.po.id}/receipts", headers=receiving.auth, json={"lines": [body]}
    )
    assert answer.status_code == 201, answer.text[:500]
    again = await receiving.http.post(  # and the check still finds them
        f"/purchase-orders/{po.po.id}/receipts",
        headers=receiving.auth,
        json={"lines": [{**body, "quantity": 1, "serials": ["SN000007"]}]},
    )
    assert again.status_code == 409 and "SN000007" in again.json()["detail"], again.text


async def test_what_a_line_publishes_correlates_with_its_own_sales_order(
    receiving: Receiving,
) -> None:
    """Spec: a `correlationid` is the sales order id when there is one. A PO may span sales
    orders: a receipt or a close of one line correlated with the PO's first charge's order,
    so following SO-B's flow missed its receipts and filed them under SO-A's customer."""
    po = po_submitted((2, False), (3, False), (4, False))
    a, b, stock = po.lines
    po = po.model_copy(
        update={
            "lines": [
                a.model_copy(update={"sales_order_id": "so-A"}),
                b.model_copy(update={"sales_order_id": "so-B"}),
                stock.model_copy(update={"charge_id": None}),  # a stock line: the PO's flow
            ]
        }
    )
    http, kafka, auth = receiving.http, receiving.kafka, receiving.auth
    loc = await receiving.know(po)
    receipts = f"/purchase-orders/{po.po.id}/receipts"
    for line in (b, stock):
        body = {"lines": [{"line_id": line.line_id, "quantity": 1, "location_id": loc}]}
        assert (await http.post(receipts, headers=auth, json=body)).status_code == 201
    close = f"/purchase-orders/{po.po.id}/lines/{a.line_id}/close"
    assert (await http.post(close, headers=auth, json={"reason": "x"})).status_code == 200

    received = await kafka.read_events("units.received", 2, settle=0.5)
    assert [e.correlationid for e in received] == ["so-B", po.po.id]
    [closed] = await kafka.read_events("po.line_closed", 1, settle=0.5)
    assert closed.correlationid == "so-A"
