from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatMember, ChatRole, User
from storage.upsert import insert_for


async def get_user(session: AsyncSession, user_id: int) -> User | None:
    return await session.get(User, user_id)


async def get_users(session: AsyncSession, user_ids: list[int]) -> list[User]:
    if not user_ids:
        return []
    result = await session.execute(select(User).where(User.id.in_(user_ids)).order_by(User.id))
    return list(result.scalars())


async def set_user_flags(session: AsyncSession, user_id: int, **flags: bool) -> None:
    await session.execute(update(User).where(User.id == user_id).values(**flags))


async def observe_member(
    session: AsyncSession, chat_pk: int, user_id: int, now: datetime, status: str = "member"
) -> None:
    insert = insert_for(session)
    statement = insert(ChatMember).values(
        chat_id=chat_pk, user_id=user_id, status=status, first_seen_at=now, last_seen_at=now
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ChatMember.chat_id, ChatMember.user_id],
            set_={"status": status, "last_seen_at": now},
        )
    )


async def count_members(session: AsyncSession, chat_pk: int) -> int:
    result = await session.execute(
        select(func.count()).select_from(ChatMember).where(ChatMember.chat_id == chat_pk, ChatMember.status == "member")
    )
    return int(result.scalar_one())


async def roles_of(session: AsyncSession, chat_pk: int, user_id: int) -> list[str]:
    result = await session.execute(
        select(ChatRole.role).where(ChatRole.chat_id == chat_pk, ChatRole.user_id == user_id)
    )
    return list(result.scalars())


async def replace_admin_roles(session: AsyncSession, chat_pk: int, roles: dict[int, str], now: datetime) -> None:
    """Make the Telegram-admin-derived roles of a chat exactly ``roles`` (user id → role)."""
    await session.execute(delete(ChatRole).where(ChatRole.chat_id == chat_pk, ChatRole.source == "telegram_admin"))
    await session.execute(update(ChatMember).where(ChatMember.chat_id == chat_pk).values(is_admin=False))
    for user_id, role in roles.items():
        session.add(ChatRole(chat_id=chat_pk, user_id=user_id, source="telegram_admin", role=role, granted_at=now))
        await observe_member(session, chat_pk, user_id, now)
        await session.execute(
            update(ChatMember).where(ChatMember.chat_id == chat_pk, ChatMember.user_id == user_id).values(is_admin=True)
        )
    await session.flush()


# --- roles granted by people (as opposed to Telegram's admin list) ---------------------------------


async def find_user_by_username(session: AsyncSession, username: str) -> User | None:
    """The user who last showed this @username (Telegram usernames ignore case and can change hands)."""
    name = username.lstrip("@")
    if not name:
        return None
    exact = select(User).where(User.username == name).order_by(User.updated_at.desc()).limit(1)
    user = (await session.execute(exact)).scalar_one_or_none()
    if user is None:
        folded = select(User).where(func.lower(User.username) == name.lower()).order_by(User.updated_at.desc())
        user = (await session.execute(folded.limit(1))).scalar_one_or_none()
    return user


async def chat_roles_by_source(session: AsyncSession, chat_pk: int, user_id: int) -> dict[str, str]:
    """source (telegram_admin | granted) → role, for one person in one chat."""
    result = await session.execute(
        select(ChatRole.source, ChatRole.role).where(ChatRole.chat_id == chat_pk, ChatRole.user_id == user_id)
    )
    return {source: role for source, role in result.all()}


async def chat_role_holders(session: AsyncSession, chat_pk: int) -> set[int]:
    result = await session.execute(
        select(ChatRole.user_id).where(ChatRole.chat_id == chat_pk, ChatRole.role.in_(("committee", "secretary")))
    )
    return set(result.scalars())


async def set_granted_chat_role(
    session: AsyncSession, chat_pk: int, user_id: int, role: str, granted_by: int | None, now: datetime
) -> None:
    insert = insert_for(session)
    values = {"role": role, "granted_by": granted_by, "granted_at": now}
    statement = insert(ChatRole).values(chat_id=chat_pk, user_id=user_id, source="granted", **values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[ChatRole.chat_id, ChatRole.user_id, ChatRole.source], set_=values
        )
    )


async def delete_granted_chat_role(session: AsyncSession, chat_pk: int, user_id: int) -> bool:
    result = await session.execute(
        delete(ChatRole).where(ChatRole.chat_id == chat_pk, ChatRole.user_id == user_id, ChatRole.source == "granted")
    )
    return (result.rowcount or 0) > 0


async def delete_chat_roles(session: AsyncSession, chat_pk: int, user_id: int) -> int:
    result = await session.execute(delete(ChatRole).where(ChatRole.chat_id == chat_pk, ChatRole.user_id == user_id))
    return result.rowcount or 0


async def upsert_users(session: AsyncSession, rows: list[dict], now: datetime) -> None:
    """Many users at once; ``rows`` hold id, first_name, last_name, username, language_code.

    One statement with many parameter sets (not one VALUES list per batch size), so that it is
    compiled once."""
    if not rows:
        return
    insert = insert_for(session)
    statement = insert(User.__table__)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[User.id],
        set_={
            "first_name": excluded.first_name,
            "last_name": excluded.last_name,
            "username": excluded.username,
            "language_code": excluded.language_code,
            "updated_at": excluded.updated_at,
        },
    )
    defaults = {"started_bot": False, "blocked_bot": False, "created_at": now, "updated_at": now}
    await session.execute(statement, [{**defaults, **row} for row in rows])


async def observe_members(session: AsyncSession, sightings: list[tuple[int, int, datetime]]) -> None:
    """Many (chat pk, user id, when) sightings at once. A sighting older than what the row already
    says (e.g. the member left after this message was sent) changes nothing."""
    if not sightings:
        return
    insert = insert_for(session)
    statement = insert(ChatMember.__table__)
    statement = statement.on_conflict_do_update(
        index_elements=[ChatMember.chat_id, ChatMember.user_id],
        set_={"status": "member", "last_seen_at": statement.excluded.last_seen_at},
        where=ChatMember.__table__.c.last_seen_at <= statement.excluded.last_seen_at,
    )
    rows = [
        {
            "chat_id": chat_pk,
            "user_id": user_id,
            "status": "member",
            "is_admin": False,
            "first_seen_at": at,
            "last_seen_at": at,
        }
        for chat_pk, user_id, at in sightings
    ]
    await session.execute(statement, rows)


async def mark_many_started(session: AsyncSession, user_ids: list[int]) -> None:
    if user_ids:
        await session.execute(update(User).where(User.id.in_(user_ids)).values(started_bot=True, blocked_bot=False))


async def chat_roles_in(session: AsyncSession, chat_pk: int) -> list[tuple[int, str]]:
    """(user id, role) for every role held in the chat itself."""
    result = await session.execute(select(ChatRole.user_id, ChatRole.role).where(ChatRole.chat_id == chat_pk))
    return [(user_id, role) for user_id, role in result.all()]
