"""Bearer JWT auth (HS256, `PROCURE_JWT_SECRET`) with the spec's roles (section 5)."""

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import jwt
from fastapi import Request

from procure_contracts.shapes import Person
from procure_runtime.errors import Forbidden, Unauthorized

ROLES = (
    "sales",
    "inventory",
    "purchasing.approve",
    "purchasing.order",
    "receiving",
    "shipping",
    "billing",
    "admin",
)


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    email: str
    roles: frozenset[str]

    def has(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles

    @property
    def person(self) -> Person:
        return Person(id=self.id, name=self.name, email=self.email)


def make_token(
    secret: str,
    *,
    sub: str,
    name: str,
    email: str,
    roles: list[str] | tuple[str, ...],
    ttl_s: int = 12 * 3600,
) -> str:
    now = int(time.time())
    claims = {
        "sub": sub,
        "name": name,
        "email": email,
        "roles": list(roles),
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["sub"]})
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    roles = claims.get("roles") or []
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("invalid token: `roles` must be a list of strings")
    if not 1 <= len(str(claims["sub"])) <= 200:  # the `Person.id` a write records
        raise Unauthorized("invalid token: `sub` must be a person id of 1 to 200 characters")
    return Principal(
        id=str(claims["sub"]),
        name=str(claims.get("name") or claims["sub"]),
        email=str(claims.get("email") or ""),
        roles=frozenset(roles),
    )


def principal_from(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token (Authorization: Bearer <JWT>)")
    secret = request.app.state.runtime.settings.jwt_secret.get_secret_value()
    return decode_token(secret, token.strip())


async def authenticated(request: Request) -> Principal:
    """Dependency: any valid token (GETs)."""
    return principal_from(request)


def require(role: str) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """Dependency: a valid token that carries `role` (or `admin`)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    async def dependency(request: Request) -> Principal:
        principal = principal_from(request)
        if not principal.has(role):
            raise Forbidden(f"this action needs the role {role!r}")
        return principal

    return dependency
