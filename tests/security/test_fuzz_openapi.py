"""Fuzz every operation of every service's OpenAPI with schemathesis, as an admin: no
request, valid or not, may get a 5xx (spec section 5: bad input is a 4xx), and a
response must match the schema its operation declares for that status.

The services run in-process with `running()`, on SQLite and on PostgreSQL, with the
real broker. Schemathesis generates the cases; they are sent through the service's own
in-process client, in the event loop the service runs in. (`schemathesis.openapi.from_asgi` would start the app's
lifespan a second time in schemathesis' own loop: a second runtime on the same database.)
Failures are collected per operation with a curl command that reproduces them.
"""

import asyncio
import importlib
import os
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from procure_devstack.cli import SERVICES
from procure_devstack.testing import running, token

pytestmark = [
    pytest.mark.kafka,
    # schemathesis' own strategies use `random`; not ours to fix.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

#: Per operation and generation mode; 12 keeps the six services around a minute.
#: `PROCURE_FUZZ_EXAMPLES=200` digs deeper when hunting.
EXAMPLES = int(os.environ.get("PROCURE_FUZZ_EXAMPLES", "12"))
REQUEST_TIMEOUT_S = 30.0
#: Valid requests must also answer with the declared schema; invalid ones only never 5xx.
CHECKS = {
    GenerationMode.POSITIVE: [not_a_server_error, response_schema_conformance],
    GenerationMode.NEGATIVE: [not_a_server_error],
}


async def send(http: httpx.AsyncClient, kwargs: dict[str, Any]) -> httpx.Response:
    """A schemathesis (requests-style) request, sent with the service's httpx client."""
    body: dict[str, Any] = {}
    if "json" in kwargs:
        body["json"] = kwargs["json"]
    elif isinstance(kwargs.get("data"), bytes | str):
        body["content"] = kwargs["data"]
    elif "data" in kwargs:
        body["data"] = kwargs["data"]
    if "files" in kwargs:
        body["files"] = kwargs["files"]
    return await http.request(
        kwargs["method"],
        kwargs["url"],
        params=kwargs.get("params") or None,
        headers=kwargs.get("headers"),
        cookies=kwargs.get("cookies") or None,
        timeout=REQUEST_TIMEOUT_S,
        **body,
    )


def fuzz(
    schema: Any, http: httpx.AsyncClient, headers: dict[str, str], loop: Any, seen: Counter[int]
) -> list[str]:
    """Run every operation (blocking: call it in a worker thread); returns the failures
    and counts the status codes in `seen`."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, checks in CHECKS.items():
            try:
                checker(operation, mode, checks, http, headers, loop, seen)()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to make invalid (no input)
            except AssertionError as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


def checker(
    operation: Any,
    mode: GenerationMode,
    checks: list[Any],
    http: httpx.AsyncClient,
    headers: dict[str, str],
    loop: Any,
    seen: Counter[int],
) -> Any:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://svc", headers=headers)
        future = asyncio.run_coroutine_threadsafe(send(http, kwargs), loop)
        response = future.result(timeout=REQUEST_TIMEOUT_S + 5)
        seen[response.status_code] += 1
        try:
            case.validate_response(response, checks=checks, headers=headers)
        except Exception as exc:
            curl = case.as_curl_command(headers={"Authorization": "Bearer $TOKEN"})
            raise AssertionError(f"{exc}\n  reproduce: {curl}") from None

    return check


@pytest.mark.parametrize("service", SERVICES)
async def test_fuzzed_requests_never_get_a_5xx_nor_an_off_schema_response(
    service: str, service_settings
) -> None:
    settings_ = service_settings(service)
    app, runtime = importlib.import_module(f"procure_{service}.app").build(settings_)
    admin = {"Authorization": f"Bearer {token(settings_, 'admin')}"}
    async with running(app, runtime) as http:
        spec = (await http.get("/openapi.json")).json()
        schema = schemathesis.openapi.from_dict(spec)
        operations = [r.ok().label for r in schema.get_all_operations()]
        assert len(operations) >= 5  # the ops routes and at least one of the service's own
        seen: Counter[int] = Counter()
        loop = asyncio.get_running_loop()
        failures = await asyncio.to_thread(fuzz, schema, http, admin, loop, seen)
        assert (await http.get("/healthz")).status_code == 200
    assert failures == [], "\n\n".join(failures)
    # The admin token let every request through to the service's own logic, which
    # accepted some and refused others.
    assert 200 in seen and 422 in seen and not {401, 403} & set(seen), seen
    print(f"{service}: {sum(seen.values())} requests, status codes {dict(sorted(seen.items()))}")
