"""A create body's client-chosen `id` is the contract's `Id` (1-200 characters, any of
them), and its routes reach it: "a/b" is `GET /opportunities/a%2Fb`. Starlette routes
the decoded path, where "a/b" would be two segments; the routes name ids `{name:id}`
(`procure_runtime.http`), matched with %2F still encoded."""

import importlib
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from procure_devstack.cli import SERVICES
from procure_devstack.testing import running, token

pytestmark = pytest.mark.kafka

#: Every create route whose body takes the new record's id, with where the id sits in the
#: body. A new create body with a client id fails the first test until it is listed.
CLIENT_IDS: dict[str, set[tuple[str, tuple[str, ...]]]] = {
    "quotes": {
        ("/opportunities", ("id",)),
        ("/opportunities/{opp_id}/win", ("sales_order", "id")),
        ("/charges", ("id",)),
    },
    "inventory": {
        ("/products", ("id",)),
        ("/vendors", ("id",)),
        ("/locations", ("id",)),
        ("/reservations", ("id",)),
    },
    "purchasing": {("/purchase-orders", ("id",))},
    "receiving": {("/purchase-orders/{po_id}/receipts", ("id",))},
    "shipping": {("/deliveries", ("id",))},
    "notifier": set(),
}
ADDRESS = {"name": "A", "line1": "1 Main St", "city": "X", "postal_code": "1", "country": "US"}
PERSON = {"id": "p-1", "name": "Pat", "email": "pat@example.com"}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def client_ids(spec: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    """Each POST body's `id` documented as the new record's (CLIENT_ID_DOC), at any depth,
    with its schema. Ids that refer to something else (a person's, a product's) are not."""
    found = {}

    def walk(path: str, at: tuple[str, ...], schema: dict[str, Any], depth: int) -> None:
        schema = _resolve(spec, schema)
        for option in schema.get("anyOf", []):
            walk(path, at, option, depth)
        for name, prop in schema.get("properties", {}).items():
            options = [_resolve(spec, o) for o in prop.get("anyOf", [prop])]
            if name == "id" and prop.get("description", "").startswith("The new "):
                found[(path, (*at, name))] = next(o for o in options if o.get("type") == "string")
            elif depth < 3:
                walk(path, (*at, name), prop, depth + 1)

    for path, operations in spec["paths"].items():
        body = operations.get("post", {}).get("requestBody", {})
        for media in body.get("content", {}).values():
            walk(path, (), media["schema"], 0)
    return found


def nested(at: tuple[str, ...], value: str) -> dict[str, Any]:
    body: Any = value
    for name in reversed(at):
        body = {name: body}
    return body


def build(service: str, settings: Any) -> tuple[Any, Any]:
    return importlib.import_module(f"procure_{service}.app").build(settings)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_every_client_chosen_id_is_the_contracts_id(
    service: str, db_backend: str, service_settings
) -> None:
    app, _ = build(service, service_settings(service))
    found = client_ids(app.openapi())
    assert set(found) == CLIENT_IDS[service]
    for schema in found.values():
        assert "pattern" not in schema  # "/" is an id's own, as in events
        assert (schema["minLength"], schema["maxLength"]) == (1, 200)  # the contract's Id


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("db_backend", ["sqlite"])
def test_every_path_parameter_is_read_as_an_id(
    service: str, db_backend: str, service_settings
) -> None:
    """A plain `{name}` would take an id's %2F as it came, and an id holding "/" could not
    be reached."""
    app, _ = build(service, service_settings(service))
    params = {
        (route.path_format, name): type(convertor).__name__
        for route in iter_route_contexts(app.routes)
        for name, convertor in route.param_convertors.items()
    }
    assert params or service == "notifier", "no route with an id in its path"
    assert {k: v for k, v in params.items() if v != "IdConvertor"} == {}


@pytest.mark.parametrize("db_backend", ["sqlite", "postgresql"])
async def test_an_opportunity_with_a_slash_in_its_id_is_made_and_reached(
    db_backend: str, service_settings
) -> None:
    settings = service_settings("quotes")
    app, runtime = build("quotes", settings)
    sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
    body = {
        "name": "Deal",
        "owner": PERSON,
        "organization": {"id": "o", "name": "O", "address": ADDRESS},
    }
    async with running(app, runtime) as http:
        made = await http.post("/opportunities", headers=sales, json={**body, "id": "a/b"})
        assert made.status_code == 201, made.text
        got = await http.get("/opportunities/a%2Fb", headers=sales)
        assert got.status_code == 200 and got.json()["id"] == "a/b", got.text
        # Unencoded, the "/" separates segments: no route, and nothing named "a".
        for url in ("/opportunities/a/b", "/opportunities/a"):
            assert (await http.get(url, headers=sales)).status_code == 404, url
        # A route after the id reaches it too: past the opportunity, to the product.
        item = {"product_id": "p-unknown", "quantity": 1}
        added = await http.post("/opportunities/a%2Fb/items", headers=sales, json=item)
        assert added.status_code == 422 and "p-unknown" in added.text, added.text
        other = await http.post("/opportunities/a%2Fc/items", headers=sales, json=item)
        assert other.status_code == 404, other.text
        # Other characters a path segment can carry, percent-encoded, are an id's own.
        made = await http.post("/opportunities", headers=sales, json={**body, "id": "a b?#%"})
        assert made.status_code == 201, made.text
        got = await http.get("/opportunities/a%20b%3F%23%25", headers=sales)
        assert got.status_code == 200 and got.json()["id"] == "a b?#%", got.text
        # The same id twice is still the 409 that changes nothing.
        again = await http.post("/opportunities", headers=sales, json={**body, "id": "a/b"})
        assert again.status_code == 409, again.text
