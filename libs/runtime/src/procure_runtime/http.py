"""FastAPI basics shared by every service: RFC 9457 problem+json for every error (bad
input is never a 500), pagination, and the ops endpoints (/healthz, /readyz, /metrics,
/asyncapi.json)."""

import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import quote, unquote

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from sqlalchemy.exc import DataError, IntegrityError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from procure_runtime.auth import principal_from
from procure_runtime.consumer import is_data_exception, is_transient
from procure_runtime.errors import DomainError, Invalid, Unauthorized
from procure_runtime.logging import get_logger
from procure_runtime.text import NUL, unstorable_text

if TYPE_CHECKING:
    from procure_runtime.service import ServiceRuntime

log = get_logger("procure.http")
PROBLEM = "application/problem+json"


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"urn:procure:problem:{kind}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of every service is answered."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": description,
        "content": {PROBLEM: {"schema": Problem.model_json_schema()}},
    }
    for status, description in (
        (401, "Missing or invalid bearer token"),
        (403, "The token lacks the role this action needs"),
        (404, "Unknown id in the path"),
        (409, "Conflicts with the current state"),
        (422, "Invalid body or query, or an unknown reference"),
    )
}


# Ids come from other systems too, and may hold "/" (a sales order "SO/2026/0042"). A
# client sends it as %2F, but the server decodes the path before routing, so the id
# would split into segments and match no route (a 404 for an order that exists). Every
# route names its ids `{name:id}`: `KeepEncodedSlashes` routes on the path with %2F (and
# %25, so that a literal "%2F" in an id stays itself) still encoded, and `IdConvertor`
# decodes the segment it matched. OpenAPI shows the route as `{name}`.


class IdConvertor(Convertor[str]):
    """One path segment holding an id; %2F and %25 in it are "/" and "%"."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value.replace("%2F", "/").replace("%25", "%")

    def to_string(self, value: str) -> str:
        return quote(value, safe="")  # every reserved character: "?" or "#" would cut it


register_url_convertor("id", IdConvertor())

_KEPT_ESCAPES = re.compile(r"(%2[fF]|%25)")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class KeepEncodedSlashes:
    """Routes on the request's path decoded but for %2F and %25 (upper-cased), from the
    path as it came (`raw_path`). Without it (optional in ASGI, or not ASCII), on the
    decoded path with each "%" as %25: no id is split, and `IdConvertor` gives each
    back as decoded."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _routed_path(scope)
            if path is not None:
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)


def _routed_path(scope: Scope) -> str | None:
    """The path to route on, where it differs from the decoded one."""
    try:
        text = scope["raw_path"].decode("ascii")
    except (KeyError, AttributeError, UnicodeDecodeError):
        decoded: str = scope["path"]
        return decoded.replace("%", "%25") if "%" in decoded else None
    if "%" not in text:
        return None  # nothing was encoded: the decoded path is the raw one
    # A "%" that starts no escape is itself (as a decoder takes it): kept as %25, so
    # that it cannot make one with what a decoded neighbour becomes ("%2%46" is not "/").
    parts = _KEPT_ESCAPES.split(_LONE_PERCENT.sub("%25", text))
    return "".join(p.upper() if i % 2 else unquote(p) for i, p in enumerate(parts))


def _has_nul(request: Request, body: bytes) -> bool:
    # PostgreSQL text cannot hold U+0000; refuse it at the edge on every database alike.
    return (
        "\x00" in request.url.path
        or any("\x00" in k or "\x00" in v for k, v in request.query_params.multi_items())
        or b"\\u0000" in body
        or b"\x00" in body
    )


#: What answers without a token: the operations endpoints and the API's docs.
OPEN_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
    | {"/redoc"}
)


def _unauthenticated(request: Request) -> JSONResponse | None:
    """The 401 a request without a valid token gets, for a body refused before any route's
    auth runs (not JSON, NUL, half a surrogate pair). Spec: "No/invalid token → 401":
    such a request was a 422, which told a caller with no token about the body first."""
    runtime = getattr(request.app.state, "runtime", None)
    if (
        request.url.path in OPEN_PATHS
        or getattr(getattr(runtime, "settings", None), "jwt_secret", None) is None
    ):
        return None  # an app with no secret (a test's) has no token to check
    try:
        principal_from(request)
    except Unauthorized as exc:
        return problem(exc.status, exc.kind, exc.title, exc.detail, **exc.extra)
    return None


