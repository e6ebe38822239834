"""Queries behind the 先锋指数: what a group held, posted and pushed in a period, and who answered it."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import LessonPush, LessonStudy, Meeting, Notice, NoticeAck, NoticePost


async def held_meetings(session: AsyncSession, chat_pk: int, start: datetime, end: datetime) -> list[int]:
    """Meetings of the group that took place (closed: sign-in over) and started in [start, end)."""
    result = await session.execute(
        select(Meeting.id)
        .where(
            Meeting.chat_id == chat_pk,
            Meeting.status == "closed",
            Meeting.starts_at >= start,
            Meeting.starts_at < end,
        )
        .order_by(Meeting.starts_at, Meeting.id)
    )
    return list(result.scalars())


async def notice_posts(
    session: AsyncSession, chat_pk: int, start: datetime, end: datetime
) -> list[tuple[int, datetime]]:
    """(post id, when it went out) for the notices that reached the group in [start, end). Every notice
    post carries the "✅ 收到" button; one never delivered (no message) asked nobody for anything."""
    went_out = or_(
        and_(Notice.send_at.is_not(None), Notice.send_at >= start, Notice.send_at < end),
        and_(Notice.send_at.is_(None), Notice.published_at >= start, Notice.published_at < end),
    )
    result = await session.execute(
        select(NoticePost.id, Notice.send_at, Notice.published_at)
        .join(Notice, Notice.id == NoticePost.notice_id)
        .where(
            NoticePost.chat_id == chat_pk,
            NoticePost.message_id.is_not(None),
            Notice.status == "published",
            went_out,
        )
        .order_by(NoticePost.id)
    )
    return [(post_id, send_at or published_at) for post_id, send_at, published_at in result.all()]


async def acks_on(session: AsyncSession, post_ids: list[int]) -> set[tuple[int, int]]:
    """(post id, user id) of every confirmation of these posts."""
    if not post_ids:
        return set()
    result = await session.execute(select(NoticeAck.post_id, NoticeAck.user_id).where(NoticeAck.post_id.in_(post_ids)))
    return {(post_id, user_id) for post_id, user_id in result.all()}


async def lesson_pushes(session: AsyncSession, chat_pk: int, first_day: date, end_day: date) -> list[tuple[int, date]]:
    """(push id, the group's day) for the lessons that reached the group on a day in [first_day, end_day)."""
    result = await session.execute(
        select(LessonPush.id, LessonPush.pushed_on)
        .where(
            LessonPush.chat_id == chat_pk,
            LessonPush.message_id.is_not(None),
            LessonPush.pushed_on >= first_day,
            LessonPush.pushed_on < end_day,
        )
        .order_by(LessonPush.pushed_on)
    )
    return [(push_id, day) for push_id, day in result.all()]


async def studies_on(session: AsyncSession, push_ids: list[int]) -> set[tuple[int, int]]:
    """(push id, user id) of every "已学" on these pushes, whenever it was pressed."""
    if not push_ids:
        return set()
    result = await session.execute(
        select(LessonStudy.push_id, LessonStudy.user_id).where(LessonStudy.push_id.in_(push_ids))
    )
    return {(push_id, user_id) for push_id, user_id in result.all()}
