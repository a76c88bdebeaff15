"""Generates `docs/events.md`, the event catalog, from the registry.

python -m procure_contracts.docs > docs/events.md
"""

from typing import Any

from procure_contracts.registry import REGISTRY, EventSpec
from procure_contracts.schemas import _resolve, schema_file, schema_for


def _type_name(schema: dict[str, Any], root: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type_name(s, root) for s in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list[{_type_name(schema.get('items', {}), root)}]"
    return str(schema.get("type", "any"))


def _fields(spec: EventSpec) -> list[str]:
    root = schema_for(spec)
    body = _resolve(root, root)
    required = set(body.get("required", []))
    rows = []
    for name, sub in body.get("properties", {}).items():
        note = sub.get("description", "")
        need = "yes" if name in required else "no"
        rows.append(f"| `{name}` | {_type_name(sub, root)} | {need} | {note} |")
    return rows


def render() -> str:
    out = [
        "# Event catalog",
        "",
        "Generated from `contracts/` (`python -m procure_contracts.docs > docs/events.md`);",
        "a test fails when this file is stale. Every record value is a CloudEvents 1.0 JSON",
        "envelope whose `data` validates against the schema named below. Topic names get",
        "`PROCURE_TOPIC_PREFIX` in front; type strings never do.",
        "",
        "| topic | type | key | producers | consumers | schema |",
        "|---|---|---|---|---|---|",
    ]
    for s in REGISTRY:
        topic = f"`{s.topic}`" + (" (compacted)" if s.compacted else "")
        producers = ", ".join(s.producers) + (" or any system" if s.external else "")
        out.append(
            f"| {topic} | `{s.type}` | {s.key_doc} | {producers} | "
            f"{', '.join(s.consumers) or '-'} | [{schema_file(s)}](../contracts/schemas/{schema_file(s)}) |"
        )
    out += [
        "",
        "Each service also has a dead-letter topic `dlq.<service>` (see operations.md).",
        "",
    ]
    for s in REGISTRY:
        out += [
            f"## `{s.topic}`",
            "",
            s.summary,
            "",
            "| field | type | required | note |",
            "|---|---|---|---|",
            *_fields(s),
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
