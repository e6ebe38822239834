from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog, ChatMember, Identity, User


async def members_with_identities(
    session: AsyncSession, chat_pk: int
) -> list[tuple[ChatMember, User, Identity | None]]:
    result = await session.execute(
        select(ChatMember, User, Identity)
        .join(User, User.id == ChatMember.user_id)
        .outerjoin(Identity, Identity.user_id == ChatMember.user_id)
        .where(ChatMember.chat_id == chat_pk)
        .order_by(ChatMember.first_seen_at, ChatMember.user_id)
    )
    return [tuple(row) for row in result.all()]


async def last_action_at(session: AsyncSession, chat_pk: int, action: str):
    result = await session.execute(
        select(func.max(AuditLog.created_at)).where(AuditLog.chat_id == chat_pk, AuditLog.action == action)
    )
    value = result.scalar_one_or_none()
    # func.max bypasses the column type, so SQLite hands back a naive (UTC) datetime or a string.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


async def is_member(session: AsyncSession, chat_pk: int, user_id: int) -> bool:
    result = await session.execute(
        select(ChatMember.user_id).where(
            ChatMember.chat_id == chat_pk, ChatMember.user_id == user_id, ChatMember.status == "member"
        )
    )
    return result.first() is not None


async def groups_of(session: AsyncSession, user_id: int) -> list[int]:
    result = await session.execute(
        select(ChatMember.chat_id).where(ChatMember.user_id == user_id, ChatMember.status == "member")
    )
    return list(result.scalars())
