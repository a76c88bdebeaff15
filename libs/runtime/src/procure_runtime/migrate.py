"""Alembic migrations per service, applied at start (serialized across instances on
PostgreSQL by an advisory lock). A service's `migrations/env.py` calls `run_env`."""

from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    create_engine,
    inspect,
    text,
)

from procure_runtime.db import (
    INBOX_AGE_INDEX,
    NAMING,
    Database,
    UTCDateTime,
    add_runtime_tables,
)

RUNTIME_TABLES = ("outbox", "inbox", "parked")

_LOCK = "SELECT pg_advisory_xact_lock(hashtext('procure-migrations'))"


def alembic_config(script_location: Path, connection: Any = None, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, script_location: Path, revision: str = "head") -> None:
    """To `revision` (a test may stop short of head to build an older schema)."""
    async with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            await conn.execute(text(_LOCK))
        await conn.run_sync(
            lambda sync: command.upgrade(alembic_config(script_location, sync), revision)
        )


def create_runtime_tables() -> None:
    """The runtime's own tables, created by each service's first migration (its template
    calls this), so the outbox, inbox and parking lot are defined in one place."""
    metadata = MetaData(naming_convention=NAMING)
    add_runtime_tables(metadata)
    metadata.create_all(op.get_bind())


def drop_runtime_tables() -> None:
    for name in RUNTIME_TABLES:
        op.drop_table(name)


def drop_outbox_sent_at() -> None:
    """The step of each service's migration made when the relay began deleting what it
    publishes (outbox.py). An outbox made before it has `sent_at` and its index: the rows
    marked sent are done with and go, then the column. One made since has neither
    (`create_runtime_tables` makes the runtime's tables as they are now): nothing to do."""
    if "sent_at" not in {c["name"] for c in inspect(op.get_bind()).get_columns("outbox")}:
        return
    op.execute(text("DELETE FROM outbox WHERE sent_at IS NOT NULL"))
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_pending")
        batch.drop_column("sent_at")


def unit_sums_in_8_bytes(columns: dict[str, list[str]]) -> None:
    """The step of a service's migration made when its counters summed over many events
    became `UNIT_SUM` (`{table: [column, ...]}`): PostgreSQL's INTEGER columns become
    BIGINT (the table is rewritten); SQLite's INTEGER already holds 8 bytes."""
    _unit_sums(columns, Integer(), BigInteger())


def unit_sums_in_4_bytes(columns: dict[str, list[str]]) -> None:
    """`unit_sums_in_8_bytes` undone (a sum past 2**31 - 1 makes it fail)."""
    _unit_sums(columns, BigInteger(), Integer())


def _unit_sums(columns: dict[str, list[str]], was: Any, becomes: Any) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, names in columns.items():
        for name in names:
            op.alter_column(table, name, type_=becomes, existing_type=was, existing_nullable=False)


def money_as_cents_on_sqlite(columns: dict[str, list[str]]) -> None:
    """The step of a service's migration made when its money columns became
    `MoneyAmount`: on SQLite the amounts, stored as floats until then, become whole cents
    (`{table: [column, ...]}`). PostgreSQL's NUMERIC(18,2) is unchanged. An amount a
    float had already moved (16 significant digits or more) stays as it was read."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, names in columns.items():
        for name in names:
            op.execute(
                text(
                    f'UPDATE "{table}" SET "{name}" = CAST(ROUND("{name}" * 100) AS INTEGER) '
                    f'WHERE "{name}" IS NOT NULL'
                )
            )


def money_as_units_on_sqlite(columns: dict[str, list[str]]) -> None:
    """`money_as_cents_on_sqlite` undone."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, names in columns.items():
        for name in names:
            op.execute(text(f'UPDATE "{table}" SET "{name}" = "{name}" / 100.0'))


def parked_key_as_bytes() -> None:
    """The step of each service's migration made when the parking lot began keeping a
    record's key as bytes: it was text of at most 200 characters, so a key that is not
    UTF-8 came back changed and a longer one (or one holding NUL) could not be parked on
    PostgreSQL. Keys parked before are their text's UTF-8. A table made since
    (`create_runtime_tables`) has bytes already: nothing to do."""
    column = {c["name"]: c for c in inspect(op.get_bind()).get_columns("parked")}["key"]
    if isinstance(column["type"], LargeBinary):
        return
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            text(
                'ALTER TABLE parked ALTER COLUMN "key" TYPE bytea USING convert_to("key", \'UTF8\')'
            )
        )
        return
    with op.batch_alter_table("parked") as batch:
        batch.alter_column("key", type_=LargeBinary, existing_nullable=True)
    op.execute(text('UPDATE parked SET "key" = CAST("key" AS BLOB) WHERE "key" IS NOT NULL'))


def parked_key_as_text() -> None:
    """`parked_key_as_bytes` undone (a key that is not UTF-8 is not text: replaced)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            text(
                'ALTER TABLE parked ALTER COLUMN "key" TYPE varchar(200)'
                " USING left(convert_from(\"key\", 'UTF8'), 200)"
            )
        )
        return
    op.execute(text('UPDATE parked SET "key" = CAST("key" AS TEXT) WHERE "key" IS NOT NULL'))
    with op.batch_alter_table("parked") as batch:
        batch.alter_column("key", type_=String(200), existing_nullable=True)


def index_inbox_by_age() -> None:
    """The step of each service's migration made when the inbox began forgetting event
    ids past their retention (`procure_runtime.retention`): the index its prune reads. A
    table made since (`create_runtime_tables`) has it already: nothing to do."""
    if INBOX_AGE_INDEX in {i["name"] for i in inspect(op.get_bind()).get_indexes("inbox")}:
        return
    op.create_index(INBOX_AGE_INDEX, "inbox", ["processed_at"], postgresql_using="brin")


def drop_inbox_age_index() -> None:
    op.drop_index(INBOX_AGE_INDEX, table_name="inbox")


def add_outbox_sent_at() -> None:
    """`drop_outbox_sent_at` undone: the rows left are the unsent ones, as before it."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(Column("sent_at", UTCDateTime(), nullable=True))
        batch.create_index("ix_outbox_pending", ["sent_at", "id"])


def _service_objects(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate leaves the runtime's tables to `create_runtime_tables`."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in RUNTIME_TABLES


def run_env(target_metadata: MetaData) -> None:
    """Body of every service's `migrations/env.py`."""
    cfg = context.config
    connection = cfg.attributes.get("connection")
    if connection is not None:
        _run(connection, target_metadata)
        return
    # Command-line use (`alembic revision --autogenerate`): a throwaway sync engine.
    url = cfg.get_main_option("sqlalchemy.url") or "sqlite:///:memory:"
    engine = create_engine(url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg"))
    with engine.begin() as conn:
        _run(conn, target_metadata)


def _run(connection: Any, target_metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=_service_objects,
    )
    with context.begin_transaction():
        context.run_migrations()


def main(argv: list[str] | None = None) -> int:
    """`python -m procure_runtime.migrate revision SERVICE MESSAGE`: autogenerate the
    next migration of a service from its models (against a scratch SQLite database
    upgraded to the current head)."""
    import importlib
    import sys
    import tempfile

    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 3 or args[0] != "revision":
        print(main.__doc__)
        return 2
    _, service, message = args
    package = importlib.import_module(f"procure_{service}")
    location = Path(package.__file__).parent / "migrations"  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = alembic_config(location, url=f"sqlite:///{tmp}/scratch.db")
        command.upgrade(cfg, "head")
        heads = len(list((location / "versions").glob("*.py")))
        command.revision(cfg, message=message, autogenerate=True, rev_id=f"{heads + 1:04d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
