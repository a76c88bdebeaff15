"""docs/operations.md's configuration table gives each variable's default: the table
must say what `ServiceSettings` does, or an operator tunes from a wrong starting point."""

import re
from pathlib import Path

from pydantic import AliasChoices

from procure_runtime.kafka import fetch_options
from procure_runtime.settings import ServiceSettings

OPERATIONS = Path(__file__).parents[3] / "docs" / "operations.md"


def documented_defaults() -> dict[str, str]:
    """`VARIABLE` → `default` for the table's rows naming one variable and one default."""
    rows = {}
    for line in OPERATIONS.read_text().splitlines():
        found = re.match(r"\| `([A-Z0-9_]+)` \| `([^`]*)` \|", line)
        if found:
            rows[found[1]] = found[2]
    return rows


def settings_defaults() -> dict[str, str]:
    out = {}
    for field in ServiceSettings.model_fields.values():
        alias = field.validation_alias
        if not isinstance(alias, AliasChoices) or field.default is None:
            continue
        value = field.default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, Path) and not value.is_absolute():
            value = f"./{value}"  # as the docs write a relative path
        for name in alias.choices:
            out[str(name)] = str(getattr(value, "value", value))
    return out


def test_the_operations_table_gives_the_defaults_the_settings_have() -> None:
    documented, actual = documented_defaults(), settings_defaults()
    compared = {name: documented[name] for name in documented if name in actual}
    assert "PROCURE_CONSUME_BATCH" in compared and len(compared) >= 8, compared
    assert compared == {name: actual[name] for name in compared}


def test_the_gathering_variables_the_table_names_are_the_ones_read(monkeypatch) -> None:
    """Their defaults are per service (unset in `ServiceSettings`), so the comparison
    above skips them: read them by the table's names instead."""
    table = OPERATIONS.read_text()
    assert "| `PROCURE_FETCH_WAIT_MS` |" in table and "| `PROCURE_FETCH_MIN_BYTES` |" in table
    monkeypatch.setenv("PROCURE_FETCH_WAIT_MS", "80")
    monkeypatch.setenv("PROCURE_FETCH_MIN_BYTES", "4096")
    settings = ServiceSettings(service="probe")
    assert fetch_options(settings) == (4096, 80)


def test_every_variable_the_settings_read_has_a_row() -> None:
    table = OPERATIONS.read_text()
    names = [
        str(name)
        for field in ServiceSettings.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for name in field.validation_alias.choices
    ]
    assert len(names) >= 10
    assert [name for name in names if f"`{name}`" not in table] == []
