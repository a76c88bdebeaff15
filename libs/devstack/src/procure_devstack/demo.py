"""`procure demo`: the seed's whole workflow, driven over HTTP against a running stack.

One story, told by the people of a small company (each with a token for their role):
the stock keeper sets up a catalog, the admin sets the approval threshold, a sales rep
quotes a reserved laptop, a firewall over the threshold and an installation service,
wins the deal (and a second, smaller one), the approver approves, the buyer orders both
orders' items on one PO, receiving takes it in twice, shipping delivers with pick and
packing lists, the sales order owner sets Fulfilled and billing posts the charges.

`run_seed_workflow(api, out, on_step=...)` is shared with the end-to-end suite, which
checks every unit status, event and email after each step through `on_step`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from procure_contracts.shapes import Address, Person
from procure_devstack.cli import SERVICES, command, jwt_secret, service_port
from procure_devstack.testing import eventually

WAIT_S = 60.0


class ApiError(RuntimeError):
    """A request answered with a status the caller did not expect."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Actor:
    """A person and the roles in their token."""

    person: Person
    roles: tuple[str, ...]


def at(template: str, *ids: object) -> str:
    """A path with each id as one segment: `at("/charges/{}/post", charge_id)`. Ids are
    percent-encoded whole (`/`, `?`, `#` and `%` too): an outside system's id such as
    `SO/2026/0042` is reached, not split into segments."""
    return template.format(*(quote(str(i), safe="") for i in ids))


class Api:
    """httpx calls to the six services, each made as an `Actor` (a token per person)."""

    def __init__(self, urls: Mapping[str, str], secret: str, *, timeout: float = 30.0) -> None:
        self.urls = dict(urls)
        self.secret = secret
        self.http = httpx.AsyncClient(timeout=timeout)
        self._tokens: dict[Actor, str] = {}

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    def token(self, actor: Actor) -> str:
        if actor not in self._tokens:
            import warnings

            from procure_runtime.auth import make_token

            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The HMAC key is")  # the dev secret
                self._tokens[actor] = make_token(
                    self.secret,
                    sub=actor.person.id,
                    name=actor.person.name,
                    email=actor.person.email,
                    roles=list(actor.roles),
                )
        return self._tokens[actor]

    async def call(
        self,
        actor: Actor,
        method: str,
        service: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        expect: Iterable[int] = (200, 201, 202, 204),
        headers: Mapping[str, str] | None = None,
        retry_unknown_s: float = WAIT_S,
    ) -> Any:
        """One request; the JSON answer (text for HTML). A 422 `unknown-reference` is
        retried for a while: other services learn of new catalog entries via topics."""
        url = f"{self.urls[service]}{path}"
        auth = {"Authorization": f"Bearer {self.token(actor)}", **(headers or {})}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_unknown_s
        while True:
            r = await self.http.request(method, url, json=json, params=params, headers=auth)
            unknown = r.status_code == 422 and "unknown-reference" in r.text
            if unknown and loop.time() < deadline and 422 not in expect:
                await asyncio.sleep(0.3)
                continue
            if r.status_code not in tuple(expect):
                raise ApiError(method, url, r.status_code, r.text)
            if not r.content:
                return None
            if r.headers.get("content-type", "").startswith("text/html"):
                return r.text
            return r.json()

    async def get(self, actor: Actor, service: str, path: str, **params: Any) -> Any:
        return await self.call(actor, "GET", service, path, params=params or None)

    async def post(self, actor: Actor, service: str, path: str, json: Any = None, **kw: Any) -> Any:
        return await self.call(actor, "POST", service, path, json=json, **kw)


def local_urls() -> dict[str, str]:
    """The running stack's services: `<NAME>_PORT` or the default ports, on localhost."""
    host = os.environ.get("PROCURE_HOST", "127.0.0.1")
    return {name: f"http://{host}:{service_port(name)}" for name in SERVICES}


async def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """Poll `check` (sync or async) until it answers something truthy."""
    try:
        return await eventually(check, timeout=timeout, interval=0.25)
    except AssertionError as exc:
        raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f}s ({exc})") from None


# --- the cast --------------------------------------------------------------------------


