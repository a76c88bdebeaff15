"""The notifier's HTTP routes (thin): notification settings and the notification log."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, StrictBool
from sqlalchemy import select

from procure_notifier.domain import NotificationStatus, NotificationType, address_key
from procure_notifier.models import notification_settings, notifications
from procure_notifier.notifications import enabled_types
from procure_runtime.auth import Principal, authenticated, require
from procure_runtime.db import upsert_insert, utcnow
from procure_runtime.http import SeqPage

router = APIRouter()
Reader = Annotated[Principal, Depends(authenticated)]
Admin = Annotated[Principal, Depends(require("admin"))]


class SettingsIn(BaseModel):
    """The types named are set; the others keep their setting (all start enabled)."""

    model_config = ConfigDict(extra="forbid")
    enabled: dict[NotificationType, StrictBool]


@router.get("/settings")
async def get_settings(request: Request, _user: Reader) -> dict[str, Any]:
    async with request.app.state.runtime.db.session() as session:
        return {"enabled": await enabled_types(session)}


@router.put("/settings")
async def put_settings(body: SettingsIn, request: Request, user: Admin) -> dict[str, Any]:
    async with request.app.state.runtime.transaction() as uow:
        # In one order whatever the body's, so two admins' requests cannot deadlock.
        for type_, enabled in sorted(body.enabled.items()):
            stmt = upsert_insert(notification_settings, uow.dialect).values(
                type=type_.value, enabled=enabled, updated_by=user.id, updated_at=utcnow()
            )
            await uow.session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[notification_settings.c.type],
                    set_={
                        "enabled": stmt.excluded.enabled,
                        "updated_by": stmt.excluded.updated_by,
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
            )
        return {"enabled": await enabled_types(uow.session)}


def _view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "type": row.type,
        "recipient": row.recipient,
        "subject": row.subject,
        "event_id": row.event_id,
        "status": row.status,
        "attempts": row.attempts,
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
        "next_attempt_at": (
            row.next_attempt_at.isoformat() if row.status == NotificationStatus.PENDING else None
        ),
    }


@router.get("/notifications")
async def list_notifications(
    request: Request,
    _user: Reader,
    page: Annotated[SeqPage, Depends()],
    recipient: Annotated[str | None, Query(max_length=320)] = None,
    type: Annotated[NotificationType | None, Query()] = None,
    status: Annotated[NotificationStatus | None, Query()] = None,
    event_id: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """The log, oldest first; `recipient` is matched case-insensitively."""
    query = select(notifications).order_by(notifications.c.id).limit(page.limit + 1)
    if recipient:
        query = query.where(notifications.c.recipient == address_key(recipient))
    if type:
        query = query.where(notifications.c.type == type.value)
    if status:
        query = query.where(notifications.c.status == status.value)
    if event_id:
        query = query.where(notifications.c.event_id == event_id)
    if page.after is not None:
        query = query.where(notifications.c.id > page.after)
    async with request.app.state.runtime.db.session() as session:
        rows = (await session.execute(query)).all()
    return page.answer([_view(r) for r in rows], key=lambda item: item["id"])
