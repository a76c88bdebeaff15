"""The shipping service process: runtime + handlers + routes."""

from pathlib import Path

from fastapi import FastAPI

from procure_runtime import ServiceRuntime
from procure_runtime.http import create_app
from procure_runtime.service import run
from procure_runtime.settings import ServiceSettings
from procure_shipping.api import router
from procure_shipping.documents import router as documents
from procure_shipping.handlers import SHIPMENT_CANCELED, SHIPMENT_DELIVERED, handlers
from procure_shipping.models import metadata

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: ServiceSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(
        "shipping",
        metadata,
        MIGRATIONS,
        handlers,
        publishes=[SHIPMENT_DELIVERED, SHIPMENT_CANCELED],
        settings=settings,
    )
    return create_app(runtime, router, documents), runtime


def main() -> None:
    app, runtime = build()
    run(app, runtime)
