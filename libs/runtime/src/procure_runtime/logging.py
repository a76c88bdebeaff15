"""Structured JSON logs carrying service, event id and correlation id (bound per message)."""

import logging
import sys

import structlog

bind = structlog.contextvars.bind_contextvars
clear = structlog.contextvars.clear_contextvars


def configure_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str = "procure") -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
