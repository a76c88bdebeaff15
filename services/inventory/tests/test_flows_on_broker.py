"""Inventory in the workflow, on the real broker: won and lost opportunities settle
reservations (R2), pick requests pick all or nothing (R7), receipts stock units for
their charges (R11), deliveries take them out and cancellations put them back (R13, R15)."""

import pytest
from sqlalchemy import select

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Product
from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import eventually, unique

pytestmark = pytest.mark.kafka
WON = spec_for_topic("opportunity.won")
LOST = spec_for_topic("opportunity.lost")
CREATED = spec_for_topic("charge.created")
PICK_REQUESTED = spec_for_topic("pick.requested")
RECEIVED = spec_for_topic("units.received")
DELIVERED = spec_for_topic("shipment.delivered")
CANCELED = spec_for_topic("shipment.canceled")


def stock(on_hand: int = 0, reserved: int = 0, picked: int = 0) -> dict[str, int]:
    available = on_hand - reserved - picked
    return {"on_hand": on_hand, "reserved": reserved, "picked": picked, "available": available}


async def _reserve(inventory, product_id: str, loc: str, quantity: int, opp: str) -> dict:
    response = await inventory.reserve(product_id, loc, quantity, opportunity_id=opp)
    assert response.status_code == 201, response.text
    return response.json()


async def _reserve_for(
    inventory, product_id: str, loc: str, quantity: int, opp: str, quote_item_id: str
) -> dict:
    body = {
        "opportunity_id": opp,
        "quote_item_id": quote_item_id,
        "product_id": product_id,
        "location_id": loc,
        "quantity": quantity,
    }
    response = await inventory.http.post(
        "/reservations", json=body, headers=inventory.auth("sales")
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _applied(inventory, event_id: str) -> bool:
    inbox = inventory.runtime.metadata.tables["inbox"]
    async with inventory.runtime.db.session() as session:
        return bool(
            await session.scalar(select(inbox.c.event_id).where(inbox.c.event_id == event_id))
        )


def _as_product(doc: dict, **changes) -> Product:
    return Product.model_validate({**doc, **changes})


async def test_won_picks_exactly_the_listed_reservations_and_releases_the_rest(inventory) -> None:
    loc = await inventory.location()
    doc = await inventory.product(serialized=True)
    await inventory.adjust(doc["id"], loc, 4, ["S1", "S2", "S3", "S4"])
    opp = unique("opp-")
    listed = await _reserve(inventory, doc["id"], loc, 2, opp)
    unlisted = await _reserve(inventory, doc["id"], loc, 1, opp)
    on_service_charge = await _reserve(inventory, doc["id"], loc, 1, opp)
    assert await inventory.level(doc["id"], loc) == stock(4, reserved=4)

    picked_charge = f.charge(_as_product(doc), 3, reservations=[(listed["id"], loc, 2)])
    service_charge = f.charge(
        _as_product(doc, subject_to_procurement=False),
        1,
        reservations=[(on_service_charge["id"], loc, 1)],
    )
    won = f.opportunity_won(picked_charge, service_charge, opportunity_id=opp)
    sent = await inventory.kafka.publish(WON, won)

    [picked] = await inventory.kafka.read_events("units.picked", 1, settle=1.0)
    assert picked.data == {
        "charge_id": picked_charge.id,
        "product_id": doc["id"],
        "location_id": loc,
        "quantity": 2,
        "serials": ["S1", "S2"],
        "reservation_id": listed["id"],
        "pick_request_id": None,
    }
    assert picked.correlationid == won.sales_order.id
    assert picked.causationid == sent.id
    released = await inventory.kafka.read_events("stock.released", 2, settle=1.0)
    assert sorted((e.data["reservation_id"], e.data["quantity"]) for e in released) == sorted(
        [(unlisted["id"], 1), (on_service_charge["id"], 1)]
    )
    assert await inventory.kafka.read_events("pick.failed", 1, timeout=1.0) == []
    assert await inventory.level(doc["id"], loc) == stock(4, picked=2)
    reservations = (await inventory.get("/reservations", opportunity_id=opp))["items"]
    statuses = {r["id"]: (r["status"], r["charge_id"]) for r in reservations}
    assert statuses == {
        listed["id"]: ("picked", picked_charge.id),
        unlisted["id"]: ("released", None),
        on_service_charge["id"]: ("released", None),
    }


async def test_released_or_short_reservations_fail_their_pick_on_win(inventory) -> None:
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 5)
    opp = unique("opp-")
    gone = await _reserve(inventory, doc["id"], loc, 2, opp)
    short = await _reserve(inventory, doc["id"], loc, 1, opp)
    deleted = await inventory.http.delete(
        f"/reservations/{gone['id']}", headers=inventory.auth("sales")
    )
    assert deleted.status_code == 200

    charge = f.charge(
        _as_product(doc), 5, reservations=[(gone["id"], loc, 2), (short["id"], loc, 2)]
    )
    await inventory.kafka.publish(WON, f.opportunity_won(charge, opportunity_id=opp))

    failed = await inventory.kafka.read_events("pick.failed", 2, settle=1.0)
    assert sorted((e.data["reservation_id"], e.data["quantity"]) for e in failed) == sorted(
        [(gone["id"], 2), (short["id"], 1)]
    )
    assert all(e.data["charge_id"] == charge.id and e.data["reason"] for e in failed)
    [picked] = await inventory.kafka.read_events("units.picked", 1, settle=0.5)
    assert (picked.data["reservation_id"], picked.data["quantity"]) == (short["id"], 1)
    assert await inventory.level(doc["id"], loc) == stock(5, picked=1)


