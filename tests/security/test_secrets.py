"""Secrets come only from the environment, are held as pydantic `SecretStr`, and never
show up in HTTP responses (problem details included) or in the service's logs.

The services run as real processes (`python -m procure_<name>`) with the secrets in their
environment, so everything they print to stdout/stderr is captured in a file, whatever
logger wrote it. That file also shows that every line a service prints is one JSON object
(docs/operations.md, `PROCURE_LOG_LEVEL`), the libraries' lines included."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from procure_contracts import events as ev
from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.ports import free_port
from procure_devstack.smtp import SmtpSink
from procure_devstack.testing import KafkaProbe, eventually, unique
from procure_notifier.sender import SmtpSettings
from procure_runtime.auth import make_token
from procure_runtime.settings import load_settings

JWT_SECRET = "jwt-secret-3f9c1e7a-never-in-a-log-0001"
KAFKA_PASSWORD = "kafka-password-8d2b6f40-never-in-a-log"
SMTP_PASSWORD = "smtp-password-c71e95aa-never-in-a-log"
SECRETS = {
    "PROCURE_JWT_SECRET": JWT_SECRET,
    "KAFKA_SASL_PASSWORD": KAFKA_PASSWORD,
    "PROCURE_SMTP_PASSWORD": SMTP_PASSWORD,
}
MASK = "**********"


def assert_no_secret(text: str, where: str) -> None:
    for name, value in SECRETS.items():
        assert value not in text, f"{name} leaked into {where}"


def test_settings_hold_the_secrets_from_env_only_as_secretstr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROCURE_DATA_DIR", str(tmp_path))
    settings = load_settings("quotes")
    smtp = SmtpSettings()

    assert isinstance(settings.jwt_secret, SecretStr)
    assert isinstance(settings.kafka_sasl_password, SecretStr)
    assert isinstance(smtp.password, SecretStr)
    assert settings.jwt_secret.get_secret_value() == JWT_SECRET
    assert settings.kafka_sasl_password.get_secret_value() == KAFKA_PASSWORD
    assert smtp.password.get_secret_value() == SMTP_PASSWORD
    for model in (settings, smtp):
        for shown in (repr(model), str(model), model.model_dump_json(), str(model.model_dump())):
            assert MASK in shown
            assert_no_secret(shown, f"{type(model).__name__} output")


# ------------------------------------------------------------------ real processes


def service_env(service: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "PROCURE_"))}
    return {
        **base,
        **SECRETS,
        f"{service.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / service}.db",
        "PROCURE_DATA_DIR": str(tmp_path),
        "PROCURE_LOG_LEVEL": "DEBUG",  # the chattiest setting is the one that must not leak
        **extra,
    }


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of a service's output, each of which must be one JSON object."""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:300]!r}") from None
    return lines


