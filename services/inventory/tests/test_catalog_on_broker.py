"""The catalog over HTTP, published to compacted topics that a consumer started later
can read to the latest version of every product, vendor and location."""

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy import update

from procure_inventory.models import vendors

pytestmark = pytest.mark.kafka


async def test_catalog_changes_reach_a_consumer_started_later(inventory) -> None:
    vendor = await inventory.vendor()
    location_id = await inventory.location("North depot")
    product = await inventory.product(vendor_id=vendor["id"], unit_cost="12.50")
    assert product["vendor"] == vendor  # the published shape embeds its default vendor
    assert product["unit_cost"] == "12.50"

    changed = {**product, "vendor_id": vendor["id"], "name": "Widget v2", "unit_price": "75.00"}
    del changed["vendor"]
    put = await inventory.http.put(
        f"/products/{product['id']}", json=changed, headers=inventory.auth("inventory")
    )
    assert put.status_code == 200, put.text
    assert put.json()["name"] == "Widget v2"

    # A consumer that starts now reads the topics from the beginning.
    products = await inventory.kafka.read_events(
        "catalog.products", 2, where=lambda e: e.subject == product["id"]
    )
    assert [e.data["name"] for e in products] == ["Widget", "Widget v2"]
    latest = products[-1]
    assert latest.type == "procurement.catalog.products.v1"
    assert latest.data == put.json()
    assert latest.data["vendor"] == vendor
    [vendor_event] = await inventory.kafka.read_events("catalog.vendors", 1)
    assert vendor_event.data == vendor
    [location_event] = await inventory.kafka.read_events("catalog.locations", 1)
    assert location_event.data["id"] == location_id
    assert location_event.data["name"] == "North depot"

    listed = await inventory.get("/products")
    assert listed == {"items": [put.json()], "next_cursor": None}
    assert await _cleanup_policy(inventory, "catalog.products") == "compact"
    assert await _cleanup_policy(inventory, "catalog.vendors") == "compact"
    assert await _cleanup_policy(inventory, "catalog.locations") == "compact"


async def test_vendor_change_republishes_the_products_that_embed_it(inventory) -> None:
    vendor = await inventory.vendor()
    product = await inventory.product(vendor_id=vendor["id"])
    put = await inventory.http.put(
        f"/vendors/{vendor['id']}",
        json={"name": "Parts Inc", "email": "orders@parts.example"},
        headers=inventory.auth("inventory"),
    )
    assert put.status_code == 200, put.text
    events = await inventory.kafka.read_events("catalog.products", 2)
    assert [e.data["vendor"]["email"] for e in events] == [
        "sales@parts.example",
        "orders@parts.example",
    ]
    assert all(e.subject == product["id"] for e in events)
    assert (await inventory.get(f"/products/{product['id']}"))["vendor"]["email"] == (
        "orders@parts.example"
    )


@pytest.mark.parametrize("db_backend", ["postgresql"])  # SQLite has one writer at a time
async def test_a_product_saved_while_its_vendor_changes_embeds_the_changed_vendor(
    inventory, db_backend: str
) -> None:
    """A vendor change republishes the products it finds; a product saved with that
    vendor meanwhile, not yet committed, is not among them. It read the vendor without a
    lock, as it was, and kept it: the replicas held the old name and email until the
    next edit. It now waits for the vendor's change and embeds it."""
    vendor = await inventory.vendor()
    body = {
        "sku": "SKU-RACE",
        "name": "Widget",
        "is_inventory": True,
        "subject_to_procurement": True,
        "serialized": False,
        "unit_cost": "1.00",
        "unit_price": "2.00",
        "vendor_id": vendor["id"],
    }
    async with inventory.runtime.db.engine.connect() as change:  # the vendor change, open
        await change.execute(
            update(vendors).where(vendors.c.id == vendor["id"]).values(email="new@parts.example")
        )
        saving = asyncio.create_task(
            inventory.http.post("/products", json=body, headers=inventory.auth("inventory"))
        )
        await asyncio.sleep(0.5)
        await change.commit()
    saved = await saving
    assert saved.status_code == 201, saved.text
    [event] = await inventory.kafka.read_events("catalog.products", 1)
    assert event.data["vendor"]["email"] == "new@parts.example"


async def test_refused_catalog_writes_change_nothing(inventory) -> None:
    vendor = await inventory.vendor()
    product = await inventory.product(vendor_id=vendor["id"])
    body = {
        "sku": "OTHER",
        "name": "Gadget",
        "is_inventory": False,
        "subject_to_procurement": True,
        "unit_cost": "1.00",
        "unit_price": "2.00",
    }
    http, auth = inventory.http, inventory.auth

    assert (await http.post("/products", json=body)).status_code == 401
    forbidden = await http.post("/products", json=body, headers=auth("sales"))
    assert forbidden.status_code == 403
    assert "inventory" in forbidden.json()["detail"]
    unknown = await http.post(
        "/products", json={**body, "vendor_id": "no-such-vendor"}, headers=auth("inventory")
    )
    assert unknown.status_code == 422
    assert unknown.json()["type"].endswith("unknown-reference")
    same_sku = await http.post(
        "/products", json={**body, "sku": product["sku"]}, headers=auth("inventory")
    )
    assert same_sku.status_code == 409
    negative = await http.post(
        "/products", json={**body, "unit_cost": "-1.00"}, headers=auth("inventory")
    )
    assert negative.status_code == 422
    assert negative.headers["content-type"].startswith("application/problem+json")
    same_id = await http.post(
        "/vendors", json={"id": vendor["id"], "name": "X", "email": "x@x"}, headers=auth("admin")
    )
    assert same_id.status_code == 409
    missing = await http.put("/products/nope", json=body, headers=auth("inventory"))
    assert missing.status_code == 404
    assert (await http.get("/locations/nope", headers=auth("sales"))).status_code == 404

    assert [p["id"] for p in (await inventory.get("/products"))["items"]] == [product["id"]]
    assert (await inventory.get("/vendors"))["items"] == [vendor]
    events = await inventory.kafka.read_events("catalog.products", 1, settle=1.0)
    assert [e.subject for e in events] == [product["id"]]


async def _cleanup_policy(inventory, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=inventory.settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        name = inventory.settings.topic(topic)
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": None})]
        )
        [(_code, _msg, _type, _name, entries)] = response.resources
        return {e[0]: e[1] for e in entries}["cleanup.policy"]
    finally:
        await admin.close()


async def test_ops_endpoints_document_what_inventory_publishes(inventory) -> None:
    assert (await inventory.http.get("/healthz")).json() == {"status": "ok"}
    assert (await inventory.http.get("/readyz")).status_code == 200
    channels = " ".join((await inventory.http.get("/asyncapi.json")).json()["channels"])
    for topic in ("catalog.products", "stock.reserved", "units.picked", "pick.failed"):
        assert topic in channels
    assert (await inventory.http.get("/products")).status_code == 401