def install_problem_handlers(app: FastAPI) -> None:
    @app.middleware("http")
    async def _refuse_unstorable_text(request: Request, call_next: Any) -> Response:
        body = await request.body() if request.method in ("POST", "PUT", "PATCH") else b""
        why = NUL if _has_nul(request, body) else unstorable_text(body)
        if why is None:
            return await call_next(request)
        return _unauthenticated(request) or problem(422, "invalid", "Unprocessable request", why)

    @app.exception_handler(DataError)
    async def _data(_request: Request, exc: DataError) -> JSONResponse:
        # Input the database cannot store (bad encoding, out of range): the client's fault.
        return problem(422, "invalid", "Unprocessable request", "a value cannot be stored as given")

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.kind, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if refused := _unauthenticated(request):  # a body that is not JSON, without a token
            return refused
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem(
            422, "invalid", "Unprocessable request", detail or "invalid request", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem(exc.status_code, kind, str(exc.detail), str(exc.detail))

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests raced to create the same thing; the loser sees current state.
        return problem(
            409, "conflict", "Conflict", "the request conflicts with a concurrent change"
        )

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        if is_data_exception(exc):
            return await _data(request, exc)  # type: ignore[arg-type]
        if is_transient(exc):  # database away, deadlock or serialization failure: retry later
            return problem(503, "unavailable", "Service unavailable", "try again shortly")
        log.error("unhandled error", error=repr(exc), exc_info=exc)
        return problem(500, "internal", "Internal error", "an unexpected error occurred")


# --- pagination --------------------------------------------------------------------------


class Page:
    """`limit` (default 100, at most 1000) and an opaque `cursor` (keyset): the key of the
    last row of the page before, which a list compares in SQL with its order's columns.
    Keyed by a text id; `SeqPage` and `TimePage` for the other keys. A cursor is opaque
    but not trusted: anything but the key a list gives out is a 422, never a value
    handed to the database (a list, or an integer past 64 bits, was a 500 there)."""

    key: ClassVar[TypeAdapter[Any]] = TypeAdapter(
        Annotated[str, Field(strict=True, min_length=1, max_length=500)]
    )

    def __init__(
        self,
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(None, max_length=500),
    ) -> None:
        self.limit = limit
        self.after = self._key(decode_cursor(cursor)) if cursor else None

    def _key(self, value: Any) -> Any:
        try:
            return self.key.validate_python(value)
        except ValidationError:
            raise Invalid("`cursor` is not one this list gave out") from None

    def answer(self, items: list[Any], key: Any, view: Any = None) -> dict[str, Any]:
        """`items` holds up to limit+1 rows; the extra one says there is a next page.
        `key` gives a row's cursor value, `view` (optional) what the client sees of it."""
        more = len(items) > self.limit
        items = items[: self.limit]
        cursor = encode_cursor(key(items[-1])) if more else None
        return {"items": [view(i) for i in items] if view else items, "next_cursor": cursor}


class SeqPage(Page):
    """Keyed by a sequence number (a non-negative 64-bit integer)."""

    key = TypeAdapter(Annotated[int, Field(strict=True, ge=0, lt=2**63)])


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)  # as the database is given it (`UTCDateTime`)
    except OverflowError:
        raise ValueError("out of range in UTC") from None


class TimePage(Page):
    """Keyed by a time and a text id, to break ties: `[iso time, id]`. The time has its
    zone, as a list gives it out, and is one UTC holds (year 1 at +05:00 is not)."""

    key = TypeAdapter(
        tuple[
            Annotated[AwareDatetime, AfterValidator(_in_utc)],
            Annotated[str, Field(strict=True, min_length=1)],
        ]
    )


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def decode_cursor(cursor: str) -> Any:
    """A cursor's JSON. Text that is not UTF-8 (JSON escapes half a UTF-16 pair alone) or
    holds NUL is no key a list gave out, and no database takes it: refused here too."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode())
        value = json.loads(raw)
        json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate raises here
    except ValueError:  # UnicodeError included
        raise Invalid("`cursor` is not one this service gave out") from None
    if b"\\u0000" in raw or b"\x00" in raw:
        raise Invalid("`cursor` is not one this service gave out")
    return value


# --- ops endpoints -------------------------------------------------------------------------


def ops_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> Response:
        runtime: ServiceRuntime = request.app.state.runtime
        checks = await runtime.readiness()
        ok = all(v == "ok" for v in checks.values())
        if ok:
            return JSONResponse({"status": "ready", "checks": checks})
        return problem(
            503,
            "not-ready",
            "Not ready",
            ", ".join(f"{k}: {v}" for k, v in checks.items()),
            checks=checks,
        )

    @router.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/asyncapi.json")
    async def asyncapi(request: Request) -> dict[str, Any]:
        return request.app.state.runtime.asyncapi()

    return router


def create_app(runtime: "ServiceRuntime", *routers: APIRouter) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=f"procure {runtime.settings.service}",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.add_middleware(KeepEncodedSlashes)
    app.include_router(ops_router())
    for router in routers:
        app.include_router(router, responses=PROBLEM_RESPONSES)
    return app
