"""One async SQLAlchemy engine per service, the runtime's own tables (outbox, inbox,
parking lot), and dialect helpers. SQLite (embedded default) and PostgreSQL."""

import collections
import functools
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NoReturn

import pydantic_core
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    any_,
    bindparam,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql import ColumnElement, Executable, Insert
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import greenlet_spawn

from procure_contracts.shapes import Id
from procure_runtime.errors import Conflict

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
#: 8 bytes on both databases. SQLite's INTEGER already is, so the type stays INTEGER there:
#: an INTEGER PRIMARY KEY is SQLite's rowid, and autogenerate sees no change.
BigId = BigInteger().with_variant(Integer(), "sqlite")
INBOX_AGE_INDEX = "ix_inbox_processed_at"


# The OpenAPI description of a create body's `id`, for `id_for_new`'s rule.
CLIENT_ID_DOC = (
    "The new {}'s id, chosen by the client; the server makes one when it is absent. An "
    "id that exists already is a 409 that changes nothing, so a request whose answer was "
    "lost can be sent again. Any characters, '/' included, percent-encoded in a path."
)

# A create body's client-chosen `id`: the contract's `Id` (1-200 characters), as ids
# that other systems put in events. Each route reaches any of them (`{name:id}`,
# `procure_runtime.http.IdConvertor`).
ClientId = Id


async def id_for_new(
    session: AsyncSession,
    column: Column[Any],
    wanted: str | None,
    make: Callable[[], str],
    noun: str,
) -> str:
    """The id a create gives its row: the client's (`id` in the body) or `make()`.

    A client's id that exists already is a 409, so a request retried after it went
    through (its answer lost on the way) is refused instead of done twice. Two requests
    racing with one id meet the column's unique index: an `IntegrityError`, also a 409."""
    if wanted is None:
        return make()
    if await session.scalar(select(column).where(column == wanted)) is not None:
        raise Conflict(f"{noun} {wanted!r} exists already")
    return wanted


def utcnow() -> datetime:
    return datetime.now(UTC)


#: A count of units summed over many events (a location's stock, a line's receipts): a
#: quantity is at most 2**31 - 1, but their sum can pass it, which PostgreSQL's INTEGER
#: refused where SQLite stored it. The same 8-byte type as `BigId` (no table rebuild on
#: SQLite); a name of its own because a count is not a key.
UNIT_SUM = BigId

CENT = Decimal("0.01")


class _WholeCents(Numeric[Decimal]):
    """SQLite's side of `MoneyAmount`: the integer goes to the driver as it is (Numeric
    would make it a float) and comes back as stored (an INTEGER in a NUMERIC column)."""

    def bind_processor(self, dialect: Any) -> None:
        return None

    def result_processor(self, dialect: Any, coltype: Any) -> None:
        return None


class MoneyAmount(TypeDecorator[Decimal]):
    """A money amount, exact to the cent on both dialects: `NUMERIC(18,2)` on PostgreSQL,
    whole cents on SQLite. SQLite has no decimal type and SQLAlchemy stored a Decimal as
    a float there (under 16 significant digits: 99999999999999.99 came back a cent off,
    the contract's largest amount as 10^16, beyond its bound, a 500 on the next read).
    Rounded half away from zero on both, as PostgreSQL rounds to the column's scale."""

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return _WholeCents(18, 2)  # the column stays NUMERIC(18,2), as migrated
        return dialect.type_descriptor(Numeric(18, 2))

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        amount = Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
        return int(amount.scaleb(2)) if dialect.name == "sqlite" else amount

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-2)
        return Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both dialects (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def new_metadata() -> MetaData:
    """Each service's metadata: its own tables plus the runtime's."""
    metadata = MetaData(naming_convention=NAMING)
    add_runtime_tables(metadata)
    return metadata


def add_runtime_tables(metadata: MetaData) -> None:
    Table(
        "outbox",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(200), nullable=False),
        Column("value", LargeBinary, nullable=False),
        # Every row is an event not yet published: the relay deletes what the broker
        # has acknowledged and reads the rest in primary-key order (outbox.py).
        Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    )
    inbox = Table(
        "inbox",
        metadata,
        Column("event_id", String(200), primary_key=True),
        Column("topic", String(200), nullable=False),
        Column("processed_at", UTCDateTime(), nullable=False, default=utcnow),
    )
    # For the hourly prune of rows past their retention (`procure_runtime.retention`).
    # On PostgreSQL a BRIN index: rows come in `processed_at` order, so block ranges
    # find the old ones, and every event's insert costs next to nothing more (a b-tree
    # would take an entry per event on the hot path).
    Index(INBOX_AGE_INDEX, inbox.c.processed_at, postgresql_using="brin")
    Table(
        "parked",
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("event_id", String(200), nullable=False, unique=True),
        Column("topic", String(200), nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        # The record's key as it came (any bytes, any length): a dead letter is byte for byte.
        Column("key", LargeBinary, nullable=True),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSON, nullable=False, default=dict),
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False, default=1),
        Column("parked_at", UTCDateTime(), nullable=False, default=utcnow),
    )