async def test_lost_opportunity_releases_all_its_reservations(inventory) -> None:
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 5)
    opp = unique("opp-")
    mine = [await _reserve(inventory, doc["id"], loc, q, opp) for q in (1, 2)]
    other = await _reserve(inventory, doc["id"], loc, 1, "another-opp")

    await inventory.kafka.publish(LOST, ev.OpportunityLostV1(opportunity_id=opp))
    released = await inventory.kafka.read_events("stock.released", 2, settle=1.0)
    assert sorted(e.data["reservation_id"] for e in released) == sorted(r["id"] for r in mine)
    assert await inventory.level(doc["id"], loc) == stock(5, reserved=1)
    assert (await inventory.get(f"/reservations/{other['id']}"))["status"] == "active"


async def test_a_direct_charge_picks_its_listed_reservations_and_releases_nothing_else(
    inventory,
) -> None:
    """R4: a direct charge is routed as a won one, so its listed reservations become its
    picks (quotes counts them awaiting their pick); no opportunity was won, so the rest
    of the reservation's opportunity stays reserved."""
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 6)
    opp = unique("opp-")
    listed = await _reserve(inventory, doc["id"], loc, 2, opp)
    unlisted = await _reserve(inventory, doc["id"], loc, 1, opp)
    charge = f.charge(
        _as_product(doc), 4, reservations=[(listed["id"], loc, 2), ("no-such-res", loc, 1)]
    )
    await inventory.kafka.publish(CREATED, f.charge_created(charge))

    [picked] = await inventory.kafka.read_events("units.picked", 1, settle=1.0)
    assert (picked.data["charge_id"], picked.data["reservation_id"]) == (charge.id, listed["id"])
    assert picked.data["quantity"] == 2
    assert picked.correlationid == charge.id  # no sales order
    [failed] = await inventory.kafka.read_events("pick.failed", 1, settle=0.5)
    assert (failed.data["reservation_id"], failed.data["quantity"]) == ("no-such-res", 1)
    assert await inventory.level(doc["id"], loc) == stock(6, reserved=1, picked=2)
    assert (await inventory.get(f"/reservations/{unlisted['id']}"))["status"] == "active"
    assert await inventory.kafka.read_events("stock.released", 1, timeout=1.0) == []