@contextmanager
def service_process(service: str, port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """Run `python -m procure_<service>`; yield its base URL once /healthz answers."""
    env = {**env, f"{service.upper()}_PORT": str(port)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", f"procure_{service}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def healthy(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


def bearer(secret: str, *roles: str) -> dict[str, str]:
    jwt = make_token(secret, sub="u-1", name="Tess", email="tess@example.com", roles=roles)
    return {"Authorization": f"Bearer {jwt}"}


async def test_failing_requests_and_an_unreachable_broker_never_reveal_secrets(
    tmp_path: Path,
) -> None:
    env = service_env(
        "quotes",
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nothing listens there
        KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        KAFKA_SASL_USERNAME="quotes",
        PROCURE_TOPIC_PREFIX=unique("sec") + ".",
    )
    log = tmp_path / "quotes.log"
    responses: list[httpx.Response] = []
    with service_process("quotes", free_port(), env, log) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            await eventually(lambda: healthy(http), timeout=60)

            async def call(method: str, path: str, status: int, **kw: object) -> None:
                response = await http.request(method, path, **kw)
                assert response.status_code == status, (path, response.text)
                assert response.headers["content-type"].startswith("application/problem+json")
                responses.append(response)

            sales, billing = bearer(JWT_SECRET, "sales"), bearer(JWT_SECRET, "billing")
            forged = bearer("an-attacker-secret-that-is-long-enough", "admin")
            await call("GET", "/readyz", 503)  # kafka is unreachable
            await call("GET", "/sales-orders/so-1", 401)  # no token
            await call("GET", "/sales-orders/so-1", 401, headers=forged)
            await call("GET", "/sales-orders/so-1", 401, headers={"Authorization": JWT_SECRET})
            await call("POST", "/charges/ch-1/post", 403, headers=sales)
            await call("GET", "/sales-orders/so-missing", 404, headers=billing)
            await call("GET", "/no-such-route", 404)
            await call("POST", "/opportunities", 422, headers=sales, json={"name": 7})
            await call("POST", "/opportunities", 422, headers=sales, content=b"{not json")
            for path in ("/asyncapi.json", "/metrics"):
                responses.append(await http.get(path))
            assert "kafka" in responses[0].json()["checks"]

    for response in responses:
        assert_no_secret(f"{response.headers}\n{response.text}", str(response.request.url))
    text = log.read_text()
    # The structured retry warning (with the Kafka error) and the libraries' DEBUG lines.
    assert '"event": "kafka not reachable yet; retrying", "service": "quotes"' in text
    assert "Unable to bootstrap" in text and len(text.splitlines()) > 20
    assert_no_secret(text, "the quotes log")
    loggers = {line["logger"] for line in json_lines(text) if "logger" in line}
    assert {"aiokafka", "uvicorn.error"} <= loggers


READY = spec_for_topic("salesorder.ready_to_fulfill")


@pytest.mark.kafka
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_a_refused_smtp_login_keeps_the_password_out_of_last_error_and_logs(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str
) -> None:
    prefix = f"{topic_prefix}{unique()}."
    with SmtpSink(credentials={"procure": "the-real-password"}) as sink:
        env = service_env(
            "notifier",
            tmp_path,
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            PROCURE_TOPIC_PREFIX=prefix,
            PROCURE_TOPIC_PARTITIONS="1",
            PROCURE_SMTP_HOST="127.0.0.1",
            PROCURE_SMTP_PORT=str(sink.port),
            PROCURE_SMTP_USERNAME="procure",
            PROCURE_SMTP_RETRY_BACKOFF_S="0.2",
            PROCURE_SMTP_RETRY_MAX_S="0.5",
            PROCURE_SMTP_POLL_S="0.1",
        )
        log = tmp_path / "notifier.log"
        with service_process("notifier", free_port(), env, log) as url:
            async with (
                httpx.AsyncClient(base_url=url, timeout=10) as http,
                KafkaProbe(kafka_bootstrap, prefix) as kafka,
            ):
                await eventually(lambda: healthy(http), timeout=60)
                owner = f.person("Sam Sales")
                # The ready mail waits for its sales order in the stakeholder directory.
                won = f.opportunity_won(sales_order_id="so-9", so_owner=owner)
                await kafka.publish(spec_for_topic("opportunity.won"), won)
                await kafka.publish(
                    READY, ev.SalesOrderReadyToFulfillV1(sales_order_id="so-9", owner=owner)
                )

                async def failed_twice() -> httpx.Response | None:
                    response = await http.get("/notifications", headers=bearer(JWT_SECRET))
                    items = response.json()["items"]
                    return response if items and items[0]["attempts"] >= 2 else None

                response = await eventually(failed_twice, timeout=60)
                [row] = response.json()["items"]
                assert row["status"] == "pending" and row["sent_at"] is None
                assert row["last_error"].startswith("SMTPAuthenticationError")
                assert sink.messages == []

    assert_no_secret(response.text, "GET /notifications")
    text = log.read_text()
    assert "send failed; will retry" in text
    assert_no_secret(text, "the notifier log")
    # FastStream's lines too (its consumer joined the group), without its terminal colours.
    faststream = [line for line in json_lines(text) if line.get("logger") == "procure.faststream"]
    assert any("assigned to partitions" in line["event"] for line in faststream)
    assert "\x1b[" not in text