@dataclass
class Cast:
    """The people of one run; ids and emails are unique per run."""

    run: str

    def person(self, name: str) -> Person:
        first = name.split()[0].lower()
        return Person(id=f"{first}-{self.run}", name=name, email=f"{first}.{self.run}@example.com")

    def actor(self, name: str, *roles: str) -> Actor:
        return Actor(self.person(name), roles)

    @property
    def keeper(self) -> Actor:
        return self.actor("Kim Keeper", "inventory")

    @property
    def admin(self) -> Actor:
        return self.actor("Ada Admin", "admin")

    @property
    def sales(self) -> Actor:  # the sales rep: owns the first opportunity, runs the wizard
        return self.actor("Olive Sales", "sales")

    @property
    def so_owner(self) -> Actor:  # owns the first sales order (not the opportunity owner)
        return self.actor("Sam Owner", "sales")

    @property
    def approver(self) -> Actor:
        return self.actor("Abe Approver", "purchasing.approve")

    @property
    def buyer(self) -> Actor:
        return self.actor("Bea Buyer", "purchasing.order")

    @property
    def receiver(self) -> Actor:
        return self.actor("Ray Receiver", "receiving")

    @property
    def shipper(self) -> Actor:
        return self.actor("Sid Shipper", "shipping")

    @property
    def biller(self) -> Actor:
        return self.actor("Bill Billing", "billing")

    @property
    def team(self) -> str:  # the purchasing team setting
        return f"purchasing.{self.run}@example.com"


def address(name: str, city: str) -> dict[str, Any]:
    return Address(
        name=name, line1="1 Main St", city=city, postal_code="12345", country="US"
    ).model_dump(mode="json", exclude_none=True)


def parent(kind: str, name: str, **people: Person) -> dict[str, Any]:
    extra = {k: p.model_dump(mode="json") for k, p in people.items()}
    return {"kind": kind, "id": f"{kind}-{uuid.uuid4().hex[:8]}", "name": name, **extra}


@dataclass
class SeedResult:
    """Everything the workflow made, by name, for the printout and the e2e checks."""

    cast: Cast
    vendor: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    sales_orders: dict[str, str] = field(default_factory=dict)  # "first", "second"
    charges: dict[str, str] = field(default_factory=dict)  # laptops, firewalls, install, laptop2
    approval: dict[str, Any] = field(default_factory=dict)
    po: dict[str, Any] = field(default_factory=dict)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    pick_lists: dict[str, Any] = field(default_factory=dict)
    packing_lists: dict[str, Any] = field(default_factory=dict)
    sales_order: dict[str, Any] = field(default_factory=dict)  # the first, at the end


Step = Callable[[str, SeedResult], Awaitable[None]]


async def _no_check(step: str, result: SeedResult) -> None:
    return None


# --- the workflow ------------------------------------------------------------------------


