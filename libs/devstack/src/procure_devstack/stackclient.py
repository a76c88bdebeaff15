"""What the end-to-end and fault tests drive the stack with: the demo's `Api` (httpx per
service, a token per person) plus a `KafkaProbe`, the SMTP sink and a few assertions that
wait."""

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from procure_contracts import CloudEvent
from procure_contracts.registry import spec_for_type

from .cli import SERVICES
from .demo import Actor, Api, ApiError, Cast, address, at, parent
from .smtp import ReceivedMessage
from .stack import Stack
from .testing import KafkaProbe, Landed, eventually, unique

STATUSES = (
    "Waiting Approval",
    "Need to Order/Fulfill",
    "On Order",
    "Ready to Deliver/Ship",
    "Delivered/Shipped",
    "Canceled",
)
TIMEOUT = 30.0


async def dead_letters(kafka: KafkaProbe) -> list[Landed]:
    """Every record in the stack's dead-letter topics."""
    dead = await asyncio.gather(
        *(kafka.read(f"dlq.{name}", to_end=True, timeout=30) for name in SERVICES)
    )
    return [r for records in dead for r in records]


def units(**counts: int) -> dict[str, int]:
    """`units(ready=2, need=1)` -> all six statuses, zeros included."""
    short = dict(
        zip(
            ("waiting", "need", "on_order", "ready", "delivered", "canceled"), STATUSES, strict=True
        )
    )
    return {status: 0 for status in STATUSES} | {short[k]: v for k, v in counts.items()}


