"""Settings from the environment, with the spec's exact variable names (sections 1, 4, 7)."""

import asyncio
import os
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

DEFAULT_PORTS = {
    "quotes": 8101,
    "inventory": 8102,
    "purchasing": 8103,
    "receiving": 8104,
    "shipping": 8105,
    "notifier": 8106,
}
DEV_JWT_SECRET = "procure-dev-secret-change-me-before-production"


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class SpecSettings(BaseSettings):
    """Settings read from the environment by the names the spec gives them (each field's
    alias) and by no other. Code may still pass a field by its name (`populate_by_name`),
    but pydantic-settings would then also read the bare name from the environment: a
    `DATABASE_URL`, `HOST`, `PORT` or `USERNAME` meant for something else (a shell, a
    platform) would reach the services, the notifier's SMTP login among them."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _AliasesOnly(settings_cls, env_settings)


class _AliasesOnly(PydanticBaseSettingsSource):
    """What an environment source found under the fields' aliases, not their names."""

    def __init__(self, settings_cls: type[BaseSettings], source: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.source = source
        self.aliases = {
            str(choice)
            for field in settings_cls.model_fields.values()
            if isinstance(field.validation_alias, AliasChoices)
            for choice in field.validation_alias.choices
        }

    def get_field_value(self, field: object, field_name: str) -> tuple[object, str, bool]:
        raise NotImplementedError  # __call__ asks the wrapped source instead

    def __call__(self) -> dict[str, object]:
        return {k: v for k, v in self.source().items() if k in self.aliases}


class ServiceSettings(SpecSettings):
    """Everything a service process reads from its environment."""

    service: str = "service"
    port: int = 0
    database_url: str = ""
    host: str = Field("127.0.0.1", validation_alias=_env("PROCURE_HOST"))
    data_dir: Path = Field(Path("./var"), validation_alias=_env("PROCURE_DATA_DIR"))
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=_env("KAFKA_BOOTSTRAP_SERVERS")
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT", validation_alias=_env("KAFKA_SECURITY_PROTOCOL")
    )
    kafka_sasl_mechanism: str | None = Field(None, validation_alias=_env("KAFKA_SASL_MECHANISM"))
    kafka_sasl_username: str | None = Field(None, validation_alias=_env("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("KAFKA_SASL_PASSWORD")
    )
    kafka_ssl_cafile: str | None = Field(None, validation_alias=_env("KAFKA_SSL_CAFILE"))
    topic_prefix: str = Field("", validation_alias=_env("PROCURE_TOPIC_PREFIX"))
    topic_partitions: int = Field(3, validation_alias=_env("PROCURE_TOPIC_PARTITIONS"))
    topic_replication: int = Field(1, validation_alias=_env("PROCURE_TOPIC_REPLICATION"))
    # Records fetched and applied per transaction (and per offset commit); 1 = one at a
    # time. Larger batches trade a little latency under load for throughput: a backlog
    # went 10-25% faster at 500 than at 200 (bench/levers.md, lever 31). A fetch hands
    # over only what has arrived, so at a steady rate batches stay small.
    consume_batch: int = Field(500, ge=1, validation_alias=_env("PROCURE_CONSUME_BATCH"))
    # How long the broker may hold a fetch to gather records into one batch: fewer, larger
    # batches (fewer transactions and offset commits) for at most this much latency per
    # hop; 0 = answer as soon as any record is there. Unset: the service's own
    # (`procure_runtime.kafka.Gathering`; 50 ms, the notifier 250).
    fetch_wait_ms: int | None = Field(None, ge=0, validation_alias=_env("PROCURE_FETCH_WAIT_MS"))
    # ... or until this many bytes are there. Unset: the service's own (16 KB, the
    # notifier 256 KB). Raising the wait alone does not make a busy service's batches
    # larger: under a steady flow these bytes arrive first.
    fetch_min_bytes: int | None = Field(
        None, ge=1, validation_alias=_env("PROCURE_FETCH_MIN_BYTES")
    )
    # How often the consumer commits the offsets of what it has applied, in the background
    # (procure_runtime.offsets): one commit for the batches of that span, and no batch
    # waits for the broker's answer. A crash replays at most that span (the inbox skips
    # it); a stop or a rebalance commits first. 0 = after every batch.
    commit_interval_ms: int = Field(250, ge=0, validation_alias=_env("PROCURE_COMMIT_INTERVAL_MS"))
    park_timeout_s: float = Field(600.0, validation_alias=_env("PROCURE_PARK_TIMEOUT_S"))
    # How long the inbox remembers an applied event id (`procure_runtime.retention`): a
    # record read again after that is applied again, so keep it longer than any record
    # can be read again (the retention of the topics consumed; Kafka's default is 7
    # days). 0 = for ever. At most a century: a cutoff must be a date.
    inbox_retention_days: float = Field(
        30.0,
        ge=0,
        le=36500,
        allow_inf_nan=False,
        validation_alias=_env("PROCURE_INBOX_RETENTION_DAYS"),
    )
    handler_max_attempts: int = Field(5, validation_alias=_env("PROCURE_HANDLER_MAX_ATTEMPTS"))
    retry_backoff_s: float = Field(0.2, validation_alias=_env("PROCURE_RETRY_BACKOFF_S"))
    jwt_secret: SecretStr = Field(
        SecretStr(DEV_JWT_SECRET), validation_alias=_env("PROCURE_JWT_SECRET")
    )
    log_level: str = Field("INFO", validation_alias=_env("PROCURE_LOG_LEVEL"))
    # The process's event loop: uvloop (libuv; its sockets, TLS and callbacks cost a
    # fraction of asyncio's pure-Python ones, bench/levers.md lever 19) where installed,
    # or the standard library's asyncio, e.g. to rule the loop out when chasing a bug.
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop" if find_spec("uvloop") else "asyncio",
        validation_alias=_env("PROCURE_EVENT_LOOP"),
    )

    @property
    def source(self) -> str:
        """The CloudEvents `source` of everything this service emits."""
        return f"/procure/{self.service}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def group_id(self) -> str:
        return f"{self.topic_prefix}{self.service}"


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new event loop of `kind` (`ServiceSettings.event_loop`), for the
    processes and threads that run a loop of their own (uvicorn takes the name itself)."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def load_settings(service: str, **overrides: object) -> ServiceSettings:
    """Settings of one service: `<NAME>_PORT` and `<NAME>_DATABASE_URL` plus the shared
    variables; the database defaults to an SQLite file under `PROCURE_DATA_DIR`."""
    upper = service.upper()
    values: dict[str, object] = {"service": service}
    values["port"] = int(os.environ.get(f"{upper}_PORT", DEFAULT_PORTS.get(service, 8100)))
    if url := os.environ.get(f"{upper}_DATABASE_URL"):
        values["database_url"] = url
    values.update(overrides)
    settings = ServiceSettings(**values)  # type: ignore[arg-type]
    if not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = (settings.data_dir / f"{service}.db").resolve()
        settings.database_url = f"sqlite+aiosqlite:///{path}"
    return settings
