"""A create body's client-chosen `id` must be one its routes can reach: Starlette routes
the decoded path, so a record made with the id "a/b" could be read by neither
`GET /opportunities/a/b` nor `GET /opportunities/a%2Fb`. Every such id is refused with a
422 problem, on every route that takes one, before anything is changed."""

import importlib
from typing import Any

import pytest

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
def test_every_client_chosen_id_says_it_cannot_contain_a_slash(
    service: str, db_backend: str, service_settings
) -> None:
    app, _ = build(service, service_settings(service))
    found = client_ids(app.openapi())
    assert set(found) == CLIENT_IDS[service]
    for schema in found.values():
        assert schema["pattern"] == "^[^/]+$"
        assert (schema["minLength"], schema["maxLength"]) == (1, 200)  # the contract's Id


@pytest.mark.parametrize("service", [s for s in SERVICES if CLIENT_IDS[s]])
@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_an_id_with_a_slash_is_refused_with_a_422_on_every_create_route(
    service: str, db_backend: str, service_settings
) -> None:
    settings = service_settings(service)
    app, runtime = build(service, settings)
    admin = {"Authorization": f"Bearer {token(settings, 'admin')}"}
    async with running(app, runtime) as http:
        for path, at in sorted(CLIENT_IDS[service]):
            url = path.replace("{opp_id}", "o-1").replace("{po_id}", "po-1")
            response = await http.post(url, headers=admin, json=nested(at, "a/b"))
            assert response.status_code == 422, (url, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            [error] = [e for e in response.json()["errors"] if e["loc"] == ["body", *at]]
            assert "an id cannot contain '/'" in error["msg"], error


@pytest.mark.parametrize("db_backend", ["sqlite", "postgresql"])
async def test_an_opportunity_with_a_slash_in_its_id_is_not_made_and_one_without_is(
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
        refused = await http.post("/opportunities", headers=sales, json={**body, "id": "a/b"})
        assert refused.status_code == 422
        assert "body.id: Value error, an id cannot contain '/'" in refused.json()["detail"]
        for url in ("/opportunities/a/b", "/opportunities/a%2Fb", "/opportunities/a"):
            assert (await http.get(url, headers=sales)).status_code == 404, url
        # Other characters a path segment can carry, percent-encoded, are an id's own.
        made = await http.post("/opportunities", headers=sales, json={**body, "id": "a b?#"})
        assert made.status_code == 201, made.text
        got = await http.get("/opportunities/a%20b%3F%23", headers=sales)
        assert got.status_code == 200 and got.json()["id"] == "a b?#", got.text
