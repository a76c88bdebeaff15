"""Fuzz every consumer with events its contract allows: each topic a service reads gets
`data` generated from the topic's published JSON Schema (by schemathesis, as a request
body of an operation made for the purpose), its ids
drawn now and then from a small flow the service has already applied, so that events
reach the handlers' logic and not only their "not known yet" parking.

Whatever the event, a consumer must decide it, on SQLite and on PostgreSQL alike: apply
it, park it, skip it, or dead-letter it as invalid or rejected. A handler that raises
(`handler-error`) or a value the contract allows but the database refuses is a defect:
the first is retried and dead-lettered, the second is stored by one database and
dead-lettered by the other. `PROCURE_FUZZ_EXAMPLES` per topic (12 by default; 100 or 300 dig
deeper when hunting). The examples are derandomized: the same ones every run.
"""

import asyncio
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from procure_contracts import CloudEvent
from procure_contracts.envelope import new_id
from procure_contracts.registry import spec_for_topic
from procure_contracts.schemas import SCHEMA_DIR, schema_file
from procure_contracts.shapes import Location, Shape
from procure_devstack import factories as f
from procure_devstack.cli import SERVICES
from procure_devstack.testing import fed_directly, record
from procure_runtime.consumer import Outcome, Record

EXAMPLES = int(os.environ.get("PROCURE_FUZZ_EXAMPLES", "12"))
#: The suite's 300 s per test, or more for a deeper run: quotes reads 18 topics, and at
#: 300 examples each took longer than 300 s on PostgreSQL (a timeout, not a finding).
TIMEOUT = max(300, 4 * EXAMPLES)

#: Ids of the flow every service applies first; generated ids are swapped for these.
KNOWN = ["ch-1", "ch-2", "p-1", "p-2", "loc-1", "po-1", "ln-1", "so-1", "opp-1", "qi-1", "rs-1"]


def _flow() -> list[tuple[str, Shape]]:
    """A won deal whose charge is ordered on a PO, a direct charge, the catalog."""
    vendor = f.vendor(id="v-1")
    widget = f.product(id="p-1", vendor=vendor, inventory=True)
    serialized = f.product(id="p-2", vendor=vendor, inventory=True, serialized=True)
    won_charge = f.charge(
        widget, 5, id="ch-1", quote_item_id="qi-1", reservations=[("rs-1", "loc-1", 2)]
    )
    direct = f.charge(serialized, 2, id="ch-2")
    submitted = f.po_submitted(1, f.po_line(won_charge, "ln-1"))
    return [
        ("catalog.vendors", vendor),
        ("catalog.products", widget),
        ("catalog.products", serialized),
        ("catalog.locations", Location(id="loc-1", name="Main", address=f.address())),
        (
            "opportunity.won",
            f.opportunity_won(won_charge, opportunity_id="opp-1", sales_order_id="so-1"),
        ),
        ("charge.created", f.charge_created(direct, sales_order_id="so-1")),
        ("po.submitted", submitted),
    ]


def _is_id(key: str) -> bool:
    return key == "id" or key.endswith("_id")


def rewired(doc: Any) -> st.SearchStrategy[Any]:
    """`doc` with each id kept or swapped for a known one."""
    if isinstance(doc, dict):
        return st.fixed_dictionaries(
            {
                k: st.sampled_from([v, *KNOWN]) if _is_id(k) and isinstance(v, str) else rewired(v)
                for k, v in doc.items()
            }
        )
    if isinstance(doc, list):
        return st.tuples(*(rewired(item) for item in doc)).map(list)
    return st.just(doc)


def event_of(topic: str, data: dict[str, Any], offset: int) -> Record:
    spec = spec_for_topic(topic)
    envelope = CloudEvent(
        id=new_id(), source="/fuzz", type=spec.type, time=datetime.now(UTC), data=data
    )
    return Record(spec.topic, 0, offset, b"fuzz", envelope.to_bytes())


def fuzz(topics: list[str], decide: Callable[[Record], str | None]) -> list[str]:
    """Feed each topic `EXAMPLES` generated events (blocking: run it in a worker thread);
    returns what went wrong."""
    failures: list[str] = []
    offsets = iter(range(1000, 10**9))
    for topic in topics:
        try:
            checker(topic, decide, offsets)()
        except AssertionError as exc:
            failures.append(str(exc))
    return failures


def data_strategy(topic: str) -> st.SearchStrategy[dict[str, Any]]:
    """`data` as the topic's published schema allows: the schema is made the JSON body
    of a one-operation OpenAPI document, which schemathesis generates bodies for."""
    schema = json.loads((SCHEMA_DIR / schema_file(spec_for_topic(topic))).read_text())
    defs = schema.pop("$defs", {})
    as_text = json.dumps({"schema": schema, "defs": defs}).replace(
        '"#/$defs/', '"#/components/schemas/'
    )
    moved = json.loads(as_text)
    body = {"required": True, "content": {"application/json": {"schema": moved["schema"]}}}
    api = schemathesis.openapi.from_dict(
        {
            "openapi": "3.1.0",
            "info": {"title": topic, "version": "1"},
            "paths": {"/event": {"post": {"requestBody": body, "responses": {"200": {}}}}},
            "components": {"schemas": moved["defs"]},
        }
    )
    [operation] = [result.ok() for result in api.get_all_operations()]
    return operation.as_strategy(generation_mode=GenerationMode.POSITIVE).map(lambda c: c.body)


def checker(topic: str, decide: Callable[[Record], str | None], offsets: Iterator[int]) -> Any:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same events every run: CI stays deterministic
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(data=data_strategy(topic).flatmap(rewired))
    def check(data: dict[str, Any]) -> None:
        problem = decide(event_of(topic, data, next(offsets)))
        assert problem is None, f"{topic}: {problem}\n  data: {json.dumps(data)[:2000]}"

    return check


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("service", SERVICES)
async def test_every_event_the_contract_allows_is_decided_the_same_on_either_database(
    service: str, database_url: Callable[[str], str], tmp_path: Path
) -> None:
    runtime = await fed_directly(service, database_url(service), tmp_path, handler_max_attempts=1)
    letters: list[dict[str, str]] = []

    async def dead_letter(value: bytes, topic: str, **kw: Any) -> None:
        letters.append({k: (v or b"").decode() for k, v in kw.get("headers", [])})

    runtime.consumer.publish = dead_letter  # the dead-letter topic's publisher
    topics = sorted(runtime.handlers.topics)
    loop = asyncio.get_running_loop()
    seen: Counter[Outcome] = Counter()

    def decide(rec: Record) -> str | None:
        before = len(letters)
        future = asyncio.run_coroutine_threadsafe(runtime.consumer.process(rec), loop)
        try:
            outcome = future.result(timeout=60)
        except Exception as exc:
            return f"the consumer raised {exc!r}"
        seen[outcome] += 1
        for letter in letters[before:]:
            kind, why = letter["x-error-type"], letter["x-error-message"]
            if kind == "handler-error" or why.startswith("the database refused"):
                return f"dead-lettered as {kind}: {why[:500]}"
        return None

    try:
        for offset, (topic, data) in enumerate(_flow()):
            if topic in topics:
                assert await runtime.consumer.process(record(topic, data, offset)) in (
                    Outcome.APPLIED,
                    Outcome.PARKED,
                )
        failures = await asyncio.to_thread(fuzz, topics, decide)
    finally:
        await runtime.db.engine.dispose()
    assert failures == [], "\n\n".join(failures)
    # The generated events reached the handlers: some were applied, not only refused.
    assert seen[Outcome.APPLIED] > 0, seen
    print(f"{service}: {dict(seen)}")
