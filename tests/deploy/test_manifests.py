"""deploy/: the Dockerfile, the Compose file and the Kubernetes manifests that platform
teams start from. No Docker engine runs here, so they are checked for what would break
them: each service's image installs and imports from the lock alone; every variable
they set is one a service reads; ports, probes and databases are the services' own."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.routing import iter_route_contexts
from pydantic import AliasChoices

from procure_devstack.cli import SERVICES
from procure_notifier.sender import SmtpSettings
from procure_runtime.service import STOP_BUDGET_S
from procure_runtime.settings import DEFAULT_PORTS, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _aliases(model: Any) -> set[str]:
    return {
        str(name)
        for field in model.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for name in field.validation_alias.choices
    }


def known_variables(service: str) -> set[str]:
    """What a service reads: the shared settings, its own port and database, and the
    notifier's SMTP settings."""
    own = {f"{service.upper()}_PORT", f"{service.upper()}_DATABASE_URL"}
    return (
        _aliases(ServiceSettings)
        | own
        | (_aliases(SmtpSettings) if service == "notifier" else set())
    )


def test_the_dockerfile_installs_each_service_from_the_lock_alone(tmp_path: Path) -> None:
    """The build stage's command, for every service: only that service's packages, as
    wheels (the final stage copies the environment without the sources), and the service
    imports with its migrations."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert '--package "procure-$SERVICE"' in dockerfile and "--no-editable" in dockerfile
    assert "python -m procure_$PROCURE_SERVICE" in dockerfile
    # `uv run` names itself in UV; else the one on PATH, else the module (make's fallback)
    found = os.environ.get("UV") or shutil.which("uv")
    uv = [found] if found else [sys.executable, "-m", "uv"]
    for service in SERVICES:
        venv = tmp_path / service
        env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
        subprocess.run(
            [
                *uv,
                "sync",
                "--frozen",
                "--no-dev",
                "--no-editable",
                "--package",
                f"procure-{service}",
                "-q",
            ],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=600,
        )
        probe = (
            f"import importlib, pathlib; importlib.import_module('procure_{service}.app'); "
            f"p = pathlib.Path(importlib.import_module('procure_{service}').__file__).parent; "
            "assert (p / '__main__.py').exists(); "
            "print(len(list((p / 'migrations' / 'versions').glob('0*.py'))))"
        )
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", probe],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) >= 1, f"{service}: no migrations in the installed package"
        installed = {p.name for p in (venv / "lib").glob("python3*/site-packages/procure_*")}
        others = {f"procure_{s}" for s in SERVICES if s != service} | {"procure_devstack"}
        assert not installed & others, f"{service}'s image would carry {installed & others}"


def test_compose_runs_every_service_with_variables_it_reads() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    init = (DEPLOY / "postgres-init.sql").read_text()
    for service in SERVICES:
        spec = services[service]
        assert spec["build"]["args"]["SERVICE"] == service
        assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
        env = {k: str(v) for k, v in spec["environment"].items()}
        assert set(env) - known_variables(service) == set(), service
        port = DEFAULT_PORTS[service]
        assert env[f"{service.upper()}_PORT"] == str(port)
        assert spec["ports"] == [f"{port}:{port}"]
        assert f"{port}/readyz" in " ".join(spec["healthcheck"]["test"])
        database = re.search(r"/(procure_\w+)\?", env[f"{service.upper()}_DATABASE_URL"])
        assert database and f"CREATE DATABASE {database[1]} OWNER procure;" in init
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env["PROCURE_HOST"] == "0.0.0.0"
        assert {"kafka", "postgres"} <= set(spec["depends_on"])
    assert services["notifier"]["environment"]["PROCURE_SMTP_HOST"] == "smtp"
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert len(str(services["quotes"]["environment"]["PROCURE_JWT_SECRET"])) >= 32


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_deploy_every_service_with_its_port_probes_and_secrets() -> None:
    k8s = DEPLOY / "k8s"
    listed = yaml.safe_load((k8s / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in k8s.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    config = {d["kind"]: d for d in _documents(k8s / "config.yaml")}
    shared = set(config["ConfigMap"]["data"])
    secrets = set(config["Secret"]["stringData"])
    for service in SERVICES:
        docs = {d["kind"]: d for d in _documents(k8s / f"{service}.yaml")}
        pod = docs["Deployment"]["spec"]["template"]
        assert (
            docs["Deployment"]["spec"]["selector"]["matchLabels"].items()
            <= pod["metadata"]["labels"].items()
        )
        [container] = pod["spec"]["containers"]
        assert container["image"] == f"procure-{service}:latest"
        port = DEFAULT_PORTS[service]
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        # The port opens once migrations are done: until then liveness must not restart
        # the pod (and roll the migration back), so a startup probe allows 10 minutes.
        startup = container["startupProbe"]
        assert startup["httpGet"]["path"] == "/healthz"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 600
        env = {e["name"]: e for e in container["env"]}
        assert env[f"{service.upper()}_PORT"]["value"] == str(port)
        for entry in env.values():
            if "valueFrom" in entry:
                assert entry["valueFrom"]["secretKeyRef"]["key"] in secrets, entry
        assert (set(env) | (shared - _smtp_only(service))) - known_variables(service) == set()
        assert docs["Service"]["spec"]["ports"][0]["port"] == port
        assert (
            docs["Service"]["spec"]["selector"]
            == docs["Deployment"]["spec"]["selector"]["matchLabels"]
        )
        assert pod["spec"]["securityContext"]["runAsUser"] == 10001  # the image's user


def test_each_grace_period_covers_its_services_longest_stop() -> None:
    """Killed before its stop is over, a service leaves the batch in hand to be read
    again and the outbox's last events until its next start. The notifier's senders
    first finish the mail in hand and say QUIT, each step up to its SMTP timeout."""
    config = {d["kind"]: d for d in _documents(DEPLOY / "k8s" / "config.yaml")}
    smtp = SmtpSettings.model_validate(config["ConfigMap"]["data"])
    for service in SERVICES:
        docs = {d["kind"]: d for d in _documents(DEPLOY / "k8s" / f"{service}.yaml")}
        grace = docs["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        senders = 2 * smtp.timeout_s if service == "notifier" else 0
        assert grace >= STOP_BUDGET_S + senders, service


def _smtp_only(service: str) -> set[str]:
    """The shared ConfigMap carries the notifier's SMTP settings; the others ignore them."""
    return set() if service == "notifier" else _aliases(SmtpSettings)


@pytest.mark.parametrize("service", SERVICES)
def test_the_services_serve_the_probes_the_manifests_name(service: str) -> None:
    import importlib

    app, _ = importlib.import_module(f"procure_{service}.app").build(
        ServiceSettings(service=service, database_url="sqlite+aiosqlite:///:memory:")
    )
    paths = {route.path for route in iter_route_contexts(app.routes)}
    assert {"/readyz", "/healthz"} <= paths


def test_system_deps_names_pip_when_uv_cannot_be_installed_without_it(tmp_path: Path) -> None:
    """A fresh Debian 12: Java, Maven and PostgreSQL present, no uv, and a python3 without
    pip (`make setup` installs uv with pip). Run as a non-root user, the script names
    what to install instead of installing it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {
        "java": "exit 0",
        "mvn": "exit 0",
        "pg_ctlcluster": "exit 0",
        "id": "echo 1000",
        "python3": "exit 1",  # no uv module, no pip module
    }
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    done = subprocess.run(
        ["/bin/bash", str(DEPLOY / "system-deps.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir)},  # nothing else: no uv
    )
    assert done.returncode == 1
    assert "missing system packages: python3-pip" in done.stderr
