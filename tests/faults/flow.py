"""The bounded stream of work every fault test runs through the whole stack, and the exact
end state it must reach whatever the fault.

`run()` takes N charges (`PROCURE_FAULT_CHARGES`; `make faults` runs 200) through
approval, one PO, two receipts and a delivery, the way people do it over HTTP, and calls
the test's hooks at five points where events are in flight:

| hook | just after | in flight |
|---|---|---|
| `charged` | N direct charges were created | `charge.need_order` to purchasing |
| `approved_half` | half the approvals were decided | `approval.decided` to quotes, notifier |
| `approved` | the other half too | the same, and `charge.forwarded` to quotes, notifier |
| `submitted` | the PO was submitted | `po.submitted` to receiving, quotes, notifier |
| `received_half` | the first half of the lines was received | `units.received` to inventory, shipping, quotes, notifier |
| `received` | the rest too | the same |
| `delivered` | everything was delivered | `shipment.delivered` to quotes, inventory, notifier |

`check()` then asserts the end state exactly: every charge's units per status, stock at
the location, the PO's status in purchasing and receiving, exactly one event per
trigger on each topic, and exactly one email per triggering event and recipient."""

import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procure_contracts import CloudEvent
from procure_contracts.registry import spec_for_topic
from procure_devstack.stack import launch_stack
from procure_devstack.stackclient import StackClient, units
from procure_devstack.testing import KafkaProbe, eventually

CHARGES = int(os.environ.get("PROCURE_FAULT_CHARGES", "12"))
CONCURRENCY = 8  # requests in flight at once, as a handful of people would make

Hook = Callable[[], Awaitable[None]]


async def nothing() -> None:
    return None


@dataclass
class Hooks:
    charged: Hook = nothing
    approved_half: Hook = nothing
    approved: Hook = nothing
    submitted: Hook = nothing
    received_half: Hook = nothing
    received: Hook = nothing
    delivered: Hook = nothing


@dataclass
class Flow:
    charge_ids: list[str]
    product_id: str
    location_id: str
    po: dict[str, Any]
    receipts: list[dict[str, Any]]
    delivery: dict[str, Any]


async def _each(calls: Iterable[Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(call: Awaitable[Any]) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls))


