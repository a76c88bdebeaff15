"""The purchasing service process: runtime + handlers + routes."""

from pathlib import Path

from fastapi import FastAPI

from procure_contracts.registry import spec_for_topic
from procure_purchasing.api import router
from procure_purchasing.api_orders import router as orders_router
from procure_purchasing.handlers import handlers
from procure_purchasing.models import metadata
from procure_runtime import ServiceRuntime
from procure_runtime.http import create_app
from procure_runtime.service import run
from procure_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"
PUBLISHES = [
    spec_for_topic(topic)
    for topic in (
        "settings.procurement",
        "approval.requested",
        "approval.decided",
        "charge.forwarded",
        "pick.requested",
        "po.submitted",
        "po.canceled",
    )
]


def build(settings: ServiceSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(
        "purchasing", metadata, MIGRATIONS, handlers, publishes=PUBLISHES, settings=settings
    )
    return create_app(runtime, router, orders_router), runtime


def main() -> None:
    app, runtime = build()
    run(app, runtime)
