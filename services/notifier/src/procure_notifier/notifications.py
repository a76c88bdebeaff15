"""The notification log on the handler's side: which types are enabled, and one
`pending` row per (event, address, type), rendered from the templates. Rows are written
in the handler's transaction; the sender mails them later."""

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from procure_contracts import CloudEvent
from procure_notifier.domain import (
    Mail,
    Notice,
    NotificationStatus,
    NotificationType,
    subject,
    unmailable,
)
from procure_notifier.models import notification_settings, notifications
from procure_runtime import UnitOfWork
from procure_runtime.db import utcnow
from procure_runtime.logging import get_logger

log = get_logger("procure.notifier")
# The templates are package data: a running service never sees them change, so they are
# not checked on disk at every render (jinja2's `auto_reload` stats each file per mail).
templates = Environment(
    loader=PackageLoader("procure_notifier", "templates"),
    auto_reload=False,
    autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


async def enabled_types(session: AsyncSession) -> dict[str, bool]:
    """Every type, enabled unless a person disabled it."""
    rows = await session.execute(
        select(notification_settings.c.type, notification_settings.c.enabled)
    )
    stored = {row.type: row.enabled for row in rows}
    return {t.value: stored.get(t.value, True) for t in NotificationType}


async def is_enabled(session: AsyncSession, type_: NotificationType) -> bool:
    """Read once per transaction (a consumer's batch applies many triggers in one); only
    `PUT /notification-settings` changes them, in a transaction of its own."""
    cached: dict[str, bool] | None = session.info.get("notification_settings")
    if cached is None:
        cached = session.info["notification_settings"] = await enabled_types(session)
    value = cached[type_.value]
    if value is False:
        log.info("notification type disabled; nothing sent", notification_type=type_.value)
    return value is not False


def render(notice: Notice, mail: Mail) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of one mail."""
    title = subject(notice, mail)
    context: dict[str, Any] = {
        "type": notice.type.value,
        "subject": title,
        "name": mail.name,
        "details": notice.details,
        "items": mail.items,
    }
    text = templates.get_template("notification.txt.j2").render(context)
    html = templates.get_template("notification.html.j2").render(context)
    return title, text, html


async def record(uow: UnitOfWork, event: CloudEvent, notice: Notice, mails: list[Mail]) -> None:
    """Queue one email per address; a row that exists already (same event) stays as is.
    An address that cannot be mailed is skipped (and logged): the others still are."""
    mails = [mail for mail in mails if _mailable(event, notice, mail)]
    # Deferred: the sender reads them only once the transaction has committed.
    now = utcnow()
    for mail in mails:
        title, text, html = render(notice, mail)
        uow.insert_later(
            notifications,
            event_id=event.id,
            type=notice.type.value,
            recipient=mail.recipient,
            subject=title,
            body_text=text,
            body_html=html,
            status=NotificationStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    log.info(
        "notifications queued",
        notification_type=notice.type.value,
        recipients=[m.recipient for m in mails],
    )


def _mailable(event: CloudEvent, notice: Notice, mail: Mail) -> bool:
    if (why := unmailable(mail.recipient)) is None:
        return True
    log.warning(
        "recipient skipped: unmailable address",
        reason=why,
        recipient=mail.recipient[:100],  # an over-long one is shown in part
        name=mail.name,
        notification_type=notice.type.value,
        event_id=event.id,
    )
    return False