async def run_seed_workflow(
    api: Api, out: TextIO, *, run: str | None = None, on_step: Step = _no_check
) -> SeedResult:
    """Scenario 1, step by step; `on_step(name, result)` is awaited after each step."""
    cast = Cast(run or uuid.uuid4().hex[:8])
    r = SeedResult(cast)

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    async def step(name: str) -> None:
        await on_step(name, r)

    say(f"demo run {cast.run}")
    await _catalog(api, r)
    say(
        f"catalog: vendor {r.vendor['name']}, location {r.location['name']}, "
        f"products {', '.join(p['sku'] for p in r.products.values())}; 2 laptops in stock"
    )
    await step("catalog")

    await api.call(
        cast.admin,
        "PUT",
        "purchasing",
        "/settings",
        json={"approval_threshold": "1000.00", "purchasing_team": [cast.team]},
    )
    say(f"settings: approval threshold 1000.00, purchasing team {cast.team}")

    await _win_first(api, r)
    say(f"won: sales order {r.sales_orders['first']} with 3 charges (2 laptops reserved)")
    await step("won")

    approval = await wait_for("the firewalls' approval request", lambda: _pending_approval(api, r))
    r.approval = await api.post(
        cast.approver,
        "purchasing",
        at("/approvals/{}/approve", approval["id"]),
        {"note": "budgeted"},
    )
    say(f"approved: {approval['quantity']} firewalls, {approval['extended_cost']}")
    await step("approved")

    await _win_second(api, r)
    say(f"won: sales order {r.sales_orders['second']} (1 laptop, not reserved)")
    await step("second_won")

    await _order(api, r)
    say(f"ordered: {r.po['number']} with {len(r.po['lines'])} lines from two sales orders")
    await step("po_created")
    r.po = await api.post(cast.buyer, "purchasing", at("/purchase-orders/{}/submit", r.po["id"]))
    say(f"submitted: {r.po['number']}")
    await step("submitted")

    await _receive(api, r, {"laptops": 1, "firewalls": 1})
    say(f"received: {r.po['number']} partly ({r.receipts[-1]['po_status']})")
    await step("received_partial")
    await _receive(api, r, {"firewalls": 1, "laptop2": 1})
    say(f"received: {r.po['number']} rest ({r.receipts[-1]['po_status']})")
    await step("received_full")

    await _deliver(api, r)
    say(
        f"delivered: {len(r.deliveries)} deliveries; pick lists for "
        f"{len(r.pick_lists['documents'])} destinations, packing lists for "
        f"{len(r.packing_lists['documents'])}"
    )
    await step("delivered")

    so_id = r.sales_orders["first"]
    await wait_for("can_fulfill", lambda: _can_fulfill(api, r))
    await api.call(
        cast.so_owner,
        "PATCH",
        "quotes",
        at("/sales-orders/{}", so_id),
        json={"status": "Fulfilled"},
    )
    say(f"fulfilled: sales order {so_id}")
    await step("fulfilled")

    for name in ("laptops", "firewalls", "install"):
        await api.post(cast.biller, "quotes", at("/charges/{}/post", r.charges[name]))
    say("posted: the sales order's 3 charges")
    await step("posted")

    r.sales_order = await api.get(cast.sales, "quotes", at("/sales-orders/{}", so_id))
    say(f"\nsales order {so_id}: {r.sales_order['status']}, timeline:")
    names = {ch["id"]: ch["product"]["name"] for ch in r.sales_order["charges"]}
    for entry in r.sales_order["timeline"]:
        what = names.get(entry.get("charge_id"), "")
        say(f"  {entry['time']}  {entry['type']:<38} {what:<20} {entry.get('summary') or ''}")
    return r


async def _catalog(api: Api, r: SeedResult) -> None:
    keeper, run = r.cast.keeper, r.cast.run
    r.vendor = await api.post(
        keeper,
        "inventory",
        "/vendors",
        {"name": "Northwind Supply", "email": f"orders.{run}@nw.example"},
    )
    r.location = await api.post(
        keeper,
        "inventory",
        "/locations",
        {"name": f"Main warehouse {run}", "address": address("Main warehouse", "Springfield")},
    )
    specs = {
        "laptop": ("LAP", "Laptop 14in", True, True, "800.00", "1200.00", r.vendor["id"]),
        "firewall": ("FW", "Firewall appliance", False, True, "1500.00", "2100.00", r.vendor["id"]),
        "install": ("SVC", "Installation service", False, False, "0.00", "300.00", None),
    }
    for name, (sku, title, inventory, procured, cost, price, vendor_id) in specs.items():
        r.products[name] = await api.post(
            keeper,
            "inventory",
            "/products",
            {
                "sku": f"{sku}-{run}",
                "name": title,
                "is_inventory": inventory,
                "subject_to_procurement": procured,
                "unit_cost": cost,
                "unit_price": price,
                "vendor_id": vendor_id,
            },
        )
    await api.post(
        keeper,
        "inventory",
        "/stock/adjustments",
        {
            "product_id": r.products["laptop"]["id"],
            "location_id": r.location["id"],
            "quantity": 2,
            "reason": "opening stock",
        },
    )