def upsert_insert(table: Table, dialect: str) -> Any:
    """`INSERT` of the engine's dialect, the one that takes `ON CONFLICT` clauses
    (`on_conflict_do_nothing`, `on_conflict_do_update` with `.excluded`)."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def insert_ignore(table: Table, dialect: str) -> Insert:
    """`INSERT ... ON CONFLICT DO NOTHING` for the engine's dialect (rowcount 0 = existed)."""
    return upsert_insert(table, dialect).on_conflict_do_nothing()


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def rows_affected(result: Any) -> int:
    """How many rows an UPDATE or DELETE executed by `session.execute` changed (its
    result is a `CursorResult`, typed as the plain `Result` every statement returns)."""
    return int(result.rowcount)


def among(column: ColumnElement[Any], values: Iterable[Any], dialect: str) -> ColumnElement[bool]:
    """`column IN values` for the engine's dialect. On PostgreSQL, `column = ANY($1)` with
    the values as one array parameter: the same SQL whatever their number, so one
    prepared statement serves every batch, and nothing is rendered per value (quotes'
    bulk events of 100 ids took 10-20% less CPU: bench/levers.md, lever 22)."""
    values = list(values)
    if dialect == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
    if len(values) > SQLITE_IN_MAX:
        # SQLite takes at most 32,766 parameters a statement ("too many SQL variables", an
        # OperationalError: a 503 retried for ever). So many values go as one JSON array.
        each = func.json_each(bindparam(None, json.dumps(values), type_=Text)).table_valued("value")
        return column.in_(select(each.c.value))
    return column.in_(values)


#: Above this many values `among` gives SQLite one JSON parameter, not one per value.
SQLITE_IN_MAX = 1000


def lock_order(dialect: str, *columns: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """The ORDER BY of a read that locks rows: text keys in code point order, the order
    of Python's `sorted` (by which writers list the rows of an upsert or an update) and
    of SQLite. PostgreSQL would order them by the database's collation, where e.g. en-US
    puts 'ch-a' before 'ch-B': a writer locking in that order and one writing in
    Python's could each hold a row the other waits for, a deadlock on any database not
    made with the C collation."""
    if dialect != "postgresql":
        return list(columns)
    return [c.collate("C") if isinstance(c.type, String) else c for c in columns]


def among_param(column: ColumnElement[Any], key: str, dialect: str) -> ColumnElement[bool]:
    """`among`, its values left to the parameter `key` (a list), for a statement built
    once: building a statement and its cache key costs more CPU than a small one's run."""
    if dialect == "postgresql":
        return column == any_(bindparam(key, type_=postgresql.ARRAY(column.type)))
    return column.in_(bindparam(key, expanding=True))


# See `custom_plans`. Built once: a text's construction would cost more than its run.
_CUSTOM_PLANS = text("SET LOCAL plan_cache_mode = force_custom_plan")
_CACHED_PLANS = text("SET LOCAL plan_cache_mode TO DEFAULT")


@asynccontextmanager
async def custom_plans(session: AsyncSession) -> AsyncIterator[None]:
    """Statements run inside are planned for their parameters each time (PostgreSQL).

    After five runs of a prepared statement PostgreSQL may switch to a generic plan,
    made once for any parameters and kept on that connection until the table is next
    analyzed. For a lookup of a table that the stream itself fills from empty (a first
    deployment, or a backlog), that plan is made while the table is nearly empty: a
    sequential scan, which then tests every row against each batch's list of ids as the
    table grows (bench/levers.md, lever 63). Planning such a lookup each time costs
    tens of microseconds a batch; two round trips set the mode and put it back.
    A failed block leaves the mode to the transaction's rollback."""
    if dialect_of(session) != "postgresql":
        yield
        return
    await session.execute(_CUSTOM_PLANS)
    yield
    await session.execute(_CACHED_PLANS)


async def insert_many(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], *returning: Any
) -> list[Any]:
    """Insert-or-ignore `rows` in one go; with `returning` columns, the rows actually
    inserted (in no particular order). Every row has the same keys."""
    stmt = _insert_ignore(table, session.get_bind().dialect.name, returning)
    return await insert_rows(session, stmt, rows)