class StackClient:
    """One test's view of the stack: HTTP as any person, topics, mail."""

    def __init__(self, stack: Stack, kafka: KafkaProbe, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout  # how long each waiting assertion waits
        self.stack = stack
        self.kafka = kafka
        self.api = Api(stack.urls, stack.secret)
        self.cast = Cast(unique())

    async def __aenter__(self) -> "StackClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.api.http.aclose()

    # --- HTTP -----------------------------------------------------------------------------

    async def get(self, service: str, path: str, actor: Actor | None = None, **params: Any) -> Any:
        return await self.api.get(actor or self.cast.admin, service, path, **params)

    async def post(self, actor: Actor, service: str, path: str, json: Any = None, **kw: Any) -> Any:
        return await self.api.post(actor, service, path, json, **kw)

    async def charge(self, charge_id: str) -> dict[str, Any]:
        return await self.get("quotes", at("/charges/{}", charge_id))

    async def expect_units(self, charge_id: str, expected: Mapping[str, int]) -> dict[str, Any]:
        """Wait until the charge's units are exactly `expected`; the charge view."""
        last: dict[str, Any] = {}

        async def check() -> dict[str, Any]:
            nonlocal last
            try:
                last = await self.charge(charge_id)
            except ApiError as exc:  # 404 until quotes has routed the charge
                raise AssertionError(str(exc)) from None
            assert last["units"] == dict(expected), f"charge {charge_id}: {last['units']}"
            return last

        return await eventually(check, timeout=self.timeout)

    async def stock(self, product_id: str, location_id: str) -> dict[str, int]:
        page = await self.get("inventory", "/availability", product_id=product_id)
        [row] = [r for r in page["items"] if r["location_id"] == location_id]
        return {k: row[k] for k in ("on_hand", "reserved", "picked", "available")}

    async def expect_stock(self, product_id: str, location_id: str, **expected: int) -> None:
        async def check() -> bool:
            got = await self.stock(product_id, location_id)
            assert {k: got[k] for k in expected} == expected, f"stock: {got}"
            return True

        await eventually(check, timeout=self.timeout)

    # --- topics -------------------------------------------------------------------------

    async def events(
        self, topic: str, count: int, where: Callable[[CloudEvent], bool], settle: float = 1.0
    ) -> list[CloudEvent]:
        """Exactly `count` events on `topic` matching `where` (waits, then checks no more)."""
        found = await self.kafka.read_events(
            topic, count, where=where, timeout=self.timeout, settle=settle
        )
        assert len(found) == count, f"{topic}: {len(found)} events, not {count}: {found}"
        return found

    async def charge_events(
        self, topic: str, charge_ids: Iterable[str], count: int
    ) -> list[CloudEvent]:
        ids = set(charge_ids)
        return await self.events(topic, count, lambda e: e.data.get("charge_id") in ids)

    # --- mail ---------------------------------------------------------------------------

    def mail(self, event_id: str) -> list[ReceivedMessage]:
        return [m for m in self.stack.sink.messages if m.message["X-Procure-Event-Id"] == event_id]

    async def expect_mail(
        self, event: CloudEvent, kind: str, recipients: Iterable[str]
    ) -> list[ReceivedMessage]:
        """Exactly one email of `kind` per recipient for `event`, and nothing else for it.
        No recipients: none is due once the notifier has applied the event, and none was
        queued for it (no mail yet before that proves nothing)."""
        want = sorted(recipients)
        if not want:
            spec = spec_for_type(event.type)
            assert spec is not None, event.type
            group = self.stack.group_id("notifier")

            async def applied() -> bool:
                return await self.kafka.lag(group, [spec.topic]) == 0

            await eventually(applied, timeout=self.timeout)
            queued = await self.get("notifier", "/notifications", event_id=event.id)
            assert queued["items"] == [], f"{event.type} {event.id}: queued {queued['items']}"

        def check() -> tuple[list[ReceivedMessage]]:
            got = self.mail(event.id)
            seen = sorted((m.message["X-Procure-Notification"], *m.rcpt_tos) for m in got)
            assert seen == [(kind, r) for r in want], f"{event.type} {event.id}: mail {seen}"
            return (got,)  # truthy, so that "no mail at all" passes too

        (found,) = await eventually(check, timeout=self.timeout)
        return found

    def mail_to(self, *addresses: str) -> list[ReceivedMessage]:
        wanted = set(addresses)
        return [m for m in self.stack.sink.messages if wanted & set(m.rcpt_tos)]

    # --- small workflows the scenarios share -------------------------------------------

    async def settings(self, threshold: str = "1000.00") -> None:
        body = {"approval_threshold": threshold, "purchasing_team": [self.cast.team]}
        await self.api.call(self.cast.admin, "PUT", "purchasing", "/settings", json=body)

    async def catalog(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A vendor and a location of this test's own."""
        keeper, run = self.cast.keeper, self.cast.run
        vendor = await self.post(
            keeper,
            "inventory",
            "/vendors",
            {"name": f"Vendor {run}", "email": f"v.{run}@v.example"},
        )
        location = await self.post(
            keeper,
            "inventory",
            "/locations",
            {"name": f"Store {run}", "address": address("Store", "Ogdenville")},
        )
        return vendor, location

    async def product(
        self, vendor_id: str | None, *, inventory: bool, procurement: bool, cost: str
    ) -> dict[str, Any]:
        body = {
            "sku": f"SKU-{unique()}",
            "name": "Thing",
            "is_inventory": inventory,
            "subject_to_procurement": procurement,
            "unit_cost": cost,
            "unit_price": "150.00",
            "vendor_id": vendor_id,
        }
        return await self.post(self.cast.keeper, "inventory", "/products", body)

    async def adjust(self, product_id: str, location_id: str, quantity: int) -> None:
        body = {
            "product_id": product_id,
            "location_id": location_id,
            "quantity": quantity,
            "reason": "count",
        }
        await self.post(self.cast.keeper, "inventory", "/stock/adjustments", body)

    def ticket(self) -> dict[str, Any]:
        return parent("ticket", "Help desk", primary_resource=self.cast.person("Rita Resource"))

    async def direct_charge(self, product_id: str, quantity: int) -> str:
        """A ticket charge (no sales order); the sales rep owns it."""
        body = {
            "parent": self.ticket(),
            "product_id": product_id,
            "quantity": quantity,
            "organization": {
                "id": f"org-{self.cast.run}",
                "name": "Acme",
                "address": address("Acme HQ", "Springfield"),
            },
            "ship_to": address("Acme HQ", "Springfield"),
        }
        return (await self.post(self.cast.sales, "quotes", "/charges", body))["charge_id"]

    async def queue_item(self, charge_id: str, quantity: int) -> dict[str, Any]:
        async def check() -> dict[str, Any]:
            page = await self.get("purchasing", "/fulfillment", limit=1000)
            found = [i for i in page["items"] if i["charge_id"] == charge_id]
            assert len(found) == 1 and found[0]["quantity"] == quantity, found
            return found[0]

        return await eventually(check, timeout=self.timeout)

    async def not_queued(self, charge_id: str) -> None:
        page = await self.get("purchasing", "/fulfillment", limit=1000)
        assert [i for i in page["items"] if i["charge_id"] == charge_id] == []

    async def tab_item(self, tab: str, charge_id: str, quantity: int) -> dict[str, Any]:
        """The one item of `charge_id` on the Ready or Delivered tab, once it has `quantity`."""

        async def check() -> dict[str, Any]:
            page = await self.get("shipping", at("/delivery/{}", tab), limit=1000)
            found = [i for i in page["items"] if i["charge_id"] == charge_id]
            assert len(found) == 1 and found[0]["quantity"] == quantity, found
            return found[0]

        return await eventually(check, timeout=self.timeout)

    async def on_receiving_page(self, po_id: str) -> dict[str, Any]:
        async def check() -> dict[str, Any]:
            page = await self.get("receiving", "/receiving", limit=1000)
            found = [p for p in page["items"] if p["po_id"] == po_id]
            assert len(found) == 1, f"{po_id} not on the Receiving page"
            return found[0]

        return await eventually(check, timeout=self.timeout)

    async def order(
        self, vendor_id: str, ship_to: dict[str, Any], *item_ids: str
    ) -> dict[str, Any]:
        """Create a PO from queue items and submit it."""
        body = {
            "vendor_id": vendor_id,
            "ship_to": ship_to,
            "items": [{"item_id": i} for i in item_ids],
        }
        po = await self.post(self.cast.buyer, "purchasing", "/purchase-orders", body)
        return await self.post(
            self.cast.buyer, "purchasing", at("/purchase-orders/{}/submit", po["id"])
        )
