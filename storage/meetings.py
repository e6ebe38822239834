"""Queries on meetings, the members' answers, sign-ins and make-up study."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog, ChatMember, Meeting, MeetingAnswer, MeetingMakeup, MeetingSignIn
from storage.upsert import insert_for


async def get(session: AsyncSession, meeting_id: int, *, lock: bool = False) -> Meeting | None:
    return await session.get(Meeting, meeting_id, with_for_update=lock)


async def answers_of(session: AsyncSession, meeting_id: int) -> list[MeetingAnswer]:
    result = await session.execute(select(MeetingAnswer).where(MeetingAnswer.meeting_id == meeting_id))
    return list(result.scalars())


async def answer_of(
    session: AsyncSession, meeting_id: int, user_id: int, *, lock: bool = False
) -> MeetingAnswer | None:
    return await session.get(MeetingAnswer, (meeting_id, user_id), with_for_update=lock)


async def answer_counts(session: AsyncSession, meeting_id: int) -> dict[str, int]:
    result = await session.execute(
        select(MeetingAnswer.answer, func.count())
        .where(MeetingAnswer.meeting_id == meeting_id)
        .group_by(MeetingAnswer.answer)
    )
    return {answer: int(count) for answer, count in result.all()}


async def sign_ins_of(session: AsyncSession, meeting_id: int) -> list[MeetingSignIn]:
    result = await session.execute(
        select(MeetingSignIn).where(MeetingSignIn.meeting_id == meeting_id).order_by(MeetingSignIn.signed_at)
    )
    return list(result.scalars())


async def sign_in_of(session: AsyncSession, meeting_id: int, user_id: int) -> MeetingSignIn | None:
    return await session.get(MeetingSignIn, (meeting_id, user_id))


async def count_sign_ins(session: AsyncSession, meeting_id: int) -> int:
    result = await session.execute(
        select(func.count()).select_from(MeetingSignIn).where(MeetingSignIn.meeting_id == meeting_id)
    )
    return int(result.scalar_one())


def _live_posts():
    """Meetings still open whose messages in the group carry counts (the post, the sign-in message)."""
    return (Meeting.status == "scheduled") & (Meeting.message_id.is_not(None) | Meeting.signin_message_id.is_not(None))


async def shown_counts_of_live(session: AsyncSession) -> dict[int, tuple[str, dict[str, int], int]]:
    """For each such meeting: what its messages show, its answers by kind and its sign-ins, in three queries."""
    shown = dict((await session.execute(select(Meeting.id, Meeting.shown_counts).where(_live_posts()))).all())
    answers: dict[int, dict[str, int]] = {}
    for meeting_id, answer, count in await session.execute(
        select(MeetingAnswer.meeting_id, MeetingAnswer.answer, func.count())
        .join(Meeting, Meeting.id == MeetingAnswer.meeting_id)
        .where(_live_posts())
        .group_by(MeetingAnswer.meeting_id, MeetingAnswer.answer)
    ):
        answers.setdefault(meeting_id, {})[answer] = int(count)
    signed = dict(
        (
            await session.execute(
                select(MeetingSignIn.meeting_id, func.count())
                .join(Meeting, Meeting.id == MeetingSignIn.meeting_id)
                .where(_live_posts())
                .group_by(MeetingSignIn.meeting_id)
            )
        ).all()
    )
    return {
        meeting_id: (text, answers.get(meeting_id, {}), int(signed.get(meeting_id, 0)))
        for meeting_id, text in shown.items()
    }


async def add_sign_in(session: AsyncSession, row: dict) -> bool:
    """Record a sign-in; False when this member had signed in already (a second tap, a second process)."""
    insert = insert_for(session)
    result = await session.execute(
        insert(MeetingSignIn).values(**row).on_conflict_do_nothing().returning(MeetingSignIn.user_id)
    )
    return result.first() is not None


async def add_makeup(session: AsyncSession, meeting_id: int, user_id: int, reason: str, now: datetime) -> bool:
    insert = insert_for(session)
    result = await session.execute(
        insert(MeetingMakeup)
        .values(meeting_id=meeting_id, user_id=user_id, reason=reason, assigned_at=now)
        .on_conflict_do_nothing()
        .returning(MeetingMakeup.user_id)
    )
    return result.first() is not None


async def makeup_of(session: AsyncSession, meeting_id: int, user_id: int) -> MeetingMakeup | None:
    return await session.get(MeetingMakeup, (meeting_id, user_id))


async def makeups_of(session: AsyncSession, meeting_id: int) -> list[MeetingMakeup]:
    result = await session.execute(select(MeetingMakeup).where(MeetingMakeup.meeting_id == meeting_id))
    return list(result.scalars())


async def upcoming(session: AsyncSession, chat_pk: int, now: datetime, limit: int) -> list[Meeting]:
    result = await session.execute(
        select(Meeting)
        .where(Meeting.chat_id == chat_pk, Meeting.status == "scheduled", Meeting.ends_at >= now)
        .order_by(Meeting.starts_at, Meeting.id)
        .limit(limit)
    )
    return list(result.scalars())


async def recent(session: AsyncSession, chat_pk: int, now: datetime, since: datetime, limit: int) -> list[Meeting]:
    """Meetings that are over (held or cancelled) since ``since``, latest first."""
    result = await session.execute(
        select(Meeting)
        .where(
            Meeting.chat_id == chat_pk,
            Meeting.status.in_(("scheduled", "closed", "cancelled")),
            Meeting.starts_at >= since,
            (Meeting.status != "scheduled") | (Meeting.ends_at < now),
        )
        .order_by(Meeting.starts_at.desc(), Meeting.id.desc())
        .limit(limit)
    )
    return list(result.scalars())


async def codes_in_use(session: AsyncSession) -> set[str]:
    result = await session.execute(
        select(Meeting.checkin_code).where(Meeting.status == "scheduled", Meeting.checkin_code.is_not(None))
    )
    return set(result.scalars())


async def with_code_for_member(
    session: AsyncSession, code: str, user_id: int, since: datetime, until: datetime
) -> list[Meeting]:
    """Meetings around now whose sign-in code is ``code``, in groups where the user is a member."""
    result = await session.execute(
        select(Meeting)
        .join(ChatMember, ChatMember.chat_id == Meeting.chat_id)
        .where(
            Meeting.checkin_code == code,
            Meeting.status.in_(("scheduled", "closed")),
            Meeting.starts_at >= since,
            Meeting.starts_at <= until,
            ChatMember.user_id == user_id,
            ChatMember.status == "member",
        )
        .order_by(Meeting.starts_at)
    )
    return list(result.scalars())


async def count_actions_since(session: AsyncSession, actor_id: int, action: str, since: datetime) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(AuditLog)
        .where(AuditLog.actor_id == actor_id, AuditLog.action == action, AuditLog.created_at >= since)
    )
    return int(result.scalar_one())


async def held_or_planned(session: AsyncSession, chat_pk: int, kind: str, start: datetime, end: datetime) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(Meeting)
        .where(
            Meeting.chat_id == chat_pk,
            Meeting.kind == kind,
            Meeting.status.in_(("scheduled", "closed")),
            Meeting.starts_at >= start,
            Meeting.starts_at < end,
        )
    )
    return int(result.scalar_one())


async def of_user(
    session: AsyncSession, user_id: int
) -> list[tuple[Meeting, MeetingAnswer | None, MeetingSignIn | None]]:
    """For /mydata: every meeting the member answered or signed in to."""
    answered = select(MeetingAnswer.meeting_id).where(MeetingAnswer.user_id == user_id)
    signed = select(MeetingSignIn.meeting_id).where(MeetingSignIn.user_id == user_id)
    result = await session.execute(
        select(Meeting).where(Meeting.id.in_(answered) | Meeting.id.in_(signed)).order_by(Meeting.starts_at)
    )
    rows = []
    for meeting in result.scalars():
        rows.append(
            (
                meeting,
                await answer_of(session, meeting.id, user_id),
                await sign_in_of(session, meeting.id, user_id),
            )
        )
    return rows


async def delete_drafts_before(session: AsyncSession, moment: datetime) -> int:
    from sqlalchemy import delete

    result = await session.execute(delete(Meeting).where(Meeting.status == "draft", Meeting.created_at < moment))
    return result.rowcount or 0


async def drop_unstudied_makeup(session: AsyncSession, meeting_id: int, user_id: int) -> None:
    from sqlalchemy import delete

    await session.execute(
        delete(MeetingMakeup).where(
            MeetingMakeup.meeting_id == meeting_id,
            MeetingMakeup.user_id == user_id,
            MeetingMakeup.studied_at.is_(None),
        )
    )
