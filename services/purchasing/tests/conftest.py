"""A running purchasing service on the real broker, and what the other services would
publish to it (catalog, need_order, picks, receipts), for the broker tests."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_contracts.shapes import Address, Location, Product, Vendor
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token, unique
from procure_purchasing.app import build
from procure_purchasing.models import metadata
from procure_runtime import ServiceRuntime, replica
from procure_runtime.settings import ServiceSettings


@dataclass
class Purchasing:
    http: httpx.AsyncClient
    kafka: KafkaProbe
    settings: ServiceSettings
    runtime: ServiceRuntime

    def auth(self, *roles: str, sub: str = "u-tester") -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.settings, *roles, sub=sub)}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth("admin", sub="u-admin")

    @property
    def buyer(self) -> dict[str, str]:
        return self.auth("purchasing.order", sub="u-buyer")

    @staticmethod
    def location(name: str = "Main warehouse") -> Location:
        return Location(id=unique("loc-"), name=name, address=f.address(name))

    async def set_threshold(self, threshold: str | None, team: list[str] = ()) -> None:  # type: ignore[assignment]
        body = {"approval_threshold": threshold, "purchasing_team": list(team)}
        response = await self.http.put("/settings", json=body, headers=self.admin)
        assert response.status_code == 200, response.text

    async def catalog(self, *docs: Vendor | Location | Product) -> None:
        """Publish catalog records as inventory would, and wait until replicated."""
        kinds = {Vendor: "vendors", Location: "locations", Product: "products"}
        for doc in docs:
            kind = kinds[type(doc)]
            await self.kafka.publish(spec_for_topic(f"catalog.{kind}"), doc)
        for doc in docs:
            await eventually(lambda d=doc: self._replicated(kinds[type(d)], d.id))

    async def _replicated(self, kind: str, id_: str) -> bool:
        async with self.runtime.db.session() as session:
            return await replica.get(session, metadata, kind, id_) is not None

    async def need_order(
        self,
        product: Product,
        quantity: int,
        *,
        sales_order_id: str | None = None,
        destination: Address | None = None,
        charge_id: str | None = None,
    ) -> ev.ChargeNeedOrderV1:
        """Quotes sends units of a charge to procurement."""
        data = ev.ChargeNeedOrderV1(
            charge_id=charge_id or unique("ch-"),
            sales_order_id=sales_order_id,
            product=product,
            quantity=quantity,
            extended_cost=(product.unit_cost * quantity).quantize(Decimal("0.01")),
            organization=f.organization(),
            destination=destination or f.address(),
        )
        await self.kafka.publish(
            spec_for_topic("charge.need_order"),
            data,
            correlationid=sales_order_id or data.charge_id,
        )
        return data

    async def queued(self, item_id: str) -> int:
        response = await self.http.get(f"/fulfillment/{item_id}", headers=self.buyer)
        if response.status_code == 404:  # not on the queue (any other refusal is a failure)
            return 0
        assert response.status_code == 200, response.text
        return int(response.json()["quantity"])

    async def until_queued(self, item_id: str, quantity: int) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            items = await self.queue()
            found = [i for i in items if i["item_id"] == item_id]
            return found[0] if found and found[0]["quantity"] == quantity else None

        return await eventually(check)

    async def queue(self) -> list[dict[str, Any]]:
        response = await self.http.get("/fulfillment", headers=self.buyer)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def approvals(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        response = await self.http.get("/approvals", params=params, headers=self.buyer)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    async def pending_for(self, charge_id: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            found = [a for a in await self.approvals("Pending") if a["charge_id"] == charge_id]
            return found[0] if found else None

        return await eventually(check)

    async def events(
        self, topic: str, count: int, *, settle: float = 0.0, timeout: float = 30.0, **match: Any
    ) -> list[CloudEvent]:
        """Events on `topic` whose data has the given field values."""

        def where(e: CloudEvent) -> bool:
            return all(e.data.get(k) == v for k, v in match.items())

        return await self.kafka.read_events(
            topic, count, settle=settle, timeout=timeout, where=where
        )


@pytest.fixture
async def purchasing(service_settings) -> AsyncIterator[Purchasing]:
    settings = service_settings("purchasing")
    app, runtime = build(settings)
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        yield Purchasing(http, kafka, settings, runtime)
