"""The sender: mails the `pending` rows of the notification log through SMTP, marks them
`sent`, or keeps them with `last_error` and retries with exponential backoff (`failed`
only when the server refuses the recipient or the message for good, with a 5xx).

Due rows are claimed a few at a time, by one statement that moves their
`next_attempt_at` a lease ahead (on PostgreSQL under `FOR UPDATE SKIP LOCKED`), so
several instances never mail the same row at once and no database transaction stays
open during the SMTP conversations. A crash after the server
accepted a message but before the row is marked `sent` mails it once more when the
lease runs out: SMTP offers no way to make that step atomic.
"""

import asyncio
import contextlib
import functools
import hashlib
import io
import ssl
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formataddr, formatdate, parseaddr
from typing import Any, Literal

import aiosmtplib
from prometheus_client import Histogram
from pydantic import AliasChoices, Field, SecretStr
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Update

from procure_notifier.domain import NotificationStatus, unmailable
from procure_notifier.models import notifications
from procure_runtime.db import Database, run_alone, utcnow
from procure_runtime.errors import describe
from procure_runtime.logging import get_logger
from procure_runtime.settings import SpecSettings
from procure_runtime.tasks import cancel_and_wait

log = get_logger("procure.notifier.sender")
# From a notification queued (its row written with the event that caused it) to its mail
# accepted by the SMTP server: what stakeholders wait beyond the event itself.
MAIL_DELAY = Histogram(
    "procure_mail_delay_seconds",
    "From a notification queued to its mail accepted by the SMTP server",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
)
# Rows claimed per statement. Each is still marked sent on its own right after its mail,
# so the claim batch only saves the claim's round trips; it does not widen the window
# in which a crash resends a mail.
CLAIM_BATCH = 10


class SmtpSettings(SpecSettings):
    """Section 6's `PROCURE_SMTP_*` variables, plus the retry knobs."""

    host: str = Field("127.0.0.1", validation_alias=AliasChoices("PROCURE_SMTP_HOST"))
    port: int = Field(1025, validation_alias=AliasChoices("PROCURE_SMTP_PORT"))
    sender: str = Field(
        "procure-notifier@localhost", validation_alias=AliasChoices("PROCURE_SMTP_FROM")
    )
    tls: Literal["none", "starttls", "tls"] = Field(
        "none", validation_alias=AliasChoices("PROCURE_SMTP_TLS")
    )
    cafile: str | None = Field(None, validation_alias=AliasChoices("PROCURE_SMTP_CAFILE"))
    username: str | None = Field(None, validation_alias=AliasChoices("PROCURE_SMTP_USERNAME"))
    password: SecretStr | None = Field(None, validation_alias=AliasChoices("PROCURE_SMTP_PASSWORD"))
    timeout_s: float = Field(30.0, validation_alias=AliasChoices("PROCURE_SMTP_TIMEOUT_S"))
    retry_backoff_s: float = Field(
        2.0, validation_alias=AliasChoices("PROCURE_SMTP_RETRY_BACKOFF_S")
    )
    retry_max_s: float = Field(600.0, validation_alias=AliasChoices("PROCURE_SMTP_RETRY_MAX_S"))
    poll_s: float = Field(0.5, validation_alias=AliasChoices("PROCURE_SMTP_POLL_S"))
    # Senders mailing side by side, each over its own SMTP connection: one conversation
    # is several round trips a mail, so one sender alone caps the mails per second.
    connections: int = Field(4, ge=1, validation_alias=AliasChoices("PROCURE_SMTP_CONNECTIONS"))

    @property
    def envelope_sender(self) -> str:
        """The address of `PROCURE_SMTP_FROM`, which may also name a sender
        (`Procurement Team <procurement@acme.example>`)."""
        return parseaddr(self.sender)[1] or self.sender

    @property
    def from_header(self) -> str:
        """The From header: `PROCURE_SMTP_FROM`'s own name, or "Procurement"."""
        name, _ = parseaddr(self.sender)
        return formataddr((name or "Procurement", self.envelope_sender))

    @property
    def deadline_s(self) -> float:
        """A hard bound on one SMTP conversation (each step has `timeout_s`)."""
        return 5 * self.timeout_s

    @property
    def lease(self) -> timedelta:
        """How long a claimed row is left alone by other instances: twice the deadline."""
        return timedelta(seconds=2 * self.deadline_s)

    def backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.retry_backoff_s * 2 ** (attempts - 1), self.retry_max_s))

    def tls_context(self) -> ssl.SSLContext | None:
        """Certificates and host names are always verified (system CAs, or `cafile`)."""
        if self.tls == "none":
            return None
        return ssl.create_default_context(cafile=self.cafile)


