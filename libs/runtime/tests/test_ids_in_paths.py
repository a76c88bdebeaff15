"""Ids that hold "/" (an outside system's "SO/2026/0042") are reachable in paths: a
client sends them as %2F, and the server decodes a path before routing."""

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import APIRouter

from procure_runtime.http import create_app

router = APIRouter()


@router.get("/things/{thing_id:id}")
async def thing(thing_id: str) -> dict[str, str]:
    return {"thing": thing_id}


@router.post("/things/{thing_id:id}/parts/{part_id:id}/close")
async def close(thing_id: str, part_id: str) -> dict[str, str]:
    return {"thing": thing_id, "part": part_id}


@pytest.fixture
async def http() -> Any:
    runtime: Any = SimpleNamespace(settings=SimpleNamespace(service="paths"))
    app = create_app(runtime, router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        client.app = app
        yield client


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        ("SO%2F2026%2F0042", "SO/2026/0042"),
        ("so%2f1", "so/1"),  # lower-case escapes too
        ("a%252Fb", "a%2Fb"),  # a literal "%2F" in an id stays itself
        ("100%25", "100%"),
        ("50%25%2F50", "50%/50"),
        ("caf%C3%A9", "café"),
        ("a%20b", "a b"),
        ("ch-1", "ch-1"),
        # A "%" that starts no escape is itself, and makes none with its neighbours.
        ("a%2%46b", "a%2Fb"),
        ("a%%32Fb", "a%2Fb"),
        ("100%", "100%"),
    ],
)
async def test_an_id_is_the_path_segment_decoded(http: Any, sent: str, received: str) -> None:
    response = await http.get(f"/things/{sent}")
    assert response.status_code == 200, response.text
    assert response.json() == {"thing": received}


async def test_several_ids_in_one_path_and_the_route_after_them(http: Any) -> None:
    response = await http.post("/things/SO%2F1/parts/L%2F2%2F3/close")
    assert response.status_code == 200, response.text
    assert response.json() == {"thing": "SO/1", "part": "L/2/3"}
    # Unencoded, a "/" still separates segments: no id spans two of them.
    assert (await http.get("/things/SO/1")).status_code == 404
    assert (await http.post("/things/SO/1/parts/L/close")).status_code == 404


async def test_a_nul_in_an_encoded_id_is_still_refused(http: Any) -> None:
    response = await http.get("/things/a%00%2Fb")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_route_builds_its_url_with_the_id_encoded(http: Any) -> None:
    path = http.app.url_path_for("close", thing_id="SO/2026/1", part_id="100%")
    assert path == "/things/SO%2F2026%2F1/parts/100%25/close"
    assert (await http.post(path)).json() == {"thing": "SO/2026/1", "part": "100%"}
    odd = "a?b#c d/é%"
    path = http.app.url_path_for("thing", thing_id=odd)
    assert (await http.get(path)).json() == {"thing": odd}


@pytest.mark.parametrize(
    ("decoded", "received"),
    [("/things/a%2Fb", "a%2Fb"), ("/things/100%", "100%"), ("/things/ch-1", "ch-1")],
)
async def test_without_raw_path_the_decoded_path_is_routed_as_it_is(
    decoded: str, received: str
) -> None:
    """`raw_path` is optional in ASGI: without it the path is already decoded, and each of
    its characters is the id's own."""
    runtime: Any = SimpleNamespace(settings=SimpleNamespace(service="paths"))
    app = create_app(runtime, router)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": decoded,
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t")],
        "server": ("t", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    assert json.loads(sent[1]["body"]) == {"thing": received}


async def test_openapi_names_the_routes_as_the_contract_does(http: Any) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert "/things/{thing_id}" in paths
    assert "/things/{thing_id}/parts/{part_id}/close" in paths