async def test_a_reservation_listed_twice_or_not_matching_its_charge_never_leaves_units_waiting(
    inventory,
) -> None:
    """A reservation listed twice on a charge is claimed for both listings' units (what it
    cannot cover fails); one of another product or quote item than the charge's fails."""
    loc = await inventory.location()
    widget, gadget = await inventory.product(), await inventory.product()
    await inventory.adjust(widget["id"], loc, 5)
    await inventory.adjust(gadget["id"], loc, 2)
    opp = unique("opp-")
    twice = await _reserve_for(inventory, widget["id"], loc, 3, opp, "qi-w")
    other_product = await _reserve_for(inventory, gadget["id"], loc, 1, opp, "qi-w")
    other_item = await _reserve_for(inventory, widget["id"], loc, 1, opp, "qi-other")
    charge = f.charge(
        _as_product(widget),
        6,
        quote_item_id="qi-w",
        reservations=[
            (twice["id"], loc, 2),
            (other_product["id"], loc, 1),
            (twice["id"], loc, 2),
            (other_item["id"], loc, 1),
        ],
    )
    await inventory.kafka.publish(WON, f.opportunity_won(charge, opportunity_id=opp))

    failed = await inventory.kafka.read_events("pick.failed", 3, settle=1.0)
    assert sorted((e.data["reservation_id"], e.data["quantity"]) for e in failed) == sorted(
        [(twice["id"], 1), (other_product["id"], 1), (other_item["id"], 1)]
    )
    reasons = {e.data["reservation_id"]: e.data["reason"] for e in failed}
    assert "product" in reasons[other_product["id"]]
    assert "quote item" in reasons[other_item["id"]]
    [picked] = await inventory.kafka.read_events("units.picked", 1, settle=0.5)
    assert (picked.data["reservation_id"], picked.data["quantity"]) == (twice["id"], 3)
    assert await inventory.level(widget["id"], loc) == stock(5, picked=3)
    assert await inventory.level(gadget["id"], loc) == stock(2)  # released with the rest


async def test_a_won_or_lost_opportunity_takes_no_new_reservation(inventory) -> None:
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 3)
    won, lost, still_open = unique("opp-"), unique("opp-"), unique("opp-")
    closing = [
        await inventory.kafka.publish(WON, f.opportunity_won(opportunity_id=won)),
        await inventory.kafka.publish(LOST, ev.OpportunityLostV1(opportunity_id=lost)),
    ]
    for event in closing:
        await eventually(lambda event=event: _applied(inventory, event.id))

    for opp, outcome in ((won, "won"), (lost, "lost")):
        refused = await inventory.reserve(doc["id"], loc, 1, opportunity_id=opp)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert f"was {outcome} already" in refused.json()["detail"]
        assert (await inventory.get("/reservations", opportunity_id=opp))["items"] == []
    assert await inventory.level(doc["id"], loc) == stock(3)
    assert (
        await inventory.reserve(doc["id"], loc, 1, opportunity_id=still_open)
    ).status_code == 201
    assert len(await inventory.kafka.read_events("stock.reserved", 1, settle=1.0)) == 1


async def test_pick_request_is_all_or_nothing(inventory) -> None:
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 3)
    first = ev.PickRequestedV1(
        request_id="pr-1", charge_id="ch-1", product_id=doc["id"], location_id=loc, quantity=2
    )
    await inventory.kafka.publish(PICK_REQUESTED, first)
    [picked] = await inventory.kafka.read_events("units.picked", 1)
    assert picked.data["pick_request_id"] == "pr-1"
    assert (picked.data["charge_id"], picked.data["quantity"]) == ("ch-1", 2)
    assert picked.data["reservation_id"] is None

    second = first.model_copy(update={"request_id": "pr-2", "charge_id": "ch-2"})
    await inventory.kafka.publish(PICK_REQUESTED, second)
    [failed] = await inventory.kafka.read_events("pick.failed", 1, settle=1.0)
    assert failed.data["pick_request_id"] == "pr-2"
    assert (failed.data["charge_id"], failed.data["quantity"]) == ("ch-2", 2)
    assert "only 1 available" in failed.data["reason"]
    assert len(await inventory.kafka.read_events("units.picked", 1, settle=1.0)) == 1
    assert await inventory.level(doc["id"], loc) == stock(3, picked=2)


def _receipt(loc: str, product_id: str, *lines: tuple, drop_ship: bool = False):
    return ev.UnitsReceivedV1(
        receipt_id=unique("rc-"),
        po_id=unique("po-"),
        number="PO-000001",
        drop_ship=drop_ship,
        po_status=POStatus.RECEIVED_PARTIAL,
        received_by=f.person("Rick Receiver"),
        lines=[
            ev.ReceivedLine(
                line_id=unique("ln-"),
                charge_id=charge_id,
                product_id=product_id,
                quantity=quantity,
                location_id=loc,
                serials=serials,
                open_after=0,
            )
            for charge_id, quantity, serials in lines
        ],
    )