async def _page(c: StackClient, service: str, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every row of a paged list."""
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await c.get(
            service, path, limit=500, **params, **({"cursor": cursor} if cursor else {})
        )
        rows += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return rows


async def _by_charge(
    c: StackClient,
    charge_ids: list[str],
    service: str,
    path: str,
    *,
    quantity: int | None = None,
    **params: Any,
) -> dict[str, dict[str, Any]]:
    """Wait until a list holds exactly one row per charge (with `quantity`); the rows."""
    wanted = set(charge_ids)

    async def check() -> dict[str, dict[str, Any]]:
        rows = [r for r in await _page(c, service, path, **params) if r["charge_id"] in wanted]
        found = Counter(r["charge_id"] for r in rows)
        assert set(found) == wanted and set(found.values()) == {1}, (
            f"{path}: {len(found)} of {len(wanted)} charges, doubled: "
            f"{[k for k, n in found.items() if n > 1]}"
        )
        if quantity is not None:
            assert {r["quantity"] for r in rows} == {quantity}, rows
        return {r["charge_id"]: r for r in rows}

    return await eventually(check, timeout=c.timeout)


async def run(c: StackClient, hooks: Hooks, charges: int = CHARGES) -> Flow:
    await c.settings(threshold="20.00")  # every charge (2 x 10.00) waits for approval
    vendor, location = await c.catalog()
    product = await c.product(vendor["id"], inventory=False, procurement=True, cost="10.00")

    charge_ids = await _each(c.direct_charge(product["id"], 2) for _ in range(charges))
    await hooks.charged()

    approvals = await _by_charge(c, charge_ids, "purchasing", "/approvals", status="Pending")
    ids = [approvals[cid]["id"] for cid in charge_ids]
    half = len(ids) // 2

    def approve(approval_id: str) -> Awaitable[Any]:
        return c.post(c.cast.approver, "purchasing", f"/approvals/{approval_id}/approve", {})

    await _each(approve(a) for a in ids[:half])
    await hooks.approved_half()
    await _each(approve(a) for a in ids[half:])
    await hooks.approved()

    queued = await _by_charge(c, charge_ids, "purchasing", "/fulfillment", quantity=2)
    ship_to = {"kind": "location", "location_id": location["id"]}
    po = await c.order(vendor["id"], ship_to, *(queued[cid]["item_id"] for cid in charge_ids))
    await hooks.submitted()

    page = await c.on_receiving_page(po["id"])
    lines = page["lines"]
    assert len(lines) == charges

    async def receive(part: list[dict[str, Any]]) -> dict[str, Any]:
        body = {
            "lines": [
                {"line_id": line["line_id"], "quantity": 2, "location_id": location["id"]}
                for line in part
            ]
        }
        path = f"/purchase-orders/{po['id']}/receipts"
        return await c.post(c.cast.receiver, "receiving", path, body)

    first = await receive(lines[: len(lines) // 2])
    assert first["po_status"] == "Received Partial"
    await hooks.received_half()
    second = await receive(lines[len(lines) // 2 :])
    assert second["po_status"] == "Received Full"
    await hooks.received()

    ready = await _by_charge(c, charge_ids, "shipping", "/delivery/ready", quantity=2)
    body = {"items": [{"item_id": ready[cid]["item_id"]} for cid in charge_ids]}
    delivery = await c.post(c.cast.shipper, "shipping", "/deliveries", body)
    assert len(delivery["items"]) == charges
    await hooks.delivered()
    return Flow(charge_ids, product["id"], location["id"], po, [first, second], delivery)


async def _distinct(
    c: StackClient, topic: str, count: int, where: Callable[[CloudEvent], bool]
) -> list[CloudEvent]:
    """The `count` distinct events (by id) on `topic` matching `where`, and no more.
    Invalid events (a fault test's poison) are not events of the flow."""
    model = spec_for_topic(topic).model

    def valid(event: CloudEvent) -> bool:
        try:
            model.model_validate(event.data)
        except ValueError:
            return False
        return where(event)

    async def check() -> list[CloudEvent]:
        found = await c.kafka.read_events(topic, count, where=valid, timeout=10, settle=1.0)
        distinct = list({e.id: e for e in found}.values())
        assert len(distinct) == count, f"{topic}: {len(distinct)} events, not {count}"
        return distinct

    return await eventually(check, timeout=c.timeout)


async def check(c: StackClient, flow: Flow) -> None:
    """The exact end state: nothing lost, nothing done twice, one email per trigger."""
    n = len(flow.charge_ids)
    await _each(c.expect_units(cid, units(delivered=2)) for cid in flow.charge_ids)
    await c.expect_stock(flow.product_id, flow.location_id, on_hand=0, reserved=0, picked=0)
    assert (await c.get("purchasing", f"/purchase-orders/{flow.po['id']}"))["status"] == (
        "Received Full"
    )
    assert (await c.get("receiving", f"/purchase-orders/{flow.po['id']}"))["status"] == (
        "Received Full"
    )

    ours = set(flow.charge_ids)
    receipt_ids = {r["receipt_id"] for r in flow.receipts}
    per_charge = lambda e: e.data.get("charge_id") in ours  # noqa: E731
    # Exactly one event per trigger on every topic of the flow. The relays publish at
    # least once (a crash or an outage between publishing and marking the row sent
    # publishes that row again, with the same id, for the inbox to absorb), so copies
    # of an event id are allowed; a second event for the same trigger is not.
    requested = await _distinct(c, "approval.requested", n, per_charge)
    decided = await _distinct(c, "approval.decided", n, per_charge)
    forwarded = await _distinct(c, "charge.forwarded", n, per_charge)
    await _distinct(c, "charge.need_order", n, per_charge)
    [submitted] = await _distinct(
        c, "po.submitted", 1, lambda e: e.data.get("po", {}).get("id") == flow.po["id"]
    )
    received = await _distinct(
        c, "units.received", 2, lambda e: e.data.get("receipt_id") in receipt_ids
    )
    [delivered] = await _distinct(
        c, "shipment.delivered", 1, lambda e: e.data.get("delivery_id") == flow.delivery["id"]
    )

    team = {c.cast.team}
    people = {c.cast.sales.person.email, c.cast.person("Rita Resource").email}  # owner, resource
    expected: list[tuple[CloudEvent, str, set[str]]] = [
        *((e, "approval_requested", team) for e in requested),
        *((e, "approval_decided", people) for e in decided),
        *((e, "forwarded_to_purchasing", team) for e in forwarded),
        (submitted, "on_order", people),
        *((e, "received", people) for e in received),
        (delivered, "delivered", people),
    ]
    await _each(c.expect_mail(event, kind, to) for event, kind, to in expected)
    sent = Counter(
        (m.message["X-Procure-Event-Id"], rcpt)
        for m in c.stack.sink.messages
        for rcpt in m.rcpt_tos
    )
    assert [key for key, times in sent.items() if times > 1] == []


@contextlib.asynccontextmanager
async def own_stack(
    root: Path,
    bootstrap: str,
    database_url: Callable[[str], str],
    *,
    partitions: int = 3,
    replication: int = 1,
) -> AsyncIterator[StackClient]:
    """A stack of its own, for the faults that need their own Kafka (the broker restart,
    the 3-broker cluster); a client on it with patient waits."""
    with launch_stack(
        root, bootstrap, database_url, partitions=partitions, replication=replication
    ) as stack:
        try:
            async with (
                KafkaProbe(bootstrap, stack.prefix) as probe,
                StackClient(stack, probe, timeout=90.0) as client,
            ):
                yield client
        except BaseException:
            print(stack.logs(), file=sys.stderr)
            raise
