from __future__ import annotations

from sqlalchemy import and_, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Base, Chat, Schedule, utcnow
from storage.upsert import insert_for


async def get_by_telegram_id(session: AsyncSession, telegram_id: int) -> Chat | None:
    return (await session.execute(select(Chat).where(Chat.telegram_id == telegram_id))).scalar_one_or_none()


async def get_by_id(session: AsyncSession, chat_pk: int) -> Chat | None:
    return await session.get(Chat, chat_pk)


async def add(session: AsyncSession, telegram_id: int, chat_type: str, title: str | None) -> Chat:
    """Insert the chat, or find the one a concurrent update inserted a moment ago (PostgreSQL)."""
    now = utcnow()
    insert = insert_for(session)
    await session.execute(
        insert(Chat)
        .values(
            telegram_id=telegram_id,
            type=chat_type,
            title=title,
            is_active=True,
            bot_is_admin=False,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=[Chat.telegram_id])
    )
    return await get_by_telegram_id(session, telegram_id)


async def list_active_groups(session: AsyncSession) -> list[Chat]:
    result = await session.execute(
        select(Chat).where(Chat.is_active.is_(True), Chat.type.in_(("group", "supergroup"))).order_by(Chat.id)
    )
    return list(result.scalars())


async def fold_into(session: AsyncSession, keep: Chat, duplicate: Chat) -> None:
    """Move what points at ``duplicate`` onto ``keep`` where it does not clash, then drop ``duplicate``.

    Used when a migrated supergroup was seen under its new id before the migration message arrived.
    Rows that clash (the same member seen under both ids) keep the older chat's version.
    """
    # A group has one routine schedule per kind (the lesson push, the boards, the monthly checks); the
    # duplicate's copies, made when it was first seen, would run a second time beside the kept ones.
    kept_kinds = select(Schedule.kind).where(Schedule.chat_id == keep.id, Schedule.ref == Schedule.kind)
    await session.execute(
        delete(Schedule).where(
            Schedule.chat_id == duplicate.id, Schedule.ref == Schedule.kind, Schedule.kind.in_(kept_kinds)
        )
    )
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table.name != "chats" or table.name == "chats":
                continue
            column = fk.parent
            keys = list(table.primary_key.columns)
            rows = (await session.execute(select(*keys).where(column == duplicate.id))).all()
            # Row by row, so that one clash does not keep the other rows from moving. The new chat was
            # seen only for moments before the migration message, so these are a handful of rows.
            for row in rows:
                try:
                    async with session.begin_nested():
                        condition = and_(*(key == value for key, value in zip(keys, row, strict=True)))
                        await session.execute(update(table).where(condition).values({column.name: keep.id}))
                except IntegrityError:
                    pass  # the same row exists for the old chat; the duplicate's copy goes with it
    await session.execute(delete(Chat).where(Chat.id == duplicate.id))
    await session.flush()


async def active_group_ids(session: AsyncSession) -> list[int]:
    result = await session.execute(
        select(Chat.id).where(Chat.is_active.is_(True), Chat.type.in_(("group", "supergroup")))
    )
    return list(result.scalars())
