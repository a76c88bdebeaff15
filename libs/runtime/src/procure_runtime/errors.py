"""Domain exceptions every service raises; the HTTP layer maps each to problem+json once.
And `describe`, an exception in one line for logs, health checks and stored errors."""


def describe(exc: BaseException, limit: int) -> str:
    """`Type: message`, at most `limit` characters (the type once, when the message
    already names it, as aiokafka's do: `[Error 58] SaslAuthenticationFailed: ...`)."""
    name, message = type(exc).__name__, str(exc)
    named = message.startswith(name) or f"] {name}:" in message
    return (message if named else f"{name}: {message}")[:limit]


class DomainError(Exception):
    status = 400
    kind = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    status = 404
    kind = "not-found"
    title = "Not found"


class Conflict(DomainError):
    """The request conflicts with current state (not enough available, already decided...)."""

    status = 409
    kind = "conflict"
    title = "Conflict"


class Invalid(DomainError):
    status = 422
    kind = "invalid"
    title = "Unprocessable request"


class UnknownReference(Invalid):
    """A body names an id this service has not learnt of (yet): clients may retry."""

    kind = "unknown-reference"
    title = "Unknown reference"


class Unauthorized(DomainError):
    status = 401
    kind = "unauthorized"
    title = "Unauthorized"


class Forbidden(DomainError):
    status = 403
    kind = "forbidden"
    title = "Forbidden"
