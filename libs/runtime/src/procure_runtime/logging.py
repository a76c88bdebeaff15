"""Structured JSON logs on stderr carrying service, event id and correlation id (bound per
message). Our own lines come from structlog; the libraries' (aiokafka, FastStream,
uvicorn, SQLAlchemy, Alembic) go through the standard `logging` module and are rendered
as the same JSON, one object a line, so a log shipper reads a service's whole output."""

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

bind = structlog.contextvars.bind_contextvars
clear = structlog.contextvars.clear_contextvars

# The context FastStream attaches to its records (`extra`); other libraries' extras (such
# as uvicorn's `color_message`, the same text with terminal colours) are left out.
_FASTSTREAM_EXTRAS = ("topic", "group_id", "message_id")


def _drop_empty_extras(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """FastStream sends `message_id=""` on lines about no message (a rebalance)."""
    for key in _FASTSTREAM_EXTRAS:
        if event.get(key) == "":
            del event[key]
    return event


# What every line gets, ours and the libraries' alike.
_CONTEXT: list[Any] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level]
_STAMP = structlog.processors.TimeStamper(fmt="iso", utc=True)
_RENDER: list[Any] = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]


def _stdlib_handler(level: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *_CONTEXT,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=_FASTSTREAM_EXTRAS),
                _drop_empty_extras,
                _STAMP,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_RENDER],
        )
    )
    handler.set_name("procure-json")
    handler.setLevel(level)
    return handler


def configure_logging(service: str, level: str = "INFO") -> None:
    """Idempotent: a process may call it at start and again as its runtime starts. When
    something else has configured the root logger first (a test runner's capture), its
    handlers are left alone, as `logging.basicConfig` would."""
    level = level.upper()
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == "procure-json"]
    if ours or not root.handlers:
        for handler in ours:
            root.removeHandler(handler)
        root.addHandler(_stdlib_handler(level))
        root.setLevel(level)
    structlog.configure(
        processors=[*_CONTEXT, _STAMP, *_RENDER],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # One write a line (message and newline together, as the handler above writes):
        # `print` writes them apart, and a driver's thread logging in between (aiosqlite's)
        # ran two lines into one.
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str = "procure") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)


class _NotTopicCreation(logging.Filter):
    """FastStream warns at every start that a consumer-only broker creates no topics. The
    runtime creates them itself before the broker starts (`ensure_topics`), so the
    warning would only send an operator looking for a problem that is not there."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Topic creation is skipped in consumer-only mode" not in record.getMessage()


def faststream_logger() -> Any:
    """The logger a service's FastStream broker writes to, so its lines are JSON like the
    rest. Not FastStream's own `faststream` logger: that one has a handler of its own,
    which prints padded, coloured text."""
    logger = logging.getLogger("procure.faststream")
    if not any(isinstance(f, _NotTopicCreation) for f in logger.filters):
        logger.addFilter(_NotTopicCreation())
    return logger
