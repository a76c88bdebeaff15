"""Counts summed over many events or requests hold more than one quantity's bound
(`MAX_UNITS`), the same on either database. A quantity fits 4 bytes, but a location's
stock, what is held for a charge, a charge's deliveries and their cancellations, and a
PO line's receipts add many: PostgreSQL's INTEGER refused the sum (a dead letter, a
refused request) where SQLite stored it. Such counters are 8 bytes now (`UNIT_SUM`)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from procure_contracts.shapes import MAX_UNITS, Location
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record, served_directly, token
from procure_inventory.models import holds, stock
from procure_purchasing.models import po_lines
from procure_quotes.models import charges as quote_charges
from procure_runtime.consumer import Outcome, Record
from procure_runtime.service import ServiceRuntime

TWICE = 2 * MAX_UNITS


def _client(app: Any, runtime: ServiceRuntime, role: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://service",
        headers={"Authorization": f"Bearer {token(runtime.settings, role)}"},
    )


async def _applied(runtime: ServiceRuntime, records: list[Record]) -> None:
    """Each record applied; a dead letter fails the test with its reason."""
    reasons: list[str] = []

    async def dead_letter(value: bytes, topic: str, **kw: Any) -> None:
        reasons.append(dict(kw["headers"])["x-error-message"].decode())

    runtime.consumer.publish = dead_letter  # the dead-letter topic's publisher
    outcomes = [await runtime.consumer.process(r) for r in records]
    assert (outcomes, reasons) == ([Outcome.APPLIED] * len(records), [])


async def test_stock_and_holds_sum_receipts_and_adjustments_past_one_quantity(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    def receipt(n: int, charge_id: str | None, location_id: str) -> Record:
        line = f.received_line(
            f"ln-{n}", "p-1", MAX_UNITS, charge_id=charge_id, location_id=location_id
        )
        return record("units.received", f.units_received(n, line), n)

    app, runtime = await served_directly("inventory", database_url("inventory"), tmp_path)
    try:
        # Received for stock at one location, and for a charge (picked and held) at another.
        receipts = [receipt(1, None, "loc-1"), receipt(2, None, "loc-1")]
        await _applied(
            runtime, [*receipts, receipt(3, "ch-1", "loc-2"), receipt(4, "ch-1", "loc-2")]
        )
        async with _client(app, runtime, "inventory") as http:
            body = {"name": "Yard", "address": f.address().model_dump()}
            location = (await http.post("/locations", json=body)).json()["id"]
            product = {"sku": "SKU-1", "name": "Bolt", "is_inventory": True}
            product |= {"subject_to_procurement": False, "serialized": False}
            product |= {"unit_cost": "0.01", "unit_price": "0.02"}
            product_id = (await http.post("/products", json=product)).json()["id"]
            adjust = {
                "product_id": product_id,
                "location_id": location,
                "quantity": MAX_UNITS,
                "reason": "count",
            }
            adjusted = [await http.post("/stock/adjustments", json=adjust) for _ in range(2)]
            levels = (await http.get("/availability", params={"product_id": product_id})).json()
        async with runtime.db.session() as session:
            counts = {
                r.location_id: (r.on_hand, r.reserved, r.picked)
                for r in await session.execute(select(stock).where(stock.c.product_id == "p-1"))
            }
            held = (await session.execute(select(holds.c.quantity))).scalars().all()
    finally:
        await runtime.db.engine.dispose()
    assert counts == {"loc-1": (TWICE, 0, 0), "loc-2": (TWICE, 0, TWICE)}
    assert held == [TWICE]
    assert [a.status_code for a in adjusted] == [201, 201], adjusted[-1].text
    assert [(i["on_hand"], i["available"]) for i in levels["items"]] == [(TWICE, TWICE)]


async def test_a_charge_delivered_again_after_a_cancellation_counts_both(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Quotes counts every delivery and every cancellation of one: a charge of
    `MAX_UNITS` delivered, canceled and delivered again has delivered past the bound."""
    charge = f.charge(f.product(procurement=False, unit_price="0.01"), MAX_UNITS)

    def delivered(n: int, units: int) -> Record:
        item = f.delivered_item(f"it-{n}", charge.id, charge.product.id, units, seq=n)
        return record("shipment.delivered", f.shipment_delivered(n, item), n)

    item = f.canceled_item("it-c", charge.id, charge.product.id, MAX_UNITS, seq=2)
    canceled = f.shipment_canceled(1, item)
    runtime = await fed_directly("quotes", database_url("quotes"), tmp_path)
    try:
        won = record("opportunity.won", f.opportunity_won(charge), 0)
        again = [delivered(1, MAX_UNITS), record("shipment.canceled", canceled, 2), delivered(3, 1)]
        await _applied(runtime, [won, *again])
        async with runtime.db.session() as session:
            row = (
                await session.execute(
                    select(quote_charges.c.delivered, quote_charges.c.delivery_canceled)
                )
            ).one()
    finally:
        await runtime.db.engine.dispose()
    assert tuple(row) == (MAX_UNITS + 1, MAX_UNITS)


async def test_a_po_lines_receipts_sum_past_one_quantity(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Purchasing adds up what receiving reports of a line, as it is reported."""
    vendor = f.vendor(id="v-1")
    product = f.product(id="p-1", vendor=vendor, inventory=True, unit_cost="0.00")
    location = Location(id="loc-1", name="Main", address=f.address())
    app, runtime = await served_directly("purchasing", database_url("purchasing"), tmp_path)
    try:
        catalog = [("catalog.vendors", vendor), ("catalog.products", product)]
        catalog.append(("catalog.locations", location))
        await _applied(runtime, [record(t, d, n) for n, (t, d) in enumerate(catalog)])
        async with _client(app, runtime, "purchasing.order") as http:
            po = {"vendor_id": "v-1", "ship_to": {"kind": "location", "location_id": "loc-1"}}
            po["stock_lines"] = [{"product_id": "p-1", "quantity": MAX_UNITS}]
            made = await http.post("/purchase-orders", json=po)
            assert made.status_code == 201, made.text
            po_id, line_id = made.json()["id"], made.json()["lines"][0]["line_id"]
            assert (await http.post(f"/purchase-orders/{po_id}/submit")).status_code == 200

        def receipt(n: int) -> Record:
            line = f.received_line(line_id, "p-1", MAX_UNITS)
            data = f.units_received(n, line).model_copy(update={"po_id": po_id})
            return record("units.received", data, 10 + n)

        await _applied(runtime, [receipt(1), receipt(2)])
        async with runtime.db.session() as session:
            received = (await session.execute(select(po_lines.c.received))).scalars().all()
    finally:
        await runtime.db.engine.dispose()
    assert received == [TWICE]
