"""JSON Schema export of every event's `data`, the staleness check, and the backward
compatibility rules a published `.vN` schema must keep.

    python -m procure_contracts.schemas export   # write contracts/schemas/*.json
    python -m procure_contracts.schemas check    # exit 1 when committed schemas are stale
"""

import json
import sys
from pathlib import Path
from typing import Any

from procure_contracts.registry import REGISTRY, EventSpec

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_file(spec: EventSpec) -> str:
    return f"{spec.topic}.v{spec.version}.json"


def schema_for(spec: EventSpec) -> dict[str, Any]:
    schema = spec.model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"urn:procurement:schema:{spec.type}"
    schema["title"] = spec.type
    schema["description"] = spec.summary
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def generated() -> dict[str, str]:
    return {schema_file(s): render(schema_for(s)) for s in REGISTRY}


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Files missing, different or left over in `directory` compared with the models."""
    want = generated()
    problems = [
        name
        for name, text in want.items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    problems += [p.name for p in directory.glob("*.json") if p.name not in want]
    return sorted(problems)


def export(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generated().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(name)
    return written


# --- backward compatibility -------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    """The set of JSON types a schema accepts (anyOf/oneOf flattened, refs followed)."""
    schema = _resolve(schema, root)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            out: set[str] = set()
            for sub in schema[key]:
                out |= _types(sub, root)
            return out
    if "const" in schema:
        return {f"const:{schema['const']}"}
    if "enum" in schema:
        return {f"const:{v}" for v in schema["enum"]}
    t = schema.get("type")
    if t is None:
        return {"any"}
    return set(t) if isinstance(t, list) else {t}


def _objects(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _resolve(schema, root)
    subs = schema.get("anyOf") or schema.get("oneOf")
    if subs:
        return [o for s in subs for o in _objects(s, root)]
    return [schema] if schema.get("type") == "object" or "properties" in schema else []


def incompatibilities(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why `new` breaks readers or writers of `old`: removed or renamed fields, changed
    types, optional fields made required, required fields added."""
    problems: list[str] = []

    def walk(o: dict[str, Any], n: dict[str, Any], path: str) -> None:
        o_types, n_types = _types(o, old), _types(n, new)
        if "any" not in n_types and not o_types <= n_types:
            problems.append(
                f"{path or '<root>'}: type changed {sorted(o_types)} -> {sorted(n_types)}"
            )
            return
        o_objs, n_objs = _objects(o, old), _objects(n, new)
        if o_objs and n_objs:
            oo, nn = o_objs[0], n_objs[0]
            o_props, n_props = oo.get("properties", {}), nn.get("properties", {})
            o_req, n_req = set(oo.get("required", [])), set(nn.get("required", []))
            for name in o_props:
                if name not in n_props:
                    problems.append(f"{path}.{name}: removed or renamed")
            for name in sorted(n_req - o_req):
                what = "optional field made required" if name in o_props else "required field added"
                problems.append(f"{path}.{name}: {what}")
            for name, sub in o_props.items():
                if name in n_props:
                    walk(sub, n_props[name], f"{path}.{name}")
        o_r, n_r = _resolve(o, old), _resolve(n, new)
        if "items" in o_r and "items" in n_r:
            walk(o_r["items"], n_r["items"], f"{path}[]")

    walk(old, new, "")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    command = args[0] if args else "check"
    if command == "export":
        for name in export():
            print(f"wrote {SCHEMA_DIR / name}")
        return 0
    if command == "check":
        stale = stale_files()
        for name in stale:
            print(f"stale: {name} (run `python -m procure_contracts.schemas export`)")
        return 1 if stale else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
