"""Queries behind the monthly report that the other slices' repositories do not already answer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Lesson, LessonPush, Meeting, Notice, NoticePost, QuizAnswer


async def held_by_kind(session: AsyncSession, chat_pk: int, start: datetime, end: datetime) -> dict[str, int]:
    """Meetings held (closed) per type that started in [start, end)."""
    result = await session.execute(
        select(Meeting.kind, func.count())
        .where(
            Meeting.chat_id == chat_pk, Meeting.status == "closed", Meeting.starts_at >= start, Meeting.starts_at < end
        )
        .group_by(Meeting.kind)
    )
    return {kind: int(count) for kind, count in result.all()}


async def notice_texts(session: AsyncSession, post_ids: list[int]) -> dict[int, str]:
    if not post_ids:
        return {}
    result = await session.execute(
        select(NoticePost.id, Notice.text)
        .join(Notice, Notice.id == NoticePost.notice_id)
        .where(NoticePost.id.in_(post_ids))
    )
    return {post_id: text for post_id, text in result.all()}


async def lesson_titles(session: AsyncSession, push_ids: list[int]) -> dict[int, str]:
    if not push_ids:
        return {}
    result = await session.execute(
        select(LessonPush.id, Lesson.title)
        .join(Lesson, Lesson.id == LessonPush.lesson_id)
        .where(LessonPush.id.in_(push_ids))
    )
    return {push_id: title for push_id, title in result.all()}


async def quiz_answers(session: AsyncSession, push_ids: list[int]) -> list[tuple[int, int, bool]]:
    """(push id, user id, correct) of every quiz answer on these pushes."""
    if not push_ids:
        return []
    result = await session.execute(
        select(QuizAnswer.push_id, QuizAnswer.user_id, QuizAnswer.correct).where(QuizAnswer.push_id.in_(push_ids))
    )
    return [(push_id, user_id, bool(correct)) for push_id, user_id, correct in result.all()]