async def insert_all(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (a conflict is an error), in order: an autoincrement id follows the
    list. Every row has the same keys."""
    await insert_rows(session, plain_insert(table), rows)


async def insert_rows(session: AsyncSession, stmt: Insert, rows: list[dict[str, Any]]) -> list[Any]:
    """Run `stmt`, an INSERT of one table (with its `ON CONFLICT` and `RETURNING`
    clauses, if any) built once and kept, for `rows` in one go: the rows it returns.
    Every row has the same keys."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    plan = _unnest_plan(stmt, tuple(rows[0]), dialect) if dialect.driver == "asyncpg" else None
    if plan is not None:
        return await run_in_transaction(session, plan.sql, plan.arrays(rows))
    # SQLAlchemy's "insertmanyvalues": compiled once, a few multi-row statements
    result: Any = await session.execute(stmt, rows)
    return list(result.all()) if result.returns_rows else []


async def insert_together(
    session: AsyncSession, parts: list[tuple[Table, list[dict[str, Any]], bool]]
) -> None:
    """Several tables' inserts with nothing to return, each `(table, rows, ignore
    conflicts)`: on PostgreSQL one statement for all of them (each a data-modifying WITH
    query), so a batch's deferred rows and its outbox cost one round trip, not one a
    table (bench/levers.md, lever 36); elsewhere one statement per table, in order."""
    dialect = session.get_bind().dialect
    stmts = [
        (_insert_ignore(table, dialect.name, ()) if ignore else plain_insert(table), rows)
        for table, rows, ignore in parts
        if rows
    ]
    plans = []
    if len(stmts) > 1 and dialect.driver == "asyncpg":
        plans = [_unnest_plan(stmt, tuple(rows[0]), dialect) for stmt, rows in stmts]
    ready = [plan for plan in plans if plan is not None]
    if not plans or len(ready) < len(plans):
        for stmt, rows in stmts:
            await insert_rows(session, stmt, rows)
        return
    args = tuple(
        array for plan, (_, rows) in zip(ready, stmts, strict=True) for array in plan.arrays(rows)
    )
    await run_in_transaction(session, _together(tuple(ready)), args, returns=False)


async def run_in_transaction(
    session: AsyncSession,
    sql: str,
    args: Sequence[Any],
    *,
    returns: bool = True,
    many: bool = False,
) -> list[Any]:
    """Run `sql` (the driver's own text, `$n` parameters) with `args` in the session's
    transaction: the rows it returns, which read by attribute as SQLAlchemy's do. On
    asyncpg the driver runs it directly, as `run_alone` does outside a transaction:
    SQLAlchemy's execution of a ready-made text (`exec_driver_sql`) cost ~100 µs of CPU
    more than the statement's own (bench/levers.md, lever 46), and a consumer's batch
    runs two or three of them whatever its size.

    What SQLAlchemy would do stays: the transaction is begun by SQLAlchemy's own adapter
    if nothing ran in it yet (so its commit and rollback are the ones that end it),
    `before_cursor_execute` listeners see the statement, and a failure is raised as
    SQLAlchemy raises it, by SQLAlchemy's own handling (an `IntegrityError` stays one,
    for the HTTP layer's 409; a lost connection is invalidated and says so, for the
    consumer's retries, and the pool's older connections are recycled). A cancel
    in the middle of the statement invalidates the connection too: the driver may be
    left halfway through a round trip.

    With `many`, `args` is a list of parameter tuples and `sql` runs once for each, in
    order (the driver's executemany); nothing is returned."""
    connection = await session.connection()
    sync = connection.sync_connection
    assert sync is not None
    fairy = sync.connection  # the pool's proxy, checked out for this transaction
    adapted: Any = fairy.dbapi_connection  # SQLAlchemy's adapter around the driver's
    raw: Any = fairy.driver_connection
    begin = getattr(adapted, "_start_transaction", None)
    if connection.dialect.driver != "asyncpg" or begin is None:
        result = await connection.exec_driver_sql(sql, list(args) if many else tuple(args))
        return list(result.all()) if result.returns_rows and returns and not many else []
    records: list[Any] = []
    try:
        if not raw.is_in_transaction():
            await begin()  # raises the adapter's translated error itself
        began = raw.is_in_transaction()  # not on an autocommit connection
        if began:
            if sync.dispatch.before_cursor_execute:
                sync.dispatch.before_cursor_execute(sync, None, sql, args, None, many)
            if many:
                await raw.executemany(sql, args)
            else:
                records = await raw.fetch(sql, *args)
    except Exception as exc:
        await _raise_as_sqlalchemy(connection, adapted, sql, args, exc)
    except BaseException:  # a cancel: the driver may be halfway through a round trip
        await connection.invalidate()
        raise
    if not began:  # the statement would have committed on its own
        raise ValueError("run_in_transaction takes a session in a transaction")
    if not (records and returns):
        return []
    kind = _row_type(tuple(records[0].keys()))
    return [kind._make(record) for record in records]


async def _raise_as_sqlalchemy(
    connection: AsyncConnection, adapted: Any, sql: str, args: Any, exc: Exception
) -> NoReturn:
    """Raise `exc` as SQLAlchemy raises a failure of its own statements, by its own
    handling: the adapter's DBAPI error for it, wrapped in `sqlalchemy.exc`'s class of
    that name, and on a lost connection the connection invalidated and the pool's older
    connections with it (after a database restart every pooled connection is dead, and
    each would otherwise fail once more in whatever next checks it out)."""
    error: Exception = exc
    translate = getattr(adapted, "_handle_exception", None)
    if translate is not None and not isinstance(exc, connection.dialect.loaded_dbapi.Error):
        try:
            translate(exc)  # raises the adapter's DBAPI error for `exc`
        except Exception as dbapi_error:
            error = dbapi_error
    sync = connection.sync_connection
    assert sync is not None
    await greenlet_spawn(sync._handle_dbapi_exception, error, sql, tuple(args), None, None)
    raise AssertionError("SQLAlchemy's handling always raises")  # pragma: no cover


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Any:
    """A row type reading by attribute, for returned columns `names` (our tables'
    column names: identifiers)."""
    return collections.namedtuple("Row", names)  # type: ignore[misc]


@functools.lru_cache(maxsize=512)
def _together(plans: tuple["_UnnestPlan", ...]) -> str:
    queries, first = [], 1
    for n, plan in enumerate(plans):
        queries.append(f"w{n} AS ({plan.text(first)})")
        first += len(plan.columns)
    return "WITH " + ", ".join(queries) + " SELECT 1"


# On PostgreSQL a batch's rows go as one array per column, in one statement whose text is
# the same whatever the number of rows (`INSERT ... SELECT FROM unnest($1::t1[], ...)`),
# sent as it is (`run_in_transaction`: the session's connection and transaction, no
# compiling and no per-row parameter sets). SQLAlchemy's executemany spent more CPU on
# each row's parameters than on anything else in the hot paths, and PostgreSQL takes one
# array faster than hundreds of parameters (bench/levers.md, lever 32; the same arrays sent
# through SQLAlchemy's ARRAY types gained nothing: their processing cost what the
# per-row parameters did). Values still go through each column type's own bind
# processor, so they are stored exactly as SQLAlchemy would store them; the statement's
# ON CONFLICT and RETURNING clauses are SQLAlchemy's own compiled text. Returned rows
# are the driver's values (no column we return has a result processor on asyncpg).


class _UnnestPlan:
    def __init__(
        self,
        columns: list[tuple[str, Any, Any]],
        table: str,
        names: str,
        casts: list[str],
        tail: str,
    ) -> None:
        self.columns = columns  # (name, bind processor or None, default or None)
        self._head = (table, names, casts, tail)  # quoted, compiled: what text() renders
        self.sql = self.text(1)

    def text(self, first: int) -> str:
        """The statement, its parameters numbered from `first`."""
        table, names, casts, tail = self._head
        arrays = ", ".join(f"${n}::{cast}[]" for n, cast in enumerate(casts, first))
        # ORDER BY the position: rows (and their serial ids) go in the order given.
        return (
            f"INSERT INTO {table} ({names}) SELECT {names} FROM unnest({arrays}) "
            f"WITH ORDINALITY AS u({names}, position_) ORDER BY position_{tail}"
        )

    def arrays(self, rows: list[dict[str, Any]]) -> tuple[list[Any], ...]:
        out = []
        for name, process, default in self.columns:
            values = [default() for _ in rows] if default else [r[name] for r in rows]
            out.append([process(v) for v in values] if process else values)
        return tuple(out)


def _constant(value: Any) -> Any:
    return lambda: value


@functools.lru_cache(maxsize=512)
def _unnest_plan(stmt: Insert, keys: tuple[str, ...], dialect: Any) -> _UnnestPlan | None:
    """The statement and per-column work for rows with `keys`; None where SQLAlchemy's
    path must do it: a missing column's default that is not a plain value or function, or
    clauses after VALUES that take parameters of their own."""
    table: Any = stmt.table
    columns: list[tuple[str, Any, Any]] = []
    for column in table.columns:
        default = None
        if column.name not in keys:
            d = column.default
            if d is None:
                continue  # NULL or the server's default (an autoincrement id)
            if d.is_scalar:
                default = _constant(d.arg)
            elif d.is_callable:
                default = functools.partial(d.arg, None)  # SQLAlchemy's wrapper takes a context
            else:
                return None
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        columns.append((column.name, process, default))
    tail = _after_values(str(stmt.compile(dialect=dialect, column_keys=list(keys))))
    if tail is None or "$" in tail:
        return None
    quote = dialect.identifier_preparer.quote
    return _UnnestPlan(
        columns,
        quote(table.name),
        ", ".join(quote(name) for name, _, _ in columns),
        [_array_of(table.c[name].type).compile(dialect=dialect) for name, _, _ in columns],
        tail,
    )


def _array_of(column_type: Any) -> Any:
    """The type a column's array parameter is cast to: the column's, but a string's
    without its length. An explicit cast to `varchar(n)` cuts a longer value to n
    characters without a word, where the insert's own assignment to the column refuses
    it ("value too long"), as SQLAlchemy's path does."""
    if isinstance(column_type, String) and column_type.length is not None:
        return String()
    return column_type


def _after_values(sql: str) -> str | None:
    """What follows the VALUES (...) of a compiled single-row INSERT."""
    start = sql.find(" VALUES (")
    if start < 0:
        return None
    depth = 0
    for i in range(start + len(" VALUES "), len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[i], 0)
        if depth == 0:
            return sql[i + 1 :]
    return None


# The statements the hot paths run for every batch are built once and kept: building one
# and working out its cache key (to find its compiled form) cost as much CPU as the rest
# of a small batch's statement (bench/levers.md, lever 28).


@functools.lru_cache(maxsize=512)
def _insert_ignore(table: Table, dialect: str, returning: tuple[Any, ...]) -> Any:
    stmt: Any = insert_ignore(table, dialect)
    return stmt.returning(*returning) if returning else stmt


@functools.lru_cache(maxsize=512)
def plain_insert(table: Table) -> Insert:
    """`table.insert()`, built once."""
    return table.insert()


async def update_many(
    session: AsyncSession,
    table: Table,
    key: str | tuple[str, ...],
    rows: list[dict[str, Any]],
    *,
    add: bool = False,
) -> None:
    """`UPDATE table SET col = :col WHERE key = :key` (with `add`, `col = col + :col`) for
    each row, as one executemany: a bulk event changes hundreds of rows in one round trip's
    worth of work instead of one statement each. `key` may name several columns. Every
    row has the same keys."""
    if not rows:
        return
    keys = (key,) if isinstance(key, str) else key
    columns = tuple(c for c in rows[0] if c not in keys)
    stmt = _update_by_key(table, keys, columns, add)
    dialect = session.get_bind().dialect
    plan = _executemany_plan(stmt, keys, columns, dialect) if dialect.driver == "asyncpg" else None
    if plan is not None:
        sql, binds = plan
        args = [tuple(p(r[n]) if p else r[n] for n, p in binds) for r in rows]
        await run_in_transaction(session, sql, args, returns=False, many=True)
        return
    params = [{**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in columns}} for r in rows]
    await session.execute(stmt, params if len(params) > 1 else params[0])


