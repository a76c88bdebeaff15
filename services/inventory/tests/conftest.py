"""A running inventory service per test (SQLite and PostgreSQL), with a Kafka probe and
small helpers that drive it over HTTP the way the New Quote Item page or ops would."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, running, token, unique
from procure_inventory.app import build
from procure_runtime.service import ServiceRuntime
from procure_runtime.settings import ServiceSettings


@dataclass
class Inventory:
    http: httpx.AsyncClient
    kafka: KafkaProbe
    settings: ServiceSettings
    runtime: ServiceRuntime

    def auth(self, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.settings, *roles)}"}

    async def post(self, path: str, body: dict[str, Any], role: str = "inventory") -> Any:
        response = await self.http.post(path, json=body, headers=self.auth(role))
        assert response.status_code == 201, response.text
        return response.json()

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params, headers=self.auth("billing"))
        assert response.status_code == 200, response.text
        return response.json()

    async def location(self, name: str = "Main warehouse") -> str:
        body = {"name": name, "address": f.address(name).model_dump()}
        return (await self.post("/locations", body))["id"]

    async def vendor(self) -> dict[str, Any]:
        return await self.post("/vendors", {"name": "Parts Inc", "email": "sales@parts.example"})

    async def product(self, **kw: Any) -> dict[str, Any]:
        body = {
            "sku": unique("SKU-"),
            "name": "Widget",
            "is_inventory": True,
            "subject_to_procurement": True,
            "serialized": False,
            "unit_cost": "40.00",
            "unit_price": "60.00",
            **kw,
        }
        return await self.post("/products", body)

    async def adjust(
        self, product_id: str, location_id: str, quantity: int, serials: list[str] = ()
    ) -> Any:
        body = {
            "product_id": product_id,
            "location_id": location_id,
            "quantity": quantity,
            "serials": list(serials),
            "reason": "cycle count",
        }
        return await self.post("/stock/adjustments", body)

    async def reserve(
        self, product_id: str, location_id: str, quantity: int, opportunity_id: str = "opp-1"
    ) -> httpx.Response:
        body = {
            "opportunity_id": opportunity_id,
            "quote_item_id": unique("qi-"),
            "product_id": product_id,
            "location_id": location_id,
            "quantity": quantity,
        }
        return await self.http.post("/reservations", json=body, headers=self.auth("sales"))

    async def level(self, product_id: str, location_id: str) -> dict[str, Any]:
        items = (await self.get("/availability", product_id=product_id))["items"]
        [row] = [i for i in items if i["location_id"] == location_id]
        return {k: row[k] for k in ("on_hand", "reserved", "picked", "available")}

    async def transfers(self, **params: Any) -> list[dict[str, Any]]:
        return (await self.get("/transfers", **params))["items"]


@pytest.fixture
async def inventory(service_settings) -> AsyncIterator[Inventory]:
    settings = service_settings("inventory")
    app, runtime = build(settings)
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        yield Inventory(http, kafka, settings, runtime)
