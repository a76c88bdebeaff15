"""Settings come from the environment under the spec's names only: a variable named like
a field (`DATABASE_URL`, `HOST`, `PORT`, `USERNAME`), set for a shell or a platform, is
not read. Code still passes a field by its name."""

import pytest

from procure_notifier.sender import SmtpSettings
from procure_runtime.settings import DEV_JWT_SECRET, load_settings

BARE = {
    "SERVICE": "other",
    "PORT": "2525",
    "DATABASE_URL": "postgresql+asyncpg://shared/db",
    "HOST": "0.0.0.0",
    "DATA_DIR": "/elsewhere",
    "JWT_SECRET": "x" * 40,
    "LOG_LEVEL": "DEBUG",
    "TOPIC_PREFIX": "other.",
    "EVENT_LOOP": "asyncio",
    "CONSUME_BATCH": "7",
    "USERNAME": "bob",
    "PASSWORD": "hunter2",
    "SENDER": "bob@example.com",
    "TLS": "tls",
    "CONNECTIONS": "9",
    "TIMEOUT_S": "1",
}


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # the default SQLite file goes under ./var
    for name, value in BARE.items():
        monkeypatch.setenv(name, value)
        monkeypatch.setenv(name.lower(), value)


@pytest.mark.usefixtures("bare_env")
def test_a_service_ignores_variables_named_like_its_fields() -> None:
    s = load_settings("quotes")
    assert s.service == "quotes" and s.port == 8101
    assert s.database_url.startswith("sqlite+aiosqlite:///") and s.database_url.endswith(
        "/var/quotes.db"
    )
    assert s.host == "127.0.0.1" and s.topic_prefix == "" and s.log_level == "INFO"
    assert s.jwt_secret.get_secret_value() == DEV_JWT_SECRET
    assert s.consume_batch == 500


@pytest.mark.usefixtures("bare_env")
def test_the_notifier_ignores_variables_named_like_its_smtp_fields() -> None:
    smtp = SmtpSettings()
    assert (smtp.host, smtp.port, smtp.username, smtp.password) == ("127.0.0.1", 1025, None, None)
    assert (smtp.sender, smtp.tls, smtp.connections, smtp.timeout_s) == (
        "procure-notifier@localhost",
        "none",
        4,
        30.0,
    )


@pytest.mark.usefixtures("bare_env")
def test_the_spec_names_and_field_names_in_code_still_set_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUOTES_DATABASE_URL", "postgresql+asyncpg://q/quotes")
    monkeypatch.setenv("QUOTES_PORT", "9101")
    monkeypatch.setenv("PROCURE_HOST", "0.0.0.0")
    monkeypatch.setenv("PROCURE_CONSUME_BATCH", "50")
    monkeypatch.setenv("PROCURE_SMTP_USERNAME", "mailer")
    monkeypatch.setenv("PROCURE_SMTP_PORT", "587")
    s = load_settings("quotes", kafka_bootstrap_servers="k:9092")
    assert (s.database_url, s.port, s.host) == ("postgresql+asyncpg://q/quotes", 9101, "0.0.0.0")
    assert (s.consume_batch, s.kafka_bootstrap_servers) == (50, "k:9092")
    smtp = SmtpSettings()
    assert (smtp.username, smtp.port) == ("mailer", 587)
    assert SmtpSettings(port=2526, username="u").port == 2526