@functools.lru_cache(maxsize=512)
def _executemany_plan(
    stmt: Any, keys: tuple[str, ...], columns: tuple[str, ...], dialect: Any
) -> tuple[str, tuple[tuple[str, Any], ...]] | None:
    """`update_many`'s statement as the driver runs it: SQLAlchemy's own compiled text,
    and for each `$n` the row's value it takes with its column type's bind processor.
    The same statement, row by row in the same order, without SQLAlchemy's parameter
    dict and processing a row and its execution context: 4-11% less CPU on the paths
    that update rows in bulk (bench/levers.md, lever 62). None where SQLAlchemy adds
    values of its own (a column's `onupdate`), which its path computes per row."""
    compiled = stmt.compile(
        dialect=dialect, column_keys=[f"k_{k}" for k in keys] + [f"v_{c}" for c in columns]
    )
    if compiled.update_prefetch or compiled.insert_prefetch or not compiled.positiontup:
        return None
    binds = []
    for name in compiled.positiontup:
        if name[:2] not in ("k_", "v_") or name[2:] not in keys + columns:
            return None
        processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        binds.append((name[2:], processor))
    return compiled.string, tuple(binds)


@functools.lru_cache(maxsize=512)
def _update_by_key(table: Table, keys: tuple[str, ...], columns: tuple[str, ...], add: bool) -> Any:
    # Bind names must differ from column names: SQLAlchemy reserves those for SET.
    values = {c: table.c[c] + bindparam(f"v_{c}") if add else bindparam(f"v_{c}") for c in columns}
    return update(table).where(*(table.c[k] == bindparam(f"k_{k}") for k in keys)).values(values)


