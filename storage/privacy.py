from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    AuditLog,
    Chat,
    ChatMember,
    ChatRole,
    Identity,
    IdentityDraft,
    MeetingAnswer,
    MeetingSignIn,
    PendingInput,
    UnitRole,
    User,
)


async def rows_about(session: AsyncSession, user_id: int) -> dict[str, list]:
    async def all_of(statement):
        return list((await session.execute(statement)).all())

    return {
        "memberships": await all_of(
            select(ChatMember, Chat.title)
            .join(Chat, Chat.id == ChatMember.chat_id)
            .where(ChatMember.user_id == user_id)
        ),
        "chat_roles": await all_of(
            select(ChatRole, Chat.title).join(Chat, Chat.id == ChatRole.chat_id).where(ChatRole.user_id == user_id)
        ),
        "unit_roles": await all_of(select(UnitRole).where(UnitRole.user_id == user_id)),
        "identity": await all_of(select(Identity).where(Identity.user_id == user_id)),
        "draft": await all_of(select(IdentityDraft).where(IdentityDraft.user_id == user_id)),
        "actions": await all_of(select(AuditLog).where(AuditLog.actor_id == user_id).order_by(AuditLog.id)),
    }


async def erase_identity_data(session: AsyncSession, user_id: int) -> None:
    for model in (Identity, IdentityDraft, PendingInput, UnitRole):
        await session.execute(delete(model).where(model.user_id == user_id))
    await session.execute(delete(ChatRole).where(ChatRole.user_id == user_id, ChatRole.source == "granted"))
    # Attendance stays in the branch's ledger; the reasons a member gave for a leave are theirs.
    await session.execute(update(MeetingAnswer).where(MeetingAnswer.user_id == user_id).values(reason=None))
    await session.execute(update(MeetingSignIn).where(MeetingSignIn.user_id == user_id).values(note=None))
    await session.execute(
        update(User).where(User.id == user_id).values(first_name="", last_name=None, username=None, language_code=None)
    )
