"""The sender claims due rows a few at a time in one statement, marks each sent on its
own, and hands back what it will not mail in time (or at all, when stopping). Senders
side by side, one per SMTP connection, never mail a row twice. A recipient refused for
now (4xx) is retried; one refused for good (5xx) is `failed`."""

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import event, select, update

from procure_devstack.smtp import SmtpSink
from procure_devstack.testing import eventually
from procure_notifier.app import build
from procure_notifier.models import metadata as notifier_metadata
from procure_notifier.models import notifications
from procure_notifier.sender import CLAIM_BATCH, Sender, SmtpSettings, pooled, wake_one
from procure_runtime.db import Database, utcnow


@pytest.fixture
async def db(database_url):
    url = database_url("notifier")
    database = Database(url)
    async with database.engine.begin() as conn:
        await conn.run_sync(notifier_metadata.create_all)
    yield database
    await database.dispose()


async def _due(db: Database, n: int, start: int = 0) -> None:
    now = utcnow()
    async with db.session() as session:
        await session.execute(
            notifications.insert(),
            [
                {
                    "event_id": f"e{i}",
                    "type": "delivered",
                    "recipient": f"r{i}@example.com",
                    "subject": f"mail {i}",
                    "body_text": "t",
                    "body_html": "<p>h</p>",
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for i in range(start, start + n)
            ],
        )


async def _rows(db: Database) -> list[Any]:
    async with db.session() as session:
        return list((await session.execute(select(notifications))).all())


def _statements(db: Database) -> Counter[str]:
    counts: Counter[str] = Counter()

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        words = statement.split()
        counts[" ".join(words[:2]) + (" RETURNING" if "RETURNING" in statement else "")] += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", on_execute)
    return counts


async def test_rows_are_claimed_in_batches_and_each_is_marked_after_its_mail(
    db, db_backend, sink, quick_smtp
) -> None:
    n = 2 * CLAIM_BATCH + 5
    await _due(db, n)
    sender = Sender(db, quick_smtp(sink.port))
    counts = _statements(db)
    checkouts: list[object] = []
    event.listen(db.engine.sync_engine.pool, "checkout", lambda *a: checkouts.append(a))
    try:
        while await sender.send_due():
            pass
    finally:
        await sender._close()
    assert len(sink.wait_for(n)) == n
    assert counts["UPDATE notifications RETURNING"] == 3 + 1  # the last one finds none
    assert counts["UPDATE notifications"] == n  # one mark per mail, right after it
    # On PostgreSQL a round's claim and marks share one connection; on SQLite each
    # statement is a transaction of its own (none held through a conversation).
    assert len(checkouts) == (3 + 1 if db_backend == "postgresql" else 3 + 1 + n)
    rows = await _rows(db)
    assert {r.status for r in rows} == {"sent"}
    assert {r.attempts for r in rows} == {1}


async def test_a_batch_hands_back_the_rows_it_cannot_start_within_the_lease(
    db, sink, quick_smtp
) -> None:
    """A conversation starts only while the claim's lease has a whole deadline left;
    the rest are due again at once, their attempt not counted."""
    await _due(db, CLAIM_BATCH)
    smtp = quick_smtp(sink.port, timeout_s=0.02)  # deadline 0.1 s, lease 0.2 s
    sender = Sender(db, smtp)
    mailed: list[str] = []

    async def slow_send(row: Any) -> None:
        mailed.append(row.event_id)
        await asyncio.sleep(0.04)

    sender._send = slow_send  # type: ignore[method-assign]
    assert await sender.send_due()
    assert 1 <= len(mailed) < CLAIM_BATCH
    now = utcnow()
    back = [r for r in await _rows(db) if r.event_id not in mailed]
    assert len(back) == CLAIM_BATCH - len(mailed)
    assert all(r.next_attempt_at <= now and r.attempts == 0 for r in back)


async def test_a_stop_hands_back_the_claimed_rows_not_yet_mailed(db, sink, quick_smtp) -> None:
    await _due(db, CLAIM_BATCH)
    sender = Sender(db, quick_smtp(sink.port))
    original = sender._send

    async def send_then_stop(row: Any) -> None:
        await original(row)
        sender._stopping.set()  # as `stop` does, while this mail was in hand

    sender._send = send_then_stop  # type: ignore[method-assign]
    try:
        assert await sender.send_due()
    finally:
        await sender._close()
    rows = await _rows(db)
    assert sorted(r.status for r in rows) == ["pending"] * (CLAIM_BATCH - 1) + ["sent"]
    now = utcnow()
    assert all(r.next_attempt_at <= now for r in rows if r.status == "pending")


async def test_a_quiet_poll_closes_the_kept_connection(db, sink, quick_smtp) -> None:
    await _due(db, 1)
    sender = Sender(db, quick_smtp(sink.port, poll_s=2.0))
    sender.start()
    try:
        await eventually(lambda: len(sink.messages) == 1, interval=0.05)
        assert sender._conn is not None, "kept for a while after the mail"
        await eventually(lambda: sender._conn is None, timeout=10)
    finally:
        await sender.stop()


async def test_senders_side_by_side_mail_each_row_once_over_their_own_connections(
    db, sink, quick_smtp
) -> None:
    n = 6 * CLAIM_BATCH
    await _due(db, n)
    senders = [Sender(db, quick_smtp(sink.port)) for _ in range(3)]
    for sender in senders:
        sender.start()
    try:
        await eventually(lambda: len(sink.messages) >= n, timeout=30)
        await asyncio.sleep(0.3)  # a row mailed twice would have arrived by now
    finally:
        await asyncio.gather(*(sender.stop() for sender in senders))
    assert sorted(m.subject for m in sink.messages) == sorted(f"mail {i}" for i in range(n))
    # Side by side, each on its own connection (one may find the others took every row).
    assert len({m.peer for m in sink.messages}) > 1
    assert {r.status for r in await _rows(db)} == {"sent"}


def test_the_notifier_runs_one_sender_per_smtp_connection(service_settings, quick_smtp) -> None:
    _app, runtime = build(service_settings("notifier"), quick_smtp(1025, connections=3))
    assert len(runtime.senders) == 3
    for sender in runtime.senders:
        sender.idle = True
    runtime.consumer.on_applied()  # what a commit of its consumer calls: one is woken
    assert [sender._wake.is_set() for sender in runtime.senders] == [True, False, False]
    runtime.senders[1].more_due()  # a full claim: the next idle one too
    assert [sender._wake.is_set() for sender in runtime.senders] == [True, True, False]
    assert SmtpSettings().connections == 4  # PROCURE_SMTP_CONNECTIONS' default


async def test_a_commit_wakes_one_idle_sender_and_a_full_claim_wakes_another(
    db, sink, quick_smtp
) -> None:
    """A few queued mails cost one sender's claim, not one claim per sender; a burst
    still spreads over the connections, each full claim waking another sender."""
    senders = pooled([Sender(db, quick_smtp(sink.port, poll_s=30.0)) for _ in range(3)])
    claims = [0, 0, 0]
    for n, sender in enumerate(senders):
        sender._claim = _counted(sender._claim, claims, n)  # type: ignore[method-assign]
        sender.start()
    try:
        await eventually(lambda: all(s.idle for s in senders), interval=0.05)
        before = list(claims)
        await _due(db, 3)
        wake_one(senders)
        await eventually(lambda: len(sink.messages) == 3, interval=0.05)
        await eventually(lambda: senders[0].idle, interval=0.05)
        assert [c - b for c, b in zip(claims, before, strict=True)] == [2, 0, 0]  # 3, then none

        n = 6 * CLAIM_BATCH
        await _due(db, n, start=3)
        wake_one(senders)
        await eventually(lambda: len(sink.messages) == 3 + n, timeout=30)
    finally:
        await asyncio.gather(*(sender.stop() for sender in senders))
    assert len({m.peer for m in sink.messages[3:]}) > 1  # the burst went side by side
    assert {r.status for r in await _rows(db)} == {"sent"}


def _counted(claim: Any, counts: list[int], n: int) -> Any:
    async def counting() -> list[Any]:
        counts[n] += 1
        return await claim()

    return counting


def _refuse_rcpt(sink: SmtpSink, *replies: str) -> None:
    """The sink answers the next RCPTs with `replies`, then accepts (its `fail_next`
    refuses DATA only)."""
    pending = list(replies)

    async def handle_RCPT(server: Any, session: Any, envelope: Any, address: str, options: Any):
        if pending:
            return pending.pop(0)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    assert sink._controller is not None
    sink._controller.handler.handle_RCPT = handle_RCPT  # read by each new SMTP session


async def _send_until_none_due(sender: Sender) -> None:
    try:
        while await sender.send_due():
            pass
    finally:
        await sender._close()


async def test_a_recipient_refused_for_now_is_retried_and_mailed_once(db, sink, quick_smtp) -> None:
    await _due(db, 1)
    _refuse_rcpt(sink, "451 4.7.1 Greylisted, try again later")
    sender = Sender(db, quick_smtp(sink.port))
    await _send_until_none_due(sender)
    [row] = await _rows(db)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "451" in row.last_error and sink.messages == []

    async def sent() -> bool:
        await _send_until_none_due(sender)  # due again after the backoff (0.2 s)
        return (await _rows(db))[0].status == "sent"

    await eventually(sent, timeout=10)
    await asyncio.sleep(0.5)  # a second mail would have arrived by now
    await _send_until_none_due(sender)
    [row] = await _rows(db)
    assert (row.status, row.attempts) == ("sent", 2)
    assert [m.rcpt_tos for m in sink.messages] == [["r0@example.com"]]


async def test_a_recipient_refused_for_good_fails_and_is_not_retried(db, sink, quick_smtp) -> None:
    await _due(db, 1)
    _refuse_rcpt(sink, "550 5.1.1 No such user")
    sender = Sender(db, quick_smtp(sink.port))
    await _send_until_none_due(sender)
    await asyncio.sleep(0.5)  # past the backoff: a retry would be due by now
    await _send_until_none_due(sender)
    [row] = await _rows(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert "550" in row.last_error and sink.messages == []


@pytest.mark.parametrize(
    ("reply", "status", "mailed"),
    [
        ("554 5.6.0 Message content rejected", "failed", []),
        ("452 4.3.1 Insufficient system storage", "sent", [["r0@example.com"]]),
    ],
    ids=["5xx", "4xx"],
)
async def test_a_message_refused_at_data_fails_only_for_good(
    db, sink, quick_smtp, reply: str, status: str, mailed: list[list[str]]
) -> None:
    """A 5xx to DATA refuses this message (its size, its content): the same mail would be
    refused again, so it fails instead of being retried for ever. A 4xx is retried."""
    await _due(db, 1)
    sink.fail_next(1, reply)
    sender = Sender(db, quick_smtp(sink.port))
    await _send_until_none_due(sender)
    await asyncio.sleep(0.5)  # past the backoff (0.2 s): a retry is due by now
    await _send_until_none_due(sender)
    [row] = await _rows(db)
    assert (row.status, row.attempts) == (status, 1 if status == "failed" else 2)
    assert reply[:3] in row.last_error
    assert [m.rcpt_tos for m in sink.messages] == mailed


async def test_a_row_stored_with_an_unmailable_address_fails_without_a_send(
    db, sink, quick_smtp
) -> None:
    """Rows recorded before addresses were checked (an older notifier's) may hold one no
    server takes; it fails at once instead of being retried for ever."""
    await _due(db, 2)
    async with db.session() as session:
        await session.execute(
            update(notifications)
            .where(notifications.c.event_id == "e0")
            .values(recipient="carl\r\nBcc: x@example.com")
        )
    sender = Sender(db, quick_smtp(sink.port))
    await _send_until_none_due(sender)
    await asyncio.sleep(0.5)  # past the backoff: a retry would be due by now
    await _send_until_none_due(sender)
    rows = {r.event_id: r for r in await _rows(db)}
    assert (rows["e0"].status, rows["e0"].attempts) == ("failed", 1)
    assert rows["e0"].last_error == "unmailable address: not a mailbox"
    assert rows["e1"].status == "sent"
    assert [m.rcpt_tos for m in sink.messages] == [["r1@example.com"]]