def _delivery(charge_id: str, product_id: str, loc: str | None, quantity: int, serials=(), **kw):
    return ev.ShipmentDeliveredV1(
        delivery_id=kw.pop("delivery_id", unique("dl-")),
        drop_ship=kw.pop("drop_ship", False),
        destination=f.address(),
        delivered_by=f.person("Sam Shipper"),
        items=[
            ev.DeliveredItem(
                item_id=unique("it-"),
                charge_id=charge_id,
                seq=kw.pop("seq", 1),
                product_id=product_id,
                quantity=quantity,
                location_id=loc,
                serials=list(serials),
                transfer_id=kw.pop("transfer_id", unique("tr-")),
            )
        ],
    )


async def test_receipt_delivery_and_cancel_leave_stock_where_it_started(inventory) -> None:
    loc = await inventory.location()
    product_id = unique("never-in-catalog-")  # R11: any product received enters stock
    charge_id = unique("ch-")
    receipt = _receipt(loc, product_id, (charge_id, 2, ["X1", "X2"]), (None, 3, []))
    await inventory.kafka.publish(RECEIVED, receipt)
    await eventually(lambda: _level_is(inventory, product_id, loc, stock(5, picked=2)))

    delivery = _delivery(charge_id, product_id, loc, 2, ["X1", "X2"])
    await inventory.kafka.publish(DELIVERED, delivery)
    await eventually(lambda: _level_is(inventory, product_id, loc, stock(3)))

    original = delivery.items[0]
    cancel = f.shipment_canceled(
        delivery.delivery_id,
        f.canceled_item(
            unique("it-"),
            charge_id,
            product_id,
            2,
            location_id=loc,
            serials=["X1", "X2"],
            transfer_id="tr-reversal",
            original_transfer_id=original.transfer_id,
        ),
        reason="customer not on site",
        canceled_by=f.person("Sam Shipper"),
    )
    await inventory.kafka.publish(CANCELED, cancel)
    await eventually(lambda: _level_is(inventory, product_id, loc, stock(5, picked=2)))

    trail = await inventory.transfers(charge_id=charge_id)
    assert [
        (t["cause"], t["from_location_id"], t["to_location_id"], t["quantity"]) for t in trail
    ] == [
        ("receipt", None, loc, 2),
        ("delivery", loc, None, 2),
        ("cancellation", None, loc, 2),
    ]
    assert [t["id"] for t in trail[1:]] == [original.transfer_id, "tr-reversal"]
    assert [t["reference"] for t in trail] == [
        receipt.receipt_id,
        delivery.delivery_id,
        delivery.delivery_id,
    ]
    assert all(t["serials"] == ["X1", "X2"] for t in trail)
    assert len(await inventory.transfers(product_id=product_id)) == 4  # + the stock line
    assert await inventory.kafka.read_events("units.picked", 1, timeout=1.0) == []

    # The restored units are held for the charge again: they can be delivered again.
    again = _delivery(charge_id, product_id, loc, 1, ["X2"], seq=3)
    await inventory.kafka.publish(DELIVERED, again)
    await eventually(lambda: _level_is(inventory, product_id, loc, stock(4, picked=1)))


