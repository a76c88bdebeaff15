"""The inventory service process: runtime + handlers + routes."""

from pathlib import Path

from fastapi import FastAPI

from procure_inventory import catalog
from procure_inventory.api import router
from procure_inventory.handlers import handlers
from procure_inventory.models import metadata
from procure_inventory.picking import PICK_FAILED, PICKED, RELEASED, RESERVED
from procure_runtime import ServiceRuntime
from procure_runtime.http import create_app
from procure_runtime.service import run
from procure_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def build(settings: ServiceSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(
        "inventory",
        metadata,
        MIGRATIONS,
        handlers,
        publishes=[
            catalog.PRODUCTS,  # compacted: the runtime creates them so
            catalog.VENDORS,
            catalog.LOCATIONS,
            RESERVED,
            RELEASED,
            PICKED,
            PICK_FAILED,
        ],
        settings=settings,
    )
    return create_app(runtime, catalog.router, router), runtime


def main() -> None:
    app, runtime = build()
    run(app, runtime)
