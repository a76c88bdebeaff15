"""Regressions for what the API fuzzing found, each reproduced by a minimal request:
a NUL character in input was a 500 on PostgreSQL (now a 422 problem on every database),
and 422 answers did not match what the OpenAPI declared (now problem+json, declared)."""

import importlib

import httpx
import jsonschema
import pytest

from procure_devstack.testing import running, token

pytestmark = pytest.mark.kafka

ADDRESS = {"name": "A", "line1": "1 Main St", "city": "X", "postal_code": "1", "country": "US"}
PERSON = {"id": "p-1", "name": "Pat", "email": "pat@example.com"}


def problem_client(app) -> httpx.AsyncClient:
    """A client that shows a crash as the 500 a real client gets, not as an exception."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


# BUG 1 (all services, PostgreSQL only): a NUL character (U+0000) anywhere in a string
# that reaches the database - JSON body, path or query - makes asyncpg raise
# CharacterNotInRepertoireError ("invalid byte sequence for encoding UTF8: 0x00"), which
# the runtime's catch-all handler turns into 500. PostgreSQL text cannot hold NUL; SQLite
# can, so the SQLite fuzz run does not see it. Suggested fix (runtime, once for all): reject
# NUL in path, query and body with 422 before any handler runs (a middleware or a
# dependency in procure_runtime.http.create_app), and map SQLSTATE 22021 to 422 in
# install_problem_handlers as a safety net.
@pytest.mark.parametrize(
    ("service", "method", "url", "body"),
    [
        (
            "quotes",
            "POST",
            "/opportunities",
            {
                "name": "a\x00b",
                "owner": PERSON,
                "organization": {"id": "o", "name": "O", "address": ADDRESS},
            },
        ),
        ("quotes", "GET", "/charges/x%00", None),
        ("inventory", "GET", "/transfers?product_id=%00", None),
        ("inventory", "POST", "/vendors", {"id": "v\x00", "name": "V", "email": "v@example.com"}),
        ("shipping", "POST", "/pick-lists", {"item_ids": ["a\x00"]}),
    ],
)
@pytest.mark.parametrize("db_backend", ["postgresql"])
async def test_a_nul_character_in_input_is_refused_with_a_4xx_on_postgresql(
    service: str, method: str, url: str, body, db_backend: str, service_settings
) -> None:
    settings = service_settings(service)
    app, runtime = importlib.import_module(f"procure_{service}.app").build(settings)
    admin = {"Authorization": f"Bearer {token(settings, 'admin')}"}
    async with running(app, runtime), problem_client(app) as http:
        response = await http.request(method, url, headers=admin, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


# BUG 2 (all services, the runtime): the OpenAPI documents every 422 as FastAPI's
# `HTTPValidationError` in `application/json` ({"detail": [{"loc", "msg", "type"}]}), but
# the services answer 422 with RFC 9457 `application/problem+json` whose `detail` is a
# string and whose items are in `errors`. A client generated from /openapi.json cannot
# read the errors. (401/403/404/409 are not documented at all.) Schemathesis' schema
# check skips these responses because their media type is not declared. Suggested fix in
# procure_runtime.http.create_app: declare a `Problem` schema and use it for 422 (and the
# other error statuses) under `application/problem+json`, e.g. by passing
# `responses={422: {"model": Problem, "content": {"application/problem+json": {}}}}` to
# each include_router and removing the generated HTTPValidationError entries.
@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_a_422_answers_in_the_media_type_and_schema_the_openapi_declares(
    db_backend: str, service_settings
) -> None:
    settings = service_settings("quotes")
    app, runtime = importlib.import_module("procure_quotes.app").build(settings)
    sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
    async with running(app, runtime) as http:
        spec = (await http.get("/openapi.json")).json()
        response = await http.post("/charges", headers=sales, json={})
    assert response.status_code == 422
    declared = spec["paths"]["/charges"]["post"]["responses"]["422"]["content"]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in declared, f"{media_type} not among {sorted(declared)}"
    schema = {**declared[media_type]["schema"], "components": spec["components"]}
    jsonschema.validate(response.json(), schema)
