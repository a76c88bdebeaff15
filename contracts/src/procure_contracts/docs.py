"""Generates `docs/events.md`, the event catalog, from the registry.

python -m procure_contracts.docs > docs/events.md
"""

from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from procure_contracts.registry import REGISTRY, EventSpec
from procure_contracts.schemas import _resolve, schema_file, schema_for
from procure_contracts.shapes import MAX_AMOUNT, MAX_PLACES, MAX_UNITS, Id, PONumber, Serial


def _longest(annotated: Any) -> int:
    return int(TypeAdapter(annotated).json_schema()["maxLength"])


def limits() -> list[str]:
    """What the services can store: the schemas say it too, this says it in one place."""
    return [
        "## Limits",
        "",
        "A value past one of these is refused where it enters, the same on every database:",
        "its event is dead-lettered by every service that reads it (an HTTP request",
        "is a 422), rather than stored by one service and refused by another.",
        "",
        "| value | limit |",
        "|---|---|",
        f"| an id (`id`, `*_id`), the envelope's `id` | 1 to {_longest(Id)} characters |",
        f"| a serial number (`serials[]`) | 1 to {_longest(Serial)} characters |",
        f"| a PO number (`number`, `po.number`, `po_number`) | at most {_longest(PONumber)}"
        " characters |",
        f"| an amount | from -{MAX_AMOUNT} to {MAX_AMOUNT}, at most {MAX_PLACES} decimal"
        " places (zeros past them are dropped) |",
        f"| a quantity | 1 to {MAX_UNITS} |",
        "| any text, keys included | no U+0000 (`\\u0000`), no lone UTF-16 surrogate |",
        "",
    ]


def publishing() -> list[str]:
    """What a system that publishes onto the topics marked "or any system" must know."""
    return [
        "## Publishing from another system",
        "",
        "The envelope's `id` is unique across every producer, not only within its `source`.",
        "Each service remembers the `id` of every event it has applied (its inbox, for",
        "`PROCURE_INBOX_RETENTION_DAYS`) and skips any later event with that `id`, from",
        "whatever `source`: that is how a redelivered event is applied once. So an outside",
        "system must never reuse an `id`, nor count its ids from 1 as another system may;",
        "a UUID, as every service here makes, is safe. Sending an event again under its",
        "own `id` is safe; under a new `id` it is a new event, which each service",
        "judges by its data (a second `opportunity.won` of a sales order that exists is",
        'ignored: architecture.md, "Decisions where the spec is silent").',
        "",
    ]


def _type_name(schema: dict[str, Any], root: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type_name(s, root) for s in schema["anyOf"])  # a "|" splits the cell
    if "enum" in schema:
        return " or ".join(f"`{v}`" for v in schema["enum"])
    if schema.get("type") == "array":
        return f"list[{_type_name(schema.get('items', {}), root)}]"
    return str(schema.get("type", "any"))


def _fields(spec: EventSpec) -> list[str]:
    root = schema_for(spec)
    body = _resolve(root, root)
    required = set(body.get("required", []))
    rows = []
    for name, sub in body.get("properties", {}).items():
        note = sub.get("description", "").replace("|", "\\|")
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
        *publishing(),
        *limits(),
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


def render_flow() -> str:
    """The Mermaid diagram of who produces and consumes each topic (architecture.md)."""
    out = ["```mermaid", "flowchart LR"]
    services = sorted({n for s in REGISTRY for n in (*s.producers, *s.consumers)})
    for name in services:
        out.append(f"    {name}([{name}])")
    out.append("    outside[[other systems]]")
    for s in REGISTRY:
        node = "t_" + s.topic.replace(".", "_")
        out.append(f"    {node}{{{{{s.topic}}}}}")
        for producer in s.producers:
            out.append(f"    {producer} --> {node}")
        if s.external:
            out.append(f"    outside -.-> {node}")
        for consumer in s.consumers:
            out.append(f"    {node} --> {consumer}")
    out.append("```")
    return "\n".join(out) + "\n"


def write(docs_dir: Path = Path(__file__).resolve().parents[3] / "docs") -> None:
    """Regenerate docs/events.md and the diagram block of docs/architecture.md."""
    (docs_dir / "events.md").write_text(render())
    arch = docs_dir / "architecture.md"
    head, rest = arch.read_text().split(FLOW_BEGIN, 1)
    tail = rest.split(FLOW_END, 1)[1]
    arch.write_text(head + FLOW_BEGIN + render_flow() + FLOW_END + tail)


FLOW_BEGIN, FLOW_END = "<!-- flow:begin -->\n", "<!-- flow:end -->"

if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["write"]:
        write()
    else:
        print(render_flow() if sys.argv[1:] == ["flow"] else render(), end="")