async def test_a_delivery_of_many_items_takes_each_ones_units_and_serials(inventory) -> None:
    """Items of one delivery come out of stock together: named serials, or else the
    oldest held for the item's charge; a second copy of the delivery changes nothing;
    one item not held parks the whole delivery."""
    loc = await inventory.location()
    product_id = unique("serialized-")
    a, b, c = unique("ch-a-"), unique("ch-b-"), unique("ch-c-")
    receipt = _receipt(loc, product_id, (a, 2, ["S3", "S1"]), (b, 2, ["S2", "S4"]), (None, 1, []))
    await inventory.kafka.publish(RECEIVED, receipt)
    await eventually(lambda: _level_is(inventory, product_id, loc, stock(5, picked=4)))

    def item(charge_id: str, quantity: int, serials: list[str], transfer_id: str, seq: int = 1):
        return ev.DeliveredItem(
            item_id=unique("it-"),
            charge_id=charge_id,
            seq=seq,
            product_id=product_id,
            quantity=quantity,
            location_id=loc,
            serials=serials,
            transfer_id=transfer_id,
        )

    delivery = ev.ShipmentDeliveredV1(
        delivery_id=unique("dl-"),
        drop_ship=False,
        destination=f.address(),
        delivered_by=f.person("Sam Shipper"),
        items=[item(a, 1, [], unique("tr-")), item(b, 1, ["S4"], unique("tr-"))],
    )
    await inventory.kafka.publish(DELIVERED, delivery)
    await eventually(lambda: _level_is(inventory, product_id, loc, stock(3, picked=2)))
    copy = await inventory.kafka.publish(
        DELIVERED, delivery.model_copy(update={"delivery_id": "copy"})
    )  # a new event, the same seqs: applied already
    await eventually(lambda: _applied(inventory, copy.id))
    assert await inventory.level(product_id, loc) == stock(3, picked=2)
    trail = await inventory.transfers(product_id=product_id)
    delivered = [(t["charge_id"], t["serials"]) for t in trail if t["cause"] == "delivery"]
    assert delivered == [(a, ["S1"]), (b, ["S4"])]  # a: the oldest of its own

    # b's held units are there, c's are not: nothing of the delivery happens until they are
    waits = ev.ShipmentDeliveredV1(
        delivery_id=unique("dl-"),
        drop_ship=False,
        destination=f.address(),
        delivered_by=f.person("Sam Shipper"),
        items=[item(b, 1, [], unique("tr-"), seq=2), item(c, 1, [], unique("tr-"))],
    )
    await inventory.kafka.publish(DELIVERED, waits)
    await eventually(lambda: _parked(inventory, 1))
    assert await inventory.level(product_id, loc) == stock(3, picked=2)
    await inventory.kafka.publish(RECEIVED, _receipt(loc, product_id, (c, 1, ["S5"])))
    await eventually(lambda: _parked(inventory, 0))
    await eventually(lambda: _level_is(inventory, product_id, loc, stock(2, picked=1)))
    trail = await inventory.transfers(product_id=product_id)
    delivered = [(t["charge_id"], t["serials"]) for t in trail if t["cause"] == "delivery"]
    assert delivered == [(a, ["S1"]), (b, ["S4"]), (b, ["S2"]), (c, ["S5"])]


async def test_delivery_seen_before_its_receipt_waits_for_it(inventory) -> None:
    loc = await inventory.location()
    doc = await inventory.product()
    charge_id = unique("ch-")
    delivery = _delivery(charge_id, doc["id"], loc, 2, transfer_id="tr-early")
    await inventory.kafka.publish(DELIVERED, delivery)
    await eventually(lambda: _parked(inventory, 1))
    assert await inventory.level(doc["id"], loc) == stock(0)
    assert await inventory.transfers() == []

    await inventory.kafka.publish(RECEIVED, _receipt(loc, doc["id"], (charge_id, 2, [])))
    await eventually(lambda: _parked(inventory, 0))
    assert await inventory.level(doc["id"], loc) == stock(0)
    trail = await inventory.transfers(charge_id=charge_id)
    assert [(t["cause"], t["id"]) for t in trail][1:] == [("delivery", "tr-early")]


async def test_drop_ship_and_unlocated_deliveries_never_touch_stock(inventory) -> None:
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 2)
    drop_receipt = _receipt(loc, doc["id"], ("ch-d", 2, []), drop_ship=True)
    drop_delivery = _delivery("ch-d", doc["id"], None, 2, drop_ship=True)
    no_location = _delivery("ch-n", doc["id"], None, 1, transfer_id=None)
    sent = [
        await inventory.kafka.publish(RECEIVED, drop_receipt),
        await inventory.kafka.publish(DELIVERED, drop_delivery),
        await inventory.kafka.publish(DELIVERED, no_location),
    ]
    for event in sent:
        await eventually(lambda event=event: _applied(inventory, event.id))
    assert await inventory.level(doc["id"], loc) == stock(2)
    assert [t["cause"] for t in await inventory.transfers()] == ["adjustment"]


async def _level_is(inventory, product_id: str, loc: str, expected: dict) -> bool:
    return await inventory.level(product_id, loc) == expected


async def _parked(inventory, count: int) -> bool:
    parked = inventory.runtime.metadata.tables["parked"]
    async with inventory.runtime.db.session() as session:
        return len((await session.execute(select(parked.c.event_id))).all()) == count