async def run_alone(
    conn: AsyncConnection, statement: Executable, params: Mapping[str, Any] | None = None
) -> list[Any]:
    """Run `statement`, built once and kept, on `conn` outside any transaction of the
    caller's (an autocommit connection): the rows it returns, which support indexing
    and unpacking (not attribute access). On PostgreSQL the driver runs it directly:
    SQLAlchemy's execution (its adapter's greenlet switches, an execution context and
    a result object per statement) cost ~125 µs of CPU a statement against ~75 for the
    statement itself (bench/levers.md, lever 42). For the standalone statements that
    run per mail or per relay round, whose callers retry any failure as a whole.
    Listeners of `before_cursor_execute` still see it (with no cursor and no context),
    so statement counts and traces stay whole. A failure (the connection closed under
    it, a cancel in the middle of the statement) invalidates the connection."""
    if conn.dialect.driver != "asyncpg":
        result = await conn.execute(statement, params or {})
        return list(result.all()) if result.returns_rows else []
    sync = conn.sync_connection
    if sync is None or sync.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        # In a transaction SQLAlchemy begins lazily, the driver's statement could run
        # before the BEGIN, committed on its own whatever became of the transaction.
        raise ValueError("run_alone takes an autocommit connection")
    driver = _driver_statement(statement, conn.dialect)
    args = driver.arguments(params or {})
    if sync.dispatch.before_cursor_execute:
        sync.dispatch.before_cursor_execute(sync, None, driver.sql, args, None, False)
    fairy = await conn.get_raw_connection()
    raw: Any = fairy.driver_connection
    try:
        return list(await raw.fetch(driver.sql, *args))
    except BaseException as exc:
        # Closed under it, cancelled halfway through a round trip, or left in a state
        # the driver itself cannot name: none is worth reusing (a rare event, a reconnect).
        # A failure is raised as SQLAlchemy raises it, which also recycles the pool's
        # older connections if this one was lost (a database restart).
        try:
            if isinstance(exc, Exception):
                await _raise_as_sqlalchemy(conn, fairy.dbapi_connection, driver.sql, args, exc)
            raise
        finally:
            if not conn.invalidated:
                await conn.invalidate()


