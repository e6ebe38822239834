"""A member's own data: everything stored about them (/mydata), and erasure (/forgetme).

Erasure removes the 亮身份 declaration, any form in progress, granted roles, and the name, username
and language kept from Telegram. What stays is the bare Telegram id with the chats the member was
seen in, so that group counts (and, later, attendance and acknowledgement figures) remain true
without naming anyone. Roles that come from being a Telegram group admin follow Telegram and return
with the next admin sync.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import lessons as lesson_service
from bot.services import meetings as meeting_service
from bot.services import notices as notice_service
from storage import people as people_store
from storage import privacy as privacy_store
from storage.models import AuditLog

IDENTITY_FIELDS = (
    "real_name",
    "member_type",
    "unit_id",
    "duty_post",
    "pledge",
    "skills",
    "available_times",
    "contact",
    "contact_public",
    "floating",
    "floating_org",
    "status",
    "reject_reason",
    "show_card",
    "submitted_at",
    "reviewed_at",
)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def export_user_data(session: AsyncSession, user_id: int) -> dict[str, Any]:
    user = await people_store.get_user(session, user_id)
    rows = await privacy_store.rows_about(session, user_id)
    identity = rows["identity"][0][0] if rows["identity"] else None
    draft = rows["draft"][0][0] if rows["draft"] else None
    return {
        "user": None
        if user is None
        else {
            "id": user.id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "username": user.username,
            "language_code": user.language_code,
            "started_bot": user.started_bot,
            "first_seen": _plain(user.created_at),
        },
        "groups": [
            {
                "group": title,
                "status": member.status,
                "first_seen": _plain(member.first_seen_at),
                "last_seen": _plain(member.last_seen_at),
            }
            for member, title in rows["memberships"]
        ],
        "roles": [{"group": title, "role": role.role, "source": role.source} for role, title in rows["chat_roles"]]
        + [{"unit_id": role.unit_id, "role": role.role, "source": "granted"} for (role,) in rows["unit_roles"]],
        "identity": None if identity is None else {name: _plain(getattr(identity, name)) for name in IDENTITY_FIELDS},
        "form_in_progress": None if draft is None else {"step": draft.step, "answers": draft.data},
        "notices_confirmed": await notice_service.acknowledgements_of(session, user_id),
        "meetings": await meeting_service.of_user(session, user_id),
        "lessons": await lesson_service.of_user(session, user_id),
        "actions": [
            {"action": entry.action, "detail": entry.detail, "at": _plain(entry.created_at)}
            for (entry,) in rows["actions"]
        ],
    }


async def forget_user(session: AsyncSession, user_id: int, now: datetime) -> None:
    await privacy_store.erase_identity_data(session, user_id)
    session.add(AuditLog(actor_id=user_id, action="forgot_user", created_at=now))
    await session.flush()
