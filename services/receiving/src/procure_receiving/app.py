"""The receiving service process: runtime + handlers + routes."""

from pathlib import Path

from fastapi import FastAPI

from procure_receiving.api import router
from procure_receiving.handlers import PO_LINE_CLOSED, UNITS_RECEIVED, handlers
from procure_receiving.models import metadata
from procure_runtime import ServiceRuntime
from procure_runtime.http import create_app
from procure_runtime.service import run
from procure_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: ServiceSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(
        "receiving",
        metadata,
        MIGRATIONS,
        handlers,
        publishes=[UNITS_RECEIVED, PO_LINE_CLOSED],
        settings=settings,
    )
    return create_app(runtime, router), runtime


def main() -> None:
    app, runtime = build()
    run(app, runtime)
