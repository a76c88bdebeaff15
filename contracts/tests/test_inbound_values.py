"""What other systems publish is read as the spec's shapes say: optional lists may be
null, amounts are written back in plain decimal notation and must be storable, event ids
fit where the services keep them; and the event catalog's tables have their four cells."""

import re
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from procure_contracts import CloudEvent, new_event
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import MAX_AMOUNT, ChargeSpec, Product
from procure_devstack import factories as f

EVENTS_MD = Path(__file__).parents[2] / "docs" / "events.md"
SCHEMAS = Path(__file__).parents[1] / "schemas"


def charge_doc(**changes: object) -> dict[str, object]:
    return {**f.charge(f.product()).model_dump(mode="json"), **changes}


def test_null_reservations_are_none() -> None:
    """The spec marks `reservations` optional: null is as good as absent."""
    assert ChargeSpec.model_validate(charge_doc(reservations=None)).reservations == []
    data = ev.ChargeCreatedV1.model_validate(
        {"charge": charge_doc(reservations=None), "organization": f.organization().model_dump()}
        | {"ship_to": f.address().model_dump()}
    )
    assert data.charge.reservations == []


@pytest.mark.parametrize(
    ("given", "written"),
    [("1e2", "100"), ("1.5E+3", "1500"), ("12.50", "12.50"), (120.5, "120.5"), ("0", "0")],
)
def test_amounts_are_written_in_plain_decimal_notation(given: object, written: str) -> None:
    charge = ChargeSpec.model_validate(charge_doc(unit_price=given))
    assert charge.model_dump(mode="json")["unit_price"] == written
    assert f'"unit_price":"{written}"' in charge.model_dump_json()


@pytest.mark.parametrize("given", ["1e17", str(MAX_AMOUNT + Decimal("0.01")), "-1e17", "NaN"])
def test_an_amount_no_service_can_store_is_refused_where_it_enters(given: str) -> None:
    with pytest.raises(ValidationError):
        ChargeSpec.model_validate(charge_doc(unit_price=given))
    assert (
        ChargeSpec.model_validate(charge_doc(unit_price=str(MAX_AMOUNT))).unit_price == MAX_AMOUNT
    )


@pytest.mark.parametrize(
    ("given", "kept"),
    [("1.5" + "0" * 40, "1.500000000000"), ("0.000000000001", "0.000000000001"), ("2", "2")],
)
def test_an_amount_keeps_its_text_to_twelve_places_dropping_only_zeros(
    given: str, kept: str
) -> None:
    product = Product.model_validate(f.product().model_dump() | {"unit_cost": given})
    assert product.model_dump(mode="json")["unit_cost"] == kept
    assert Decimal(kept) == Decimal(given)


@pytest.mark.parametrize("given", ["0.0000000000001", "1." + "1" * 13, "1e-13"])
def test_an_amount_with_more_than_twelve_places_is_refused(given: str) -> None:
    with pytest.raises(ValidationError, match="decimal places"):
        Product.model_validate(f.product().model_dump() | {"unit_cost": given})


def test_every_po_number_an_event_carries_is_at_most_32_characters() -> None:
    """Quotes keeps it in 32 characters, and no consumer may keep what another refuses."""
    line = f.po_line(f.charge(f.product(), 1), "ln-1")
    received = f.units_received(1, f.received_line("ln-1", "p-1", 1))
    closed = {"po_id": "po-1", "number": "x", "line_id": "ln-1", "quantity": 0}
    closed |= {"po_status": "Received Partial", "closed_by": f.person().model_dump()}
    cases = [
        (ev.POSubmittedV1, f.po_submitted(1, line).model_dump(mode="json"), ("po", "number")),
        (ev.POCanceledV1, {"po_id": "po-1", "number": "x"}, ("number",)),
        (ev.POLineClosedV1, closed, ("number",)),
        (ev.UnitsReceivedV1, received.model_dump(mode="json"), ("number",)),
        (
            ev.ShipmentDeliveredV1,
            f.shipment_delivered(1, f.delivered_item("it-1", "ch-1", "p-1", 1)).model_dump(
                mode="json"
            ),
            ("po_number",),
        ),
    ]
    for model, doc, path in cases:
        *parents, last = path
        node = doc
        for key in parents:
            node = node[key]
        node[last] = "P" * 32
        model.model_validate(doc)
        node[last] = "P" * 33
        with pytest.raises(ValidationError, match="at most 32"):
            model.model_validate(doc)


def test_an_event_id_longer_than_any_id_is_refused_with_its_envelope() -> None:
    spec = spec_for_topic("opportunity.lost")
    data = ev.OpportunityLostV1(opportunity_id="opp-1")
    ok = new_event(spec.type, data, source="/crm", subject="opp-1", event_id="e" * 200)
    assert CloudEvent.from_bytes(ok.to_bytes()).id == "e" * 200
    long = ok.model_dump(mode="json") | {"id": "e" * 201}
    with pytest.raises(ValidationError):
        CloudEvent.model_validate(long)


def test_every_row_of_the_event_catalogs_tables_has_its_headers_cells() -> None:
    """A "|" in a cell (a type such as `number | string`) split it: the "required"
    column then read "string" or "null"."""
    header: list[str] | None = None
    rows = 0
    for line in EVENTS_MD.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        if header is None:
            header = cells
            continue
        rows += 1
        assert len(cells) == len(header), f"{header}: {line}"
    assert rows > 100


@pytest.mark.parametrize("amount", ["abc", "12,50", "", "1.2.3", "99999999999999999", "NaN"])
def test_an_amount_the_models_refuse_fails_the_published_schema_too(amount: str) -> None:
    """A producer checking its events against `contracts/schemas/` learns there what a
    consumer would dead-letter: the schema took any string as an amount."""
    import json

    import jsonschema

    spec = spec_for_topic("charge.created")
    schema = json.loads((SCHEMAS / f"{spec.topic}.v1.json").read_text())
    good = ev.ChargeCreatedV1(
        charge=f.charge(f.product()), organization=f.organization(), ship_to=f.address()
    ).model_dump(mode="json")
    jsonschema.validate(good, schema)
    bad = {**good, "charge": {**good["charge"], "unit_price": amount}}
    with pytest.raises(ValidationError):
        ev.ChargeCreatedV1.model_validate(bad)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
