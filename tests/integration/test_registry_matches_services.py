"""The event catalog (contracts' REGISTRY, from which docs/events.md and the architecture
diagram are generated) names exactly the topics each service subscribes to: ops engineers
and the fault suite's consumer-group resets rely on it."""

import importlib

import pytest

from procure_contracts.registry import REGISTRY
from procure_devstack.cli import SERVICES
from procure_runtime.settings import load_settings


@pytest.mark.parametrize("service", SERVICES)
def test_registry_consumers_are_the_service_subscriptions(service: str, tmp_path) -> None:
    settings = load_settings(service, database_url=f"sqlite+aiosqlite:///{tmp_path}/db")
    _, runtime = importlib.import_module(f"procure_{service}.app").build(settings)
    catalog = {spec.topic for spec in REGISTRY if service in spec.consumers}
    assert sorted(runtime.handlers.topics) == sorted(catalog)