async def _win_first(api: Api, r: SeedResult) -> None:
    cast = r.cast
    rita, leo = cast.person("Rita Resource"), cast.person("Leo Lead")
    r.people.update(sales=cast.sales.person, so_owner=cast.so_owner.person, rita=rita, leo=leo)
    org = {
        "id": f"org-{cast.run}",
        "name": "Acme Corp",
        "address": address("Acme HQ", "Springfield"),
    }
    opp = await api.post(
        cast.sales,
        "quotes",
        "/opportunities",
        {
            "name": "Acme office refresh",
            "owner": cast.sales.person.model_dump(),
            "organization": org,
        },
    )
    items = {}
    for name, quantity in (("laptop", 3), ("firewall", 2), ("install", 1)):
        body = {"product_id": r.products[name]["id"], "quantity": quantity}
        items[name] = await api.post(
            cast.sales, "quotes", at("/opportunities/{}/items", opp["id"]), body
        )
    await api.post(
        cast.sales,
        "inventory",
        "/reservations",
        {
            "opportunity_id": opp["id"],
            "quote_item_id": items["laptop"]["id"],
            "product_id": r.products["laptop"]["id"],
            "location_id": r.location["id"],
            "quantity": 2,
        },
    )

    async def reserved() -> bool:  # quotes learns of the reservation through stock.reserved
        seen = await api.get(cast.sales, "quotes", at("/opportunities/{}", opp["id"]))
        laptop = next(i for i in seen["items"] if i["id"] == items["laptop"]["id"])
        return sum(x["quantity"] for x in laptop["reservations"]) == 2

    await wait_for("quotes to see the reservation", reserved)
    parents = {
        "laptop": parent("ticket", "Laptop rollout", primary_resource=rita),
        "firewall": parent("project", "Network upgrade", project_lead=leo),
        "install": parent("contract", "Managed services"),
    }
    won = await api.post(
        cast.sales,
        "quotes",
        at("/opportunities/{}/win", opp["id"]),
        {
            "sales_order": {
                "owner": cast.so_owner.person.model_dump(),
                "ship_to": address("Acme HQ", "Springfield"),
            },
            "items": [{"quote_item_id": items[n]["id"], "parent": parents[n]} for n in parents],
        },
    )
    r.sales_orders["first"] = won["sales_order_id"]
    r.charges.update(zip(("laptops", "firewalls", "install"), won["charge_ids"], strict=True))


async def _pending_approval(api: Api, r: SeedResult) -> dict[str, Any] | None:
    found = await api.get(
        r.cast.approver,
        "purchasing",
        "/approvals",
        status="Pending",
        charge_id=r.charges["firewalls"],
    )
    return found["items"][0] if found["items"] else None


async def _win_second(api: Api, r: SeedResult) -> None:
    cast = r.cast
    oscar, tom = cast.person("Oscar Opportunity"), cast.person("Tom Tech")
    r.people.update(oscar=oscar, tom=tom)
    org = {"id": f"org2-{cast.run}", "name": "Globex", "address": address("Globex", "Shelbyville")}
    opp = await api.post(
        cast.sales,
        "quotes",
        "/opportunities",
        {"name": "Globex laptop", "owner": oscar.model_dump(), "organization": org},
    )
    item = await api.post(
        cast.sales,
        "quotes",
        at("/opportunities/{}/items", opp["id"]),
        {"product_id": r.products["laptop"]["id"], "quantity": 1},
    )
    won = await api.post(
        cast.sales,
        "quotes",
        at("/opportunities/{}/win", opp["id"]),
        {
            "sales_order": {"ship_to": address("Globex front desk", "Shelbyville")},
            "items": [
                {
                    "quote_item_id": item["id"],
                    "parent": parent("ticket", "Globex laptop", primary_resource=tom),
                }
            ],
        },
    )
    r.sales_orders["second"] = won["sales_order_id"]
    r.charges["laptop2"] = won["charge_ids"][0]


async def _order(api: Api, r: SeedResult) -> None:
    """The buyer waits for the three charges on the queue and orders them on one PO."""
    want = {r.charges[n]: q for n, q in (("laptops", 1), ("firewalls", 2), ("laptop2", 1))}

    async def queued() -> list[dict[str, Any]] | None:
        page = await api.get(r.cast.buyer, "purchasing", "/fulfillment", vendor_id=r.vendor["id"])
        items = [i for i in page["items"] if want.get(i["charge_id"]) == i["quantity"]]
        return items if len(items) == len(want) else None

    items = await wait_for("the queue items", queued)
    r.po = await api.post(
        r.cast.buyer,
        "purchasing",
        "/purchase-orders",
        {
            "vendor_id": r.vendor["id"],
            "ship_to": {"kind": "location", "location_id": r.location["id"]},
            "items": [{"item_id": i["item_id"]} for i in items],
        },
    )


