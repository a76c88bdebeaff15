"""The published JSON Schemas: fresh, backward compatible, and what events validate against."""

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest

from procure_contracts import REGISTRY, CloudEvent, new_event
from procure_contracts.docs import render
from procure_contracts.registry import known_base, spec_for_type, split_version
from procure_contracts.schemas import (
    SCHEMA_DIR,
    incompatibilities,
    schema_file,
    schema_for,
    stale_files,
)
from procure_devstack import factories as f

ROOT = Path(__file__).resolve().parents[2]
CLOUDEVENTS = json.loads(
    (ROOT / "contracts" / "vendor" / "cloudevents-1.0.schema.json").read_text()
)


def test_committed_schemas_match_the_models() -> None:
    assert stale_files() == [], "run `uv run python -m procure_contracts.schemas export` and commit"


def test_a_changed_model_makes_the_committed_schema_stale(tmp_path: Path) -> None:
    for spec in REGISTRY:
        (tmp_path / schema_file(spec)).write_text(
            json.dumps(schema_for(spec), indent=2, sort_keys=True) + "\n"
        )
    assert stale_files(tmp_path) == []
    target = tmp_path / "opportunity.won.v1.json"
    target.write_text(target.read_text().replace('"won_at"', '"won_on"'))
    assert stale_files(tmp_path) == ["opportunity.won.v1.json"]


def test_event_catalog_doc_is_generated_from_the_registry() -> None:
    assert (ROOT / "docs" / "events.md").read_text() == render(), (
        "run `uv run python -m procure_contracts.docs > docs/events.md`"
    )


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError as exc:  # no git: the comparison cannot be made, which is no pass
        pytest.fail(f"git is needed to read the published schemas: {exc}")


def _first_published(path: Path) -> dict | None:
    """The schema as it was in the commit that first added it (the published v1); None
    for one not committed yet. A clone without that history cannot tell, and fails:
    comparing the schema with itself would let any breaking change through."""
    rel = str(path.relative_to(ROOT))
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() != "false":
        pytest.fail("not a full git clone: the first published schemas cannot be read")
    commits = _git("log", "--diff-filter=A", "--format=%H", "--", rel).stdout.split()
    if not commits:
        return None  # this change publishes it
    shown = _git("show", f"{commits[-1]}:{rel}")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


@pytest.mark.parametrize("spec", REGISTRY, ids=lambda s: s.type)
def test_every_v1_schema_stays_backward_compatible_with_its_first_published_version(spec) -> None:
    baseline = _first_published(SCHEMA_DIR / schema_file(spec))
    if baseline is None:  # not committed yet: this change publishes it
        baseline = json.loads((SCHEMA_DIR / schema_file(spec)).read_text())
    assert incompatibilities(baseline, schema_for(spec)) == []


OLD = {
    "type": "object",
    "properties": {
        "a": {"type": "string"},
        "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "c": {"$ref": "#/$defs/C"},
    },
    "required": ["a"],
    "$defs": {"C": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}},
}


def _changed(**edits) -> dict:
    new = json.loads(json.dumps(OLD))
    for path, value in edits.items():
        node = new
        *parents, last = path.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return new


def test_adding_an_optional_field_is_compatible() -> None:
    new = _changed()
    new["properties"]["d"] = {"type": "string"}
    assert incompatibilities(OLD, new) == []


def test_removing_or_renaming_a_field_breaks() -> None:
    assert incompatibilities(OLD, _changed(properties__a=None)) == [".a: removed or renamed"]


def test_changing_a_type_breaks_even_when_nested() -> None:
    assert incompatibilities(OLD, _changed(properties__a={"type": "integer"})) == [
        ".a: type changed ['string'] -> ['integer']"
    ]
    nested = _changed()
    nested["$defs"]["C"]["properties"]["x"] = {"type": "boolean"}
    assert incompatibilities(OLD, nested) == [".c.x: type changed ['string'] -> ['boolean']"]


def test_making_an_optional_field_required_breaks() -> None:
    assert incompatibilities(OLD, _changed(required=["a", "b"])) == [
        ".b: optional field made required"
    ]


def test_adding_a_required_field_breaks() -> None:
    new = _changed(required=["a", "e"])
    new["properties"]["e"] = {"type": "string"}
    assert incompatibilities(OLD, new) == [".e: required field added"]


def test_envelopes_validate_against_cloudevents_and_data_against_the_published_schema() -> None:
    won = f.opportunity_won(f.charge())
    spec = spec_for_type("procurement.opportunity.won.v1")
    event = new_event(
        spec.type, won, source="/procure/quotes", subject=won.opportunity.id, correlationid="so-1"
    )
    wire = json.loads(event.to_bytes())
    jsonschema.validate(wire, CLOUDEVENTS)
    jsonschema.validate(wire["data"], json.loads((SCHEMA_DIR / schema_file(spec)).read_text()))
    assert wire["type"] == "procurement.opportunity.won.v1"
    assert wire["data"] == json.loads(won.model_dump_json())  # the model's own JSON
    assert "causationid" not in wire  # absent optional attributes are left out, not null


def test_consumers_are_tolerant_readers() -> None:
    won = f.opportunity_won(f.charge())
    raw = json.loads(won.model_dump_json())
    raw["something_new"] = {"added": "later"}
    raw["charges"][0]["product"]["colour"] = "red"
    parsed = type(won).model_validate(raw)
    assert parsed.charges[0].product.id == won.charges[0].product.id
    envelope = CloudEvent.model_validate(
        {"specversion": "1.0", "id": "1", "source": "/x", "type": "t", "ext": 1}
    )
    assert envelope.id == "1"


def test_type_versions_are_recognised() -> None:
    assert split_version("procurement.opportunity.won.v2") == ("procurement.opportunity.won", 2)
    assert known_base("procurement.opportunity.won.v2").topic == "opportunity.won"
    assert known_base("procurement.nothing.v1") is None
    assert {s.type for s in REGISTRY} == {f"procurement.{s.topic}.v1" for s in REGISTRY}


def test_architecture_diagram_matches_the_registry() -> None:
    from procure_contracts.docs import render_flow

    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("<!-- flow:begin -->\n", 1)[1].split("<!-- flow:end -->", 1)[0]
    assert block == render_flow(), "run `uv run python -m procure_contracts.docs flow` and paste it"