@pytest.mark.parametrize("topic", ["opportunity.won", "charge.created"])
async def test_a_charge_announced_again_under_a_new_event_id_fails_its_pick_once(
    inventory, topic: str
) -> None:
    """An outside producer's replay gives the same charge a new event id, so the inbox
    does not catch it. A listing whose pick failed leaves no picked reservation behind;
    a second `pick.failed` for it would have quotes send its units to procurement twice."""
    loc = await inventory.location()
    doc = await inventory.product()
    charge = f.charge(_as_product(doc), 2, reservations=[("no-such-res", loc, 2)])
    announced = (
        f.opportunity_won(charge) if topic == "opportunity.won" else f.charge_created(charge)
    )
    spec = spec_for_topic(topic)
    first = await inventory.kafka.publish(spec, announced)
    [failed] = await inventory.kafka.read_events("pick.failed", 1, settle=0.5)
    assert (failed.data["charge_id"], failed.data["quantity"]) == (charge.id, 2)

    again = await inventory.kafka.publish(spec, announced)
    assert again.id != first.id

    await eventually(lambda: _applied(inventory, again.id))
    assert len(await inventory.kafka.read_events("pick.failed", 2, timeout=1.0)) == 1


async def test_an_opportunity_won_again_under_new_ids_settles_nothing_again(inventory) -> None:
    """An opportunity wins one sales order (R3). Its won published again under a new
    sales order and new charge ids (an outside producer's retry that made its ids
    afresh) is ignored, as quotes ignores it: its listings would only fail their picks
    (the reservation is picked already) for charges quotes never stored."""
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 2)
    reserved = await inventory.reserve(doc["id"], loc, 2, opportunity_id="opp-twice")
    assert reserved.status_code == 201, reserved.text
    res_id = reserved.json()["id"]
    first = f.charge(_as_product(doc), 2, reservations=[(res_id, loc, 2)])
    won = f.opportunity_won(first, opportunity_id="opp-twice", sales_order_id="so-a")
    await inventory.kafka.publish(WON, won)
    [picked] = await inventory.kafka.read_events("units.picked", 1, settle=0.5)
    assert (picked.data["charge_id"], picked.data["quantity"]) == (first.id, 2)

    second = f.charge(_as_product(doc), 2, reservations=[(res_id, loc, 2)])
    retried = f.opportunity_won(second, opportunity_id="opp-twice", sales_order_id="so-b")
    again = await inventory.kafka.publish(WON, retried)
    await eventually(lambda: _applied(inventory, again.id))
    assert await inventory.kafka.read_events("pick.failed", 1, timeout=1.0) == []
    assert len(await inventory.kafka.read_events("units.picked", 2, timeout=1.0)) == 1


async def test_a_reservation_listed_on_two_charges_of_a_won_is_picked_for_both(inventory) -> None:
    """R2: exactly the quantities listed on the won's charges become picks. An outside
    producer may list one reservation on two charges (with no quote item to tell them
    apart): the first charge's pick released the rest at once, so the second one's
    units failed their pick and were ordered from a vendor while the stock was freed."""
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 6)
    reserved = await inventory.reserve(doc["id"], loc, 6, opportunity_id="opp-shared")
    res_id = reserved.json()["id"]
    a = f.charge(_as_product(doc), 3, reservations=[(res_id, loc, 3)])
    b = f.charge(_as_product(doc), 2, reservations=[(res_id, loc, 2)])
    await inventory.kafka.publish(WON, f.opportunity_won(a, b, opportunity_id="opp-shared"))

    picked = await inventory.kafka.read_events("units.picked", 2, settle=0.5)
    assert sorted((e.data["charge_id"], e.data["quantity"]) for e in picked) == sorted(
        [(a.id, 3), (b.id, 2)]
    )
    assert await inventory.kafka.read_events("pick.failed", 1, timeout=0.5) == []
    [released] = await inventory.kafka.read_events("stock.released", 1, settle=0.5)
    assert released.data["quantity"] == 1  # the unit neither charge listed
    assert await inventory.level(doc["id"], loc) == stock(6, picked=5)