# Bodies in quoted-printable: mostly ASCII text stays readable in a stored mail file.
# (`MIMEText` takes a `Charset` as well as a name; its stub says a name only.)
_UTF8_QP: Any = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def message_of(row: Any, smtp: SmtpSettings) -> Message:
    """A notification row's mail: its text and HTML bodies as alternatives.

    Built with the email package's compat32 classes, which keep headers as given: about
    a third of the CPU of `EmailMessage`, which parses and refolds every header (about
    1 ms a mail, the notifier's largest cost under load; bench/levers.md, lever 14). An address
    outside ASCII needs SMTPUTF8, which only `EmailMessage` handles."""
    if not (row.recipient.isascii() and smtp.from_header.isascii()):
        return _international_message_of(row, smtp)
    digest = _digest(row)
    # A boundary of our own spares the generator its search for one that no part holds
    # (a regular expression compiled per mail). This one cannot occur in a part: the
    # bodies are quoted-printable, where "=" is always an escape, so "==" never appears.
    msg = MIMEMultipart("alternative", boundary=f"=={digest[32:56]}==")
    for name, value in _headers(row, smtp, digest):
        # compat32 takes a `Header` for a value outside ASCII (its stub says str only)
        msg[name] = value if value.isascii() else Header(value, "utf-8")  # type: ignore[assignment]
    msg.attach(MIMEText(row.body_text, "plain", _UTF8_QP))
    msg.attach(MIMEText(row.body_html, "html", _UTF8_QP))
    return msg


def _international_message_of(row: Any, smtp: SmtpSettings) -> Message:
    msg = EmailMessage()
    for name, value in _headers(row, smtp, _digest(row)):
        msg[name] = value
    msg.set_content(row.body_text)
    msg.add_alternative(row.body_html, subtype="html")
    return msg


def _digest(row: Any) -> str:
    # The same on every attempt, so a receiving system can drop a rare resend.
    return hashlib.sha256(f"{row.event_id}|{row.recipient}|{row.type}".encode()).hexdigest()


def _headers(row: Any, smtp: SmtpSettings, digest: str) -> list[tuple[str, str]]:
    return [
        ("From", smtp.from_header),
        ("To", row.recipient),
        ("Subject", one_line(row.subject)),
        ("Date", formatdate(localtime=False)),
        ("Message-ID", f"<{digest[:32]}@procure-notifier>"),
        ("X-Procure-Notification", row.type),  # for mail filters (and tests)
        ("X-Procure-Event-Id", one_line(row.event_id)),
    ]


def one_line(value: str) -> str:
    """A header value from outside text (a subject names ids, and ids may hold any
    character): each line break or other control character a space. The email package
    refuses a value with a line break that would start another header, and writes one
    that would not into the header block, where the next line ends the headers."""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else " " for c in value)


