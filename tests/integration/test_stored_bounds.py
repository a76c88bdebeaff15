"""Text the services keep in bounded columns is bounded where it enters, so the same
input has the same outcome on either database. SQLite does not bound text by its
declared length: a PO number too long for quotes' column, a serial longer than
inventory's key, a unit cost written with 40 decimals were stored on SQLite and
dead-lettered on PostgreSQL (or, over HTTP, a 201 on one and a 422 on the other). Now the
contract refuses them on both, and every column that keeps such a value is at least as
wide as the contract allows."""

import dataclasses
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from pydantic import TypeAdapter
from sqlalchemy import Column, String, select

from procure_contracts import events as ev
from procure_contracts.shapes import MAX_PLACES, MAX_UNITS, PONumber, Serial
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record, token
from procure_inventory.models import serials as inventory_serials
from procure_purchasing.models import charges as purchasing_charges
from procure_purchasing.models import po_lines as purchasing_lines
from procure_purchasing.models import purchase_orders as purchasing_orders
from procure_quotes.app import build as build_quotes
from procure_quotes.models import charge_po_lines, opportunities
from procure_receiving.models import po_lines, purchase_orders
from procure_receiving.models import received_serials as receiving_serials
from procure_runtime.consumer import Outcome, Record
from procure_runtime.settings import load_settings
from procure_runtime.text import NUL
from procure_shipping.models import deliveries, ready_items


def _max_length(annotated: Any) -> int:
    return int(TypeAdapter(annotated).json_schema()["maxLength"])


#: The widest text an amount's exact form takes: a sign, 16 digits, the point, the places.
AMOUNT_TEXT = 1 + 16 + 1 + MAX_PLACES

KEPT: list[tuple[Column[Any], int]] = [
    (charge_po_lines.c.po_number, _max_length(PONumber)),
    (purchase_orders.c.number, _max_length(PONumber)),
    (deliveries.c.po_number, _max_length(PONumber)),
    (purchasing_orders.c.number, _max_length(PONumber)),
    (inventory_serials.c.serial, _max_length(Serial)),
    (receiving_serials.c.serial, _max_length(Serial)),
    (po_lines.c.unit_cost, AMOUNT_TEXT),
    (purchasing_lines.c.unit_cost, AMOUNT_TEXT),
    (opportunities.c.name, 500),  # quotes' `OpportunityIn.name`
]


@pytest.mark.parametrize("column, widest", KEPT, ids=lambda c: str(c))
def test_every_column_keeping_a_bounded_value_holds_the_widest_one(
    column: Column[Any], widest: int
) -> None:
    assert isinstance(column.type, String)
    assert column.type.length is None or column.type.length >= widest


def _edited(rec: Record, edit: Callable[[dict[str, Any]], None]) -> Record:
    """`rec` with its event's `data` changed as a producer outside the models could."""
    doc = json.loads(rec.value or b"")
    edit(doc["data"])
    return dataclasses.replace(rec, value=json.dumps(doc).encode())


def _submitted(offset: int, edit: Callable[[dict[str, Any]], None]) -> Record:
    line = f.po_line(f.charge(f.product(), 2, id="ch-1"), "ln-1")
    return _edited(record("po.submitted", f.po_submitted(offset, line), offset), edit)


