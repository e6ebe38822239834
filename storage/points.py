"""What points are earned from: the rows that record a member's learning, quiz answers, sign-ins and
confirmations in a set of groups. Points are never stored: each row counts once because it is one row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    ChatMember,
    LessonPush,
    LessonStudy,
    Meeting,
    MeetingSignIn,
    NoticeAck,
    NoticePost,
    QuizAnswer,
    User,
)

Event = tuple[int, str, datetime, int]  # (user id, what was earned, when, what it was earned on)


async def events(
    session: AsyncSession, chat_pks: list[int], start: datetime, end: datetime, user_id: int | None = None
) -> list[Event]:
    """Every earning event in the groups from ``start`` up to and including ``end``. What it was earned on
    is the lesson, the meeting or the notice, not the group's copy of it: a sample-pack lesson or a
    broadcast reaches each group of a unit, and is still one thing learned or confirmed."""
    sources = (
        (
            "study",
            LessonStudy.user_id,
            LessonStudy.studied_at,
            LessonPush,
            LessonStudy.push_id == LessonPush.id,
            LessonPush.lesson_id,
            (),
        ),
        (
            "quiz",
            QuizAnswer.user_id,
            QuizAnswer.answered_at,
            LessonPush,
            QuizAnswer.push_id == LessonPush.id,
            LessonPush.lesson_id,
            (QuizAnswer.correct.is_(True),),
        ),
        (
            # Signed in by themselves and on time: a proxy entry or a late arrival earns nothing.
            "sign_in",
            MeetingSignIn.user_id,
            MeetingSignIn.signed_at,
            Meeting,
            MeetingSignIn.meeting_id == Meeting.id,
            Meeting.id,
            (MeetingSignIn.late.is_(False), MeetingSignIn.method != "proxy"),
        ),
        (
            "ack",
            NoticeAck.user_id,
            NoticeAck.acked_at,
            NoticePost,
            NoticeAck.post_id == NoticePost.id,
            NoticePost.notice_id,
            (),
        ),
    )
    found: list[Event] = []
    for kind, who, when, parent, join, what, conditions in sources:
        query = (
            select(who, when, what)
            .join(parent, join)
            .where(parent.chat_id.in_(chat_pks), when >= start, when <= end, *conditions)
        )
        if user_id is not None:
            query = query.where(who == user_id)
        found += [(row[0], kind, row[1], row[2]) for row in (await session.execute(query)).all()]
    return found


async def members(session: AsyncSession, chat_pks: list[int]) -> list[User]:
    """The people in the groups now (not those who left), once each."""
    in_groups = select(ChatMember.user_id).where(ChatMember.chat_id.in_(chat_pks), ChatMember.status == "member")
    result = await session.execute(select(User).where(User.id.in_(in_groups)))
    return list(result.scalars())