class _QuickCompat32(Compat32):
    """compat32, writing a header that fits on its line as it is.

    compat32 passes every header through `email.header.Header` to fold it, about a third
    of the CPU of a mail; for a short ASCII value without line breaks that gives the
    value unchanged (services/notifier/tests/test_mail_format.py compares the two)."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        limit = self.max_line_length
        if (
            limit is not None
            and isinstance(value, str)
            and len(name) + 2 + len(value) <= limit
            and value.isascii()
            and value.isprintable()  # no line breaks, tabs or control characters
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_QUICK_COMPAT32 = _QuickCompat32()


def flatten(msg: Message) -> bytes:
    """A compat32 mail as aiosmtplib's `send_message` flattens it (`sendmail` then sends
    its lines with CRLF)."""
    with io.BytesIO() as out:
        BytesGenerator(out, policy=_QUICK_COMPAT32).flatten(msg)
        return out.getvalue()


def wake_one(senders: list["Sender"]) -> None:
    """Rows were queued: wake one idle sender, not all of them. Under a steady flow a
    commit queues a few mails that one claim takes; the others' claims would find
    nothing (a statement each, per commit). A sender whose claim comes back full wakes
    another (`more_due`), so a burst still spreads over every connection. With none
    idle, the first looks again once its batch is mailed: a wake-up is never lost."""
    for sender in senders:
        if sender.idle:
            sender.wake()
            return
    senders[0].wake()


def pooled(senders: list["Sender"]) -> list["Sender"]:
    """`senders` set to hand work on to each other (see `wake_one`)."""
    for sender in senders:
        sender.more_due = lambda: wake_one(senders)
    return senders


class Sender:
    def __init__(self, db: Database, smtp: SmtpSettings) -> None:
        self.db = db
        self.smtp = smtp
        self._task: asyncio.Task[None] | None = None
        # One SMTP connection is kept while mails flow (a connection, EHLO, STARTTLS and
        # login per mail cost more than the mail), and closed after a quiet `poll_s`.
        self._conn: aiosmtplib.SMTP | None = None
        self._conn_used = False
        self._db_conn: AsyncConnection | None = None  # the round's, on PostgreSQL
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        # Waiting for a wake-up or the next poll, with nothing in hand.
        self.idle = False
        # Called when a claim came back full: more rows may be due than this sender takes.
        self.more_due: Callable[[], None] = lambda: None

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="notification-sender")

    def wake(self) -> None:
        """Rows may have been queued (the consumer committed): look now, not at the next
        poll. Under a steady flow mails then go out as they are queued, a few at a time,
        instead of in a burst every `poll_s` (bench/levers.md, lever 20)."""
        self.idle = False
        self._wake.set()

    async def stop(self) -> None:
        """Finish the mail in hand and stop; cancelled only if that takes longer than
        `PROCURE_SMTP_TIMEOUT_S` (a cancel in the middle of a database call can leave its
        connection busy, so the loop is asked first)."""
        self._stopping.set()
        self._wake.set()
        if self._task:
            try:
                async with asyncio.timeout(self.smtp.timeout_s):
                    await asyncio.shield(self._task)
            except TimeoutError:
                await cancel_and_wait(self._task)
        await self._close()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                while not self._stopping.is_set() and await self.send_due():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again later
                log.warning("sender round failed; will retry", error=repr(exc))
                await self._close()
            # Nothing due: wait for a wake-up, or poll (retries fall due, other writers).
            # A whole quiet poll closes the connection.
            self.idle = True
            try:
                async with asyncio.timeout(self.smtp.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                await self._close()
            self.idle = False

    async def send_due(self) -> bool:
        """Claim up to `CLAIM_BATCH` due rows and mail them one at a time; False when
        nothing is due. Each row is marked as soon as its mail is accepted, so a crash
        resends at most the mail in hand. A conversation starts only while the claim's
        lease has a whole deadline left (so no row is mailed after another instance
        could have claimed it), and not once stopping: the rest are handed back."""
        async with self._round():
            rows = await self._claim()
            if not rows:
                return False
            if len(rows) == CLAIM_BATCH:
                self.more_due()
            claimed = time.monotonic()
            latest_start = self.smtp.lease.total_seconds() - self.smtp.deadline_s
            for i, row in enumerate(rows):
                if self._stopping.is_set() or time.monotonic() - claimed > latest_start:
                    await self._unclaim([r.id for r in rows[i:]])
                    break
                await self._send(row)
        return True

    @contextlib.asynccontextmanager
    async def _round(self) -> AsyncIterator[None]:
        """On PostgreSQL one autocommit connection serves a round: its claim and each
        mail's mark (a pool checkout per mail cost about as much CPU as the mark itself:
        bench/levers.md, lever 44). Not on SQLite, where a connection is a transaction
        and would hold the database's write lock through the SMTP conversations."""
        if self.db.dialect != "postgresql":
            yield
            return
        async with self.db.autocommit() as conn:
            self._db_conn = conn
            try:
                yield
            finally:
                self._db_conn = None

    @contextlib.asynccontextmanager
    async def _connection_for_statement(self) -> AsyncIterator[AsyncConnection]:
        """The round's connection while it is sound, else one of its own."""
        conn = self._db_conn
        if conn is not None and not conn.invalidated:
            yield conn
        else:
            async with self.db.autocommit() as conn:
                yield conn

    async def _claim(self) -> list[Any]:
        """One statement: the due rows' lease moves ahead and their attempts count up."""
        now = utcnow()
        params = {"now": now, "leased_until": now + self.smtp.lease}
        async with self._connection_for_statement() as conn:
            rows = (await conn.execute(_claiming(self.db.dialect), params)).all()
        return sorted(rows, key=lambda r: r.id)  # RETURNING has no defined order

    async def _unclaim(self, ids: list[int]) -> None:
        """Due again at once, as if never claimed."""
        async with self._connection_for_statement() as conn:
            await conn.execute(
                update(notifications)
                .where(
                    notifications.c.id.in_(ids),
                    notifications.c.status == NotificationStatus.PENDING.value,
                )
                .values(next_attempt_at=utcnow(), attempts=notifications.c.attempts - 1)
            )

    async def _send(self, row: Any) -> None:
        attempts = row.attempts  # counted by the claim
        if (reason := unmailable(row.recipient)) is not None:
            # Stored before addresses were checked as rows are recorded: no server would
            # take it, and some would never answer it with a 5xx to end the retries.
            await self._finish(
                row.id, NotificationStatus.FAILED, error=f"unmailable address: {reason}"
            )
            log.error("recipient unmailable; not retried", recipient=row.recipient, reason=reason)
            return
        try:
            async with asyncio.timeout(self.smtp.deadline_s):
                await self.deliver(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if _refused_for_good(exc):
                await self._finish(row.id, NotificationStatus.FAILED, error=describe(exc, 2000))
                refused = "message" if isinstance(exc, aiosmtplib.SMTPDataError) else "recipient"
                log.error(
                    f"{refused} refused; not retried", recipient=row.recipient, error=repr(exc)
                )
                return
            retry_at = utcnow() + self.smtp.backoff(attempts)
            await self._finish(
                row.id, NotificationStatus.PENDING, error=describe(exc, 2000), at=retry_at
            )
            log.warning(
                "send failed; will retry",
                recipient=row.recipient,
                attempts=attempts,
                retry_at=retry_at.isoformat(),
                error=repr(exc),
            )
        else:
            await self._finish(row.id, NotificationStatus.SENT)
            MAIL_DELAY.observe((utcnow() - row.created_at).total_seconds())
            log.info("notification sent", recipient=row.recipient, subject=row.subject)

    async def deliver(self, row: Any) -> None:
        """Mail `row` over the kept connection. If one that sent before fails (the
        server closed it, or restarted), try once more on a new one.

        A compat32 mail is flattened here, once, and sent to the recipient we know:
        `send_message` would copy it, flatten it again and parse the addresses back out
        of its headers (bench/mail.py measures the difference). An `EmailMessage` (an
        address outside ASCII) goes through `send_message`, which asks the server for
        SMTPUTF8."""
        msg = message_of(row, self.smtp)
        data = None if isinstance(msg, EmailMessage) else flatten(msg)
        while True:
            reused = self._conn is not None and self._conn_used
            try:
                smtp = await self._connection()
                if data is None:
                    await smtp.send_message(msg, sender=self.smtp.envelope_sender)
                else:
                    await smtp.sendmail(self.smtp.envelope_sender, [row.recipient], data)
                self._conn_used = True
                return
            except aiosmtplib.SMTPRecipientsRefused:
                raise  # the server answered: the connection is fine
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                await self._close()
                if not reused:
                    raise
            except BaseException:  # an answer, a timeout, the deadline: start afresh
                await self._close()
                raise

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        s = self.smtp
        conn = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            use_tls=s.tls == "tls",
            start_tls=s.tls == "starttls",
            tls_context=s.tls_context(),
            timeout=s.timeout_s,
        )
        await conn.connect()
        self._conn, self._conn_used = conn, False
        return conn

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if conn.is_connected:
                async with asyncio.timeout(self.smtp.timeout_s):
                    await conn.quit()
        conn.close()

    async def _finish(
        self, row_id: int, status: NotificationStatus, *, error: str | None = None, at: Any = None
    ) -> None:
        values: dict[str, Any] = {"status": status.value}
        if error is not None:  # kept after a later success: the log shows what happened
            values["last_error"] = error
        if status is NotificationStatus.SENT:
            values["sent_at"] = utcnow()
        if at is not None:
            values["next_attempt_at"] = at
        statement = _finishing(frozenset(values))
        params = {"row_id": row_id, **{f"new_{k}": v for k, v in values.items()}}
        delay = 0.2
        while True:  # the mail went out: record that before anything else, even if it waits
            try:
                async with self._connection_for_statement() as conn:
                    await run_alone(conn, statement, params)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cannot record the send yet; retrying", error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _refused_for_good(exc: Exception) -> bool:
    """The server refused the recipient, or this message at DATA (too large, its content
    refused), with a 5xx: final, as the same mail would meet the same answer. aiosmtplib
    raises `SMTPRecipientsRefused` for any reply to RCPT but 250/251 and `SMTPDataError`
    for any to DATA but 250/354, so a 4xx (greylisting, a busy or full server) is
    retried like any other failure. A 5xx to MAIL FROM is retried: it refuses the
    configured sender, so every mail would fail until the configuration is fixed."""
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return exc.code >= 500
    return (
        isinstance(exc, aiosmtplib.SMTPRecipientsRefused)
        and bool(exc.recipients)
        and all(r.code >= 500 for r in exc.recipients)
    )