async def test_a_direct_charge_not_subject_to_procurement_releases_what_it_lists(
    inventory,
) -> None:
    """R3: reservations listed on a charge not subject to procurement are ignored, and
    inventory releases them. A won's went with the rest of its opportunity's; a direct
    charge's stayed reserved until their opportunity closed. (The product's flag has to
    have changed since the reservation was made, which only subject products take.)"""
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 3)
    reserved = await inventory.reserve(doc["id"], loc, 2, opportunity_id=unique("opp-"))
    res_id = reserved.json()["id"]
    now_not_subject = _as_product(doc, subject_to_procurement=False)
    charge = f.charge(now_not_subject, 2, reservations=[(res_id, loc, 2)])
    await inventory.kafka.publish(CREATED, f.charge_created(charge))
    [released] = await inventory.kafka.read_events("stock.released", 1, settle=0.5)
    assert (released.data["reservation_id"], released.data["quantity"]) == (res_id, 2)
    assert await inventory.level(doc["id"], loc) == stock(3)
    assert await inventory.kafka.read_events("units.picked", 1, timeout=0.5) == []


async def test_a_charge_announced_again_listing_other_reservations_picks_nothing_more(
    inventory,
) -> None:
    """Quotes keeps the first description of a charge and ignores any later one, by
    `charge.created` or in a won. A retry under a new event id that lists another
    reservation picked it for the charge: units held for good for a pick quotes never
    counts (its ledger parks it), or ordered again after a `pick.failed`."""
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 5)
    r1 = (await inventory.reserve(doc["id"], loc, 2, opportunity_id=unique("opp-"))).json()
    r2 = (await inventory.reserve(doc["id"], loc, 1, opportunity_id=unique("opp-"))).json()
    charge = f.charge(_as_product(doc), 2, reservations=[(r1["id"], loc, 2)])
    await inventory.kafka.publish(CREATED, f.charge_created(charge))
    [picked] = await inventory.kafka.read_events("units.picked", 1, settle=0.5)
    assert (picked.data["charge_id"], picked.data["quantity"]) == (charge.id, 2)

    relisted = charge.model_copy(
        update={
            "reservations": f.charge(
                _as_product(doc), 1, reservations=[(r2["id"], loc, 1)]
            ).reservations
        }
    )
    again = await inventory.kafka.publish(CREATED, f.charge_created(relisted))
    won = await inventory.kafka.publish(WON, f.opportunity_won(relisted))  # in a won too
    await eventually(lambda: _applied(inventory, again.id))
    await eventually(lambda: _applied(inventory, won.id))
    assert len(await inventory.kafka.read_events("units.picked", 2, timeout=1.0)) == 1
    assert await inventory.kafka.read_events("pick.failed", 1, timeout=0.5) == []
    assert await inventory.level(doc["id"], loc) == stock(5, reserved=1, picked=2)


async def test_a_won_under_a_sales_order_that_exists_picks_nothing(inventory) -> None:
    """Another opportunity won under a sales order id already made (an outside producer
    reusing it): quotes ignores the whole event, so inventory picks nothing for it and
    leaves its reservations to the opportunity's close."""
    loc = await inventory.location()
    doc = await inventory.product()
    await inventory.adjust(doc["id"], loc, 4)
    first = f.charge(_as_product(doc), 1)
    so_id = unique("so-")
    await inventory.kafka.publish(WON, f.opportunity_won(first, sales_order_id=so_id))
    opp = unique("opp-")
    reserved = (await inventory.reserve(doc["id"], loc, 2, opportunity_id=opp)).json()
    second = f.charge(_as_product(doc), 2, reservations=[(reserved["id"], loc, 2)])
    won = await inventory.kafka.publish(
        WON, f.opportunity_won(second, sales_order_id=so_id, opportunity_id=opp)
    )
    await eventually(lambda: _applied(inventory, won.id))
    assert await inventory.kafka.read_events("units.picked", 1, timeout=1.0) == []
    assert await inventory.level(doc["id"], loc) == stock(4, reserved=2)
    # The opportunity stays open, as in quotes: won after all, under its own order.
    third = f.charge(_as_product(doc), 2, reservations=[(reserved["id"], loc, 2)])
    await inventory.kafka.publish(
        WON, f.opportunity_won(third, sales_order_id=unique("so-"), opportunity_id=opp)
    )
    [picked] = await inventory.kafka.read_events("units.picked", 1, settle=0.5)
    assert (picked.data["charge_id"], picked.data["quantity"]) == (third.id, 2)
    assert await inventory.level(doc["id"], loc) == stock(4, picked=2)
