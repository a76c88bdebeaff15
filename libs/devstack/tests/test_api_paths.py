"""The dev and test clients reach records whose ids hold `/`, `?`, `#` or `%`: each id
goes into its path segment percent-encoded (the services route on the encoded path)."""

from types import SimpleNamespace
from typing import Any

import httpx

from procure_devstack.demo import at
from procure_devstack.stackclient import StackClient

ODD = "SO/2026?x=1#0042 100%"


def test_at_encodes_each_id_as_one_segment() -> None:
    assert at("/charges/{}/post", "a/b") == "/charges/a%2Fb/post"
    assert at("/a/{}/b/{}", "x?y", "50%") == "/a/x%3Fy/b/50%25"
    assert at("/sales-orders/{}", ODD) == "/sales-orders/SO%2F2026%3Fx%3D1%230042%20100%25"


def client(seen: list[httpx.Request], answer: Any) -> StackClient:
    stack: Any = SimpleNamespace(
        urls={s: f"http://{s}.test" for s in ("quotes", "purchasing", "shipping")},
        secret="s" * 32,
    )
    c = StackClient(stack, kafka=None)  # type: ignore[arg-type]

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answer)

    c.api.http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    return c


async def test_stack_client_reaches_a_charge_by_an_outside_id() -> None:
    seen: list[httpx.Request] = []
    async with client(seen, {"id": ODD}) as c:
        await c.charge(ODD)
    assert [r.url.raw_path for r in seen] == [b"/charges/SO%2F2026%3Fx%3D1%230042%20100%25"]
    assert seen[0].url.query == b""


async def test_stack_client_submits_a_po_by_an_outside_id() -> None:
    seen: list[httpx.Request] = []
    async with client(seen, {"id": "PO/7"}) as c:
        await c.order("vendor", {"kind": "location", "location_id": "l"}, "item")
    assert [r.url.raw_path for r in seen] == [
        b"/purchase-orders",
        b"/purchase-orders/PO%2F7/submit",
    ]
