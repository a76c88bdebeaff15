"""What a mail costs the notifier's sender: composing a notification's mail and its SMTP
conversation, measured against aiosmtplib's `send_message` of the same message, side by
side on one SMTP sink in one run.

    uv run python -m bench.mail [--n 3000] [--rounds 3] [--out DIR]

At 100 charges/s the notifier mails ~215 a second and is the busiest process of the
stack (bench/levers.md, lever 24). The rows are rendered by the notifier's own templates
(one charge on a sales order, like the e2e flow's). CPU is the sending thread's alone:
the sink runs in a thread of its own. The figures to compare are the two paths' in one
run; the rounds alternate them."""

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiosmtplib

from bench import env
from procure_devstack.smtp import SmtpSink
from procure_notifier.domain import Item, Mail, Notice, NotificationType
from procure_notifier.notifications import render
from procure_notifier.sender import Sender, SmtpSettings, message_of
from procure_runtime.db import utcnow


def rows(n: int) -> list[SimpleNamespace]:
    """`n` notification rows as the notifier stores them: a charge forwarded to purchasing,
    each to one of a few buyers."""
    made = []
    for i in range(n):
        item = Item(
            product=f"Laser printer LP-{i % 50} (LP{i % 50:04d})",
            quantity=1 + i % 3,
            charge_id=f"ch-{i:06d}",
            parent=f"Ticket T-{i} (Replace the printer on floor {i % 9})",
            sales_order_id=f"so-{i:06d}",
        )
        notice = Notice(NotificationType.FORWARDED_TO_PURCHASING, "Forwarded to purchasing")
        mail = Mail(f"buyer{i % 7}@example.com", f"Buyer {i % 7}", [item])
        subject, text, html = render(notice, mail)
        made.append(
            SimpleNamespace(
                event_id=f"bench-mail-{i}",
                type=notice.type.value,
                recipient=mail.recipient,
                subject=subject,
                body_text=text,
                body_html=html,
                created_at=utcnow(),
            )
        )
    return made


async def _reference(smtp: SmtpSettings, mails: list[Any]) -> None:
    """aiosmtplib's way: the message handed to `send_message`, over one connection."""
    conn = aiosmtplib.SMTP(hostname=smtp.host, port=smtp.port)
    await conn.connect()
    try:
        for row in mails:
            await conn.send_message(message_of(row, smtp), sender=smtp.sender)
    finally:
        await conn.quit()


async def _notifier(sender: Sender, mails: list[Any]) -> None:
    """The notifier's sender, as it mails claimed rows (a kept connection)."""
    try:
        for row in mails:
            await sender.deliver(row)
    finally:
        await sender.stop()


async def measure(n: int, rounds: int) -> dict[str, Any]:
    sink = SmtpSink()
    sink.start()
    try:
        smtp = SmtpSettings(host=sink.host, port=sink.port)  # type: ignore[call-arg]
        mails = rows(n)
        paths: dict[str, Callable[[], Awaitable[None]]] = {
            "send_message": lambda: _reference(smtp, mails),
            # deliver() uses no database: the claims and marks are not what is measured
            "notifier": lambda: _notifier(Sender(None, smtp), mails),  # type: ignore[arg-type]
        }
        cpu: dict[str, list[float]] = {path: [] for path in paths}
        for _ in range(rounds):
            for path, mail_them in paths.items():
                sink.clear()
                used = time.thread_time()
                await mail_them()
                cpu[path].append((time.thread_time() - used) * 1e6 / n)
                sink.wait_for(n, timeout=30)  # every mail arrived (TimeoutError if not)
    finally:
        sink.stop()
    return {
        path: {"rounds": [round(v, 1) for v in values], "cpu_us_median": statistics.median(values)}
        for path, values in cpu.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mail")
    parser.add_argument("--n", type=int, default=3000, help="mails per path and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    figures = env.run(measure(args.n, args.rounds))
    print(f"{args.n} mails per path and round, {args.rounds} rounds; sender CPU per mail:")
    for path, row in figures.items():
        rounds = ", ".join(f"{v:.0f}" for v in row["rounds"])
        print(f"{path:<14} {row['cpu_us_median']:>6.0f} µs (rounds: {rounds})")
    if args.out:
        meta = {"n": args.n, "rounds": args.rounds, "event_loop": env.event_loop()}
        env.save_figures(args.out, "mail", meta, {"sender": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