class _DriverStatement:
    """`statement` compiled once for asyncpg: its text, and for each positional
    parameter its name, its value if the statement carries one, and its type's bind
    processor (so values are sent as SQLAlchemy would send them)."""

    def __init__(self, statement: Any, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        returned = getattr(statement, "exported_columns", ())
        if any(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in returned):
            raise ValueError("a returned column needs SQLAlchemy's result processing")
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("expanding parameters are rendered per execution")
        self.sql = compiled.string
        self._params = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            default = None if bind.required else bind.effective_value
            self._params.append((name, bind.required, default, process))

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, required, default, process in self._params:
            value = params[name] if required or name in params else default
            out.append(process(value) if process else value)
        return out


@functools.lru_cache(maxsize=256)
def _driver_statement(statement: Executable, dialect: Any) -> _DriverStatement:
    return _DriverStatement(statement, dialect)


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine: AsyncEngine = make_engine(url, echo=echo)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # The same pool; a connection checked out through it runs each statement in a
        # transaction of its own (reset when it goes back to the pool).
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A connection whose every statement commits on its own, for work that is one
        statement (a claim, a mark): on PostgreSQL no BEGIN and COMMIT round trips around
        it. SQLite has no round trips to save, so there it is one transaction as usual
        (taken with BEGIN IMMEDIATE, which keeps its writers from deadlocking)."""
        if self.dialect == "postgresql":
            async with self._autocommit.connect() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            if self.dialect == "sqlite":
                # Outside a transaction: every SQLite transaction here takes the write
                # lock (BEGIN IMMEDIATE), so a probe waited behind any long write and the
                # readiness check reported the database unreachable. A read needs no lock
                # (WAL).
                raw: Any = (await conn.get_raw_connection()).driver_connection
                async with raw.execute("SELECT 1") as cursor:
                    await cursor.fetchone()
                return
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def json_text(value: Any) -> str:
    """How a JSON column's value is written: pydantic-core's encoder, about four times
    faster than `json.dumps` on our documents, and it takes a contract model as it is, so
    a handler stores `po.vendor` without first dumping it to a dict. Compact and UTF-8."""
    return pydantic_core.to_json(value).decode()


# How a JSON column is read back: plain dicts and lists, as `json.loads` gives, about
# three times faster.
JSON_CODEC: dict[str, Any] = {
    "json_serializer": json_text,
    "json_deserializer": pydantic_core.from_json,
}


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30}, **JSON_CODEC)
        _sqlite_immediate_transactions(engine)
        return engine
    # No pre-ping round trip per checkout: a connection broken by a database restart
    # fails its statement, which the consumer retries and HTTP answers with a 503.
    # Each distinct SQL text is prepared and cached per connection (asyncpg, LRU of 100).
    # Many-row inserts are sent in pages of a fixed size, so a batch of any size makes at
    # most `PAGE` statement texts per table, all small; and the most recently used
    # connection is reused (LIFO), so the hot statements stay cached on a few connections
    # instead of every connection of the pool caching its own copies.
    return create_async_engine(
        url,
        echo=echo,
        pool_recycle=300,
        pool_size=10,
        max_overflow=10,
        pool_use_lifo=True,
        insertmanyvalues_page_size=PAGE,
        **JSON_CODEC,
    )


PAGE = 25


def _sqlite_immediate_transactions(engine: AsyncEngine) -> None:
    # pysqlite's deferred BEGIN lets two writers deadlock on lock upgrade ("database is
    # locked" at once, busy timeout ignored). Taking the write lock at BEGIN serializes
    # writers and makes SAVEPOINTs work, at the price of serializing readers in a
    # transaction too: fine for the embedded default; PostgreSQL is the scale-out choice.
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