async def _receive(api: Api, r: SeedResult, quantities: Mapping[str, int]) -> None:
    lines = {ln["charge_id"]: ln["line_id"] for ln in r.po["lines"]}
    po_id = r.po["id"]

    async def receivable() -> bool:
        page = await api.get(r.cast.receiver, "receiving", "/receiving", limit=1000)
        return any(po["po_id"] == po_id for po in page["items"])

    await wait_for(f"{r.po['number']} on the Receiving page", receivable)
    body = {
        "lines": [
            {"line_id": lines[r.charges[n]], "quantity": q, "location_id": r.location["id"]}
            for n, q in quantities.items()
        ],
        "vendor_invoice": f"INV-{r.cast.run}-{len(r.receipts) + 1}",
    }
    r.receipts.append(
        await api.post(
            r.cast.receiver, "receiving", at("/purchase-orders/{}/receipts", po_id), body
        )
    )


async def _ready_items(api: Api, r: SeedResult, tab: str) -> list[dict[str, Any]]:
    page = await api.get(r.cast.shipper, "shipping", at("/delivery/{}", tab), limit=1000)
    ours = set(r.charges.values())
    return [i for i in page["items"] if i["charge_id"] in ours]


async def _deliver(api: Api, r: SeedResult) -> None:
    """Pick lists for everything ready, one delivery per sales order, packing lists."""
    want = {r.charges[n]: q for n, q in (("laptops", 3), ("firewalls", 2), ("install", 1))}
    want[r.charges["laptop2"]] = 1

    async def all_ready() -> list[dict[str, Any]] | None:
        items = await _ready_items(api, r, "ready")
        got = {i["charge_id"]: i["quantity"] for i in items}
        return items if got == want and len(items) == len(want) else None

    ready = await wait_for("everything on the Ready tab", all_ready)
    ids = [i["item_id"] for i in ready]
    r.pick_lists = await api.post(r.cast.shipper, "shipping", "/pick-lists", {"item_ids": ids})
    for so_id in r.sales_orders.values():
        mine = [{"item_id": i["item_id"]} for i in ready if i["sales_order_id"] == so_id]
        r.deliveries.append(
            await api.post(r.cast.shipper, "shipping", "/deliveries", {"items": mine})
        )

    async def delivered() -> list[dict[str, Any]] | None:
        items = await _ready_items(api, r, "delivered")
        return items if len(items) == len(want) else None

    done = await wait_for("everything on the Delivered tab", delivered)
    r.packing_lists = await api.post(
        r.cast.shipper, "shipping", "/packing-lists", {"item_ids": [i["item_id"] for i in done]}
    )


async def _can_fulfill(api: Api, r: SeedResult) -> bool:
    so = await api.get(r.cast.so_owner, "quotes", at("/sales-orders/{}", r.sales_orders["first"]))
    return bool(so["can_fulfill"])


# --- the command -----------------------------------------------------------------------


async def demo(
    out: TextIO, urls: Mapping[str, str] | None = None, secret: str | None = None
) -> SeedResult:
    async with Api(urls or local_urls(), secret or jwt_secret()) as api:
        return await run_seed_workflow(api, out)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        asyncio.run(demo(sys.stdout))
    except (httpx.HTTPError, ApiError, TimeoutError) as exc:
        print(f"error: {exc}\n(is the stack up? `procure up --detach`)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


@command
def _register_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="drive the seed's whole workflow against the running stack",
        description="Seed a catalog and settings, then quote, win, approve, order, receive, "
        "deliver, fulfill and post over HTTP as each person would; print the sales "
        "order's timeline. Ports from <NAME>_PORT, secret from PROCURE_JWT_SECRET.",
    )
    p.set_defaults(handler=cmd_demo)