def _number(value: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["po"].update(number=value)


def _cost(value: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["lines"][0].update(unit_cost=value)


async def _fed(
    runtime: Any, records: list[Record], letters: list[dict[str, str]] | None = None
) -> tuple[list[Outcome], list[bytes]]:
    """Each record's outcome, and the values dead-lettered (their headers into `letters`)."""
    dead: list[bytes] = []

    async def dead_letter(value: bytes, topic: str, **kw: Any) -> None:
        dead.append(value)
        if letters is not None:
            letters.append({k: v.decode() for k, v in kw["headers"]})

    runtime.consumer.publish = dead_letter  # the dead-letter topic's publisher
    return [await runtime.consumer.process(r) for r in records], dead


async def _summed_past_the_bound(
    runtime: Any, make: Callable[[int, int], Record], column: Any
) -> None:
    """A charge given `MAX_UNITS` then one more (alone, and in a batch with others) keeps
    the first and rejects the rest: the same on either database."""
    full, over, batch = make(1, MAX_UNITS), make(2, 1), [make(3, 1), make(4, 2)]
    letters: list[dict[str, str]] = []
    try:
        outcomes, dead = await _fed(runtime, [full, over], letters)
        await runtime.consumer.process_batch(batch)  # each refused, alone or together
        async with runtime.db.session() as session:
            held = (await session.execute(select(column))).scalars().all()
    finally:
        await runtime.db.engine.dispose()
    assert outcomes == [Outcome.APPLIED, Outcome.DEAD_LETTERED]
    assert dead == [over.value, *(r.value for r in batch)]
    # Rejected by the service's rule, not the database's overflow ("invalid-data").
    assert [h["x-error-type"] for h in letters] == ["rejected"] * 3
    assert all(f"over {MAX_UNITS} units" in h["x-error-message"] for h in letters)
    assert held == [MAX_UNITS]


async def test_a_po_number_or_unit_cost_no_column_holds_is_refused_on_either_database(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    long_number = _submitted(1, _number("PO-" + "9" * 30))  # 33 characters
    many_places = _submitted(2, _cost("1234567890123456." + "1" * 16))
    widest = _submitted(3, _number("P" * 32))
    zeros = _submitted(4, _cost("1.5" + "0" * 40))
    runtime = await fed_directly("receiving", database_url("receiving"), tmp_path)
    try:
        outcomes, dead = await _fed(runtime, [long_number, many_places, widest, zeros])
        async with runtime.db.session() as session:
            kept = (
                await session.execute(select(purchase_orders.c.id, purchase_orders.c.number))
            ).all()
            costs = (await session.execute(select(po_lines.c.po_id, po_lines.c.unit_cost))).all()
    finally:
        await runtime.db.engine.dispose()
    assert outcomes == [Outcome.DEAD_LETTERED] * 2 + [Outcome.APPLIED] * 2
    assert dead == [long_number.value, many_places.value]  # byte for byte
    assert sorted(kept) == [("po-3", "P" * 32), ("po-4", "PO-4")]
    # The zeros past the twelfth place are dropped: the same amount, in the column.
    assert dict(costs)["po-4"] == "1.500000000000"


async def test_a_serial_longer_than_inventorys_key_is_refused_on_either_database(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    def receipt(n: int, serial: str) -> Record:
        line = f.received_line(f"ln-{n}", "p-1", 1, charge_id="ch-1", serials=[serial])
        return record("units.received", f.units_received(n, line), n)

    runtime = await fed_directly("inventory", database_url("inventory"), tmp_path)
    try:
        too_long = _edited(receipt(1, "S"), lambda d: d["lines"][0].update(serials=["S" * 201]))
        outcomes, dead = await _fed(runtime, [too_long, receipt(2, "S" * 200)])
        async with runtime.db.session() as session:
            kept = (await session.execute(select(inventory_serials.c.serial))).scalars().all()
    finally:
        await runtime.db.engine.dispose()
    assert outcomes == [Outcome.DEAD_LETTERED, Outcome.APPLIED]
    assert dead == [too_long.value]
    assert kept == ["S" * 200]


async def test_an_opportunity_name_longer_than_its_column_is_a_422(tmp_path: Path) -> None:
    """Refused by the request's model, before the service touches its database."""
    settings = load_settings("quotes", database_url=f"sqlite+aiosqlite:///{tmp_path}/q.db")
    app, _ = build_quotes(settings)
    sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
    body = {"owner": f.person().model_dump(), "organization": f.organization().model_dump()}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://quotes"
    ) as http:
        answer = await http.post("/opportunities", headers=sales, json={**body, "name": "N" * 501})
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "name" in answer.json()["detail"]


async def test_units_ready_past_what_a_charge_can_have_are_refused_on_either_database(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Each `charge.ready` holds at most `MAX_UNITS`, but their sum for one charge was
    PostgreSQL's integer overflow (dead-lettered) and SQLite's stored count. Found by the
    event fuzz (test_fuzz_events.py)."""

    def ready(n: int, units: int) -> Record:
        data = ev.ChargeReadyV1(
            charge_id="ch-1",
            product=f.product(id="p-1"),
            quantity=units,
            destination=f.address(),
        )
        return record("charge.ready", data, n)

    runtime = await fed_directly("shipping", database_url("shipping"), tmp_path)
    await _summed_past_the_bound(runtime, ready, ready_items.c.quantity)


async def test_text_no_database_can_store_is_refused_on_either_database(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """U+0000 (SQLite stored it, PostgreSQL refused it in the handler) is dead-lettered
    before any handler runs, as a request holding it is a 422; so is a lone surrogate,
    which no UTF-8 text holds (the event's JSON parser refuses it). Found by the event
    fuzz (test_fuzz_events.py)."""
    pair = _submitted(1, lambda data: data["submitted_by"].update(name="Ann \U0001f600"))
    nul = _submitted(2, _number("PO-\u0000"))
    lone = _submitted(3, lambda data: data["submitted_by"].update(name="\ud800"))
    runtime = await fed_directly("receiving", database_url("receiving"), tmp_path)
    letters: list[dict[str, str]] = []
    try:
        outcomes, dead = await _fed(runtime, [pair, nul, lone], letters)
        # Logged with the dead letters: no event, not the last one applied (`pair`).
        assert structlog.contextvars.get_contextvars()["event_id"] is None
        async with runtime.db.session() as session:
            kept = (await session.execute(select(purchase_orders.c.id))).scalars().all()
    finally:
        await runtime.db.engine.dispose()
    assert outcomes == [Outcome.APPLIED, Outcome.DEAD_LETTERED, Outcome.DEAD_LETTERED]
    assert dead == [nul.value, lone.value]  # byte for byte
    assert letters[0]["x-error-message"] == NUL
    assert kept == ["po-1"]  # a pair, as an emoji is escaped, is text like any other


async def test_a_po_naming_one_line_id_twice_is_refused_on_either_database(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Consumers key a PO's lines by id: receiving's insert broke its key on PostgreSQL,
    a handler error retried until dead-lettered. Found by the event fuzz."""
    twice = _submitted(1, lambda data: data["lines"].append(data["lines"][0]))
    runtime = await fed_directly("receiving", database_url("receiving"), tmp_path)
    letters: list[dict[str, str]] = []
    try:
        outcomes, dead = await _fed(runtime, [twice], letters)
    finally:
        await runtime.db.engine.dispose()
    assert (outcomes, dead) == ([Outcome.DEAD_LETTERED], [twice.value])
    assert "line_id is repeated" in letters[0]["x-error-message"]


async def test_units_sent_to_procurement_past_what_a_charge_can_have_are_refused(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """As for shipping's ready units: purchasing's counters summed past PostgreSQL's
    integer (dead-lettered there, stored by SQLite). Found by the event fuzz at 100
    examples per topic."""

    def need_order(n: int, units: int) -> Record:
        data = ev.ChargeNeedOrderV1(
            charge_id="ch-1",
            product=f.product(id="p-1", unit_cost="0.00"),
            quantity=units,
            extended_cost=Decimal(0),
            organization=f.organization(),
            destination=f.address(),
        )
        return record("charge.need_order", data, n)

    runtime = await fed_directly("purchasing", database_url("purchasing"), tmp_path)
    await _summed_past_the_bound(runtime, need_order, purchasing_charges.c.sent)