@functools.cache
def _claiming(dialect: str) -> Update:
    """Up to `CLAIM_BATCH` rows due at `:now`: their lease moves to `:leased_until` and
    their attempts count up. On PostgreSQL under `FOR UPDATE SKIP LOCKED`, so senders
    side by side never claim one row twice. Built once, as `_finishing`."""
    due = (
        select(notifications.c.id)
        .where(
            notifications.c.status == NotificationStatus.PENDING.value,
            notifications.c.next_attempt_at <= bindparam("now"),
        )
        .order_by(notifications.c.next_attempt_at, notifications.c.id)
        .limit(CLAIM_BATCH)
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (
        update(notifications)
        .where(notifications.c.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=bindparam("leased_until"), attempts=notifications.c.attempts + 1)
        .returning(*notifications.c)
    )


@functools.cache
def _finishing(columns: frozenset[str]) -> Update:
    """The statement that records a mail's outcome in `columns`, built once per set of
    columns (a handful): built per mail, its construction and cache key cost more CPU
    than running it (bench/levers.md, lever 38). Run by the driver itself on PostgreSQL
    (`run_alone`, lever 42)."""
    return (
        update(notifications)
        .where(
            notifications.c.id == bindparam("row_id"),
            notifications.c.status == NotificationStatus.PENDING.value,
        )
        .values({c: bindparam(f"new_{c}") for c in sorted(columns)})
    )
