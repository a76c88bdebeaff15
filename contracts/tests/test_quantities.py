"""A quantity holds at most `MAX_UNITS`, what the services' integer columns hold: a
larger one is refused where it enters (a 422, or a dead letter as invalid data) instead
of by the database, where it was a 500 on SQLite and, on PostgreSQL, a 503 or an event
retried without end."""

import pytest
from pydantic import TypeAdapter, ValidationError

from procure_contracts import events as ev
from procure_contracts.shapes import MAX_UNITS, NonNegative, Quantity
from procure_devstack import factories as f


@pytest.mark.parametrize("shape", [Quantity, NonNegative])
def test_a_quantity_holds_what_a_postgresql_integer_holds(shape: object) -> None:
    adapter = TypeAdapter(shape)
    assert adapter.validate_python(MAX_UNITS) == MAX_UNITS == 2**31 - 1
    with pytest.raises(ValidationError):
        adapter.validate_python(MAX_UNITS + 1)


def test_an_event_with_too_many_units_does_not_validate() -> None:
    created = f.charge_created().model_dump(mode="json")
    created["charge"]["quantity"] = MAX_UNITS + 1
    with pytest.raises(ValidationError, match="less than or equal"):
        ev.ChargeCreatedV1.model_validate(created)
