"""Queries on the lesson library."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Lesson


async def next_position(session: AsyncSession, chat_pk: int | None) -> int:
    owner = Lesson.chat_id.is_(None) if chat_pk is None else Lesson.chat_id == chat_pk
    result = await session.execute(select(func.max(Lesson.position)).where(owner))
    return (result.scalar_one_or_none() or 0) + 1


async def titles_of(session: AsyncSession, chat_pk: int) -> set[str]:
    result = await session.execute(select(Lesson.title).where(Lesson.chat_id == chat_pk, Lesson.status == "active"))
    return set(result.scalars())


async def count_pack(session: AsyncSession) -> int:
    result = await session.execute(select(func.count()).select_from(Lesson).where(Lesson.chat_id.is_(None)))
    return int(result.scalar_one())


async def library(session: AsyncSession, chat_pk: int) -> list[Lesson]:
    """The group's own active lessons in order, then the sample pack's."""
    result = await session.execute(
        select(Lesson)
        .where((Lesson.chat_id == chat_pk) | Lesson.chat_id.is_(None), Lesson.status == "active")
        .order_by(Lesson.chat_id.is_(None), Lesson.position, Lesson.id)
    )
    return list(result.scalars())
