"""The quotes service process: runtime + handlers + routes."""

from pathlib import Path

from fastapi import FastAPI

from procure_contracts.registry import spec_for_topic
from procure_quotes import api, api_orders
from procure_quotes.handlers import handlers
from procure_quotes.models import metadata
from procure_runtime import ServiceRuntime
from procure_runtime.http import create_app
from procure_runtime.service import run
from procure_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"
PUBLISHES = (
    "opportunity.won",
    "opportunity.lost",
    "charge.created",
    "charge.ready",
    "charge.need_order",
    "salesorder.ready_to_fulfill",
    "salesorder.fulfilled",
    "charge.posted",
)


def build(settings: ServiceSettings | None = None) -> tuple[FastAPI, ServiceRuntime]:
    runtime = ServiceRuntime(
        "quotes",
        metadata,
        MIGRATIONS,
        handlers,
        publishes=[spec_for_topic(t) for t in PUBLISHES],
        settings=settings,
    )
    return create_app(runtime, api.router, api_orders.router), runtime


def main() -> None:
    app, runtime = build()
    run(app, runtime)
