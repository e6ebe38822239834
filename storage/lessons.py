"""Queries on the lesson library."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Chat, Lesson, LessonPush, LessonSkip, LessonStudy, QuizAnswer
from storage.upsert import insert_for


async def next_position(session: AsyncSession, chat_pk: int | None) -> int:
    owner = Lesson.chat_id.is_(None) if chat_pk is None else Lesson.chat_id == chat_pk
    result = await session.execute(select(func.max(Lesson.position)).where(owner))
    return (result.scalar_one_or_none() or 0) + 1


async def titles_of(session: AsyncSession, chat_pk: int) -> set[str]:
    result = await session.execute(select(Lesson.title).where(Lesson.chat_id == chat_pk, Lesson.status == "active"))
    return set(result.scalars())


async def count_pack(session: AsyncSession, language: str) -> int:
    result = await session.execute(
        select(func.count()).select_from(Lesson).where(Lesson.chat_id.is_(None), Lesson.language == language)
    )
    return int(result.scalar_one())


# The language of groups that have not chosen one: the deployment's (DEFAULT_LANGUAGE), set once at start.
default_language = "zh"


def pack_language(chat_pk: int) -> ColumnElement[str]:
    chosen = select(Chat.language).where(Chat.id == chat_pk).scalar_subquery()
    return func.coalesce(chosen, default_language)


def in_library(chat_pk: int) -> ColumnElement[bool]:
    """The group's own active lessons and the sample pack's in the group's language, less those of the pack
    the group removed (the pack is shared, so its removal is a per-group skip)."""
    skipped = select(LessonSkip.lesson_id).where(LessonSkip.chat_id == chat_pk)
    pack = Lesson.chat_id.is_(None) & (Lesson.language == pack_language(chat_pk))
    return ((Lesson.chat_id == chat_pk) | pack) & (Lesson.status == "active") & Lesson.id.not_in(skipped)


async def library(session: AsyncSession, chat_pk: int) -> list[Lesson]:
    """The group's own active lessons in order, then the sample pack's."""
    result = await session.execute(
        select(Lesson).where(in_library(chat_pk)).order_by(Lesson.chat_id.is_(None), Lesson.position, Lesson.id)
    )
    return list(result.scalars())


async def library_lesson(session: AsyncSession, chat_pk: int, lesson_id: int) -> Lesson | None:
    """The lesson, if it is in the group's library now (not another group's, not removed)."""
    result = await session.execute(select(Lesson).where(Lesson.id == lesson_id, in_library(chat_pk)))
    return result.scalar_one_or_none()


async def own_lessons(session: AsyncSession, chat_pk: int) -> list[Lesson]:
    """The group's own active lessons in their push order (the part of the library it may reorder)."""
    result = await session.execute(
        select(Lesson).where(Lesson.chat_id == chat_pk, Lesson.status == "active").order_by(Lesson.position, Lesson.id)
    )
    return list(result.scalars())


async def skip(session: AsyncSession, chat_pk: int, lesson_id: int, actor_id: int, now: datetime) -> bool:
    insert = insert_for(session)
    result = await session.execute(
        insert(LessonSkip)
        .values(chat_id=chat_pk, lesson_id=lesson_id, skipped_by=actor_id, skipped_at=now)
        .on_conflict_do_nothing()
        .returning(LessonSkip.lesson_id)
    )
    return result.first() is not None


async def push_of_lesson(session: AsyncSession, chat_pk: int, lesson_id: int) -> LessonPush | None:
    result = await session.execute(
        select(LessonPush).where(LessonPush.chat_id == chat_pk, LessonPush.lesson_id == lesson_id)
    )
    return result.scalar_one_or_none()


async def pushed_ids(session: AsyncSession, chat_pk: int) -> set[int]:
    result = await session.execute(select(LessonPush.lesson_id).where(LessonPush.chat_id == chat_pk))
    return set(result.scalars())


async def count_pushes(session: AsyncSession, chat_pk: int) -> int:
    result = await session.execute(select(func.count()).select_from(LessonPush).where(LessonPush.chat_id == chat_pk))
    return int(result.scalar_one())


async def count_unpushed(session: AsyncSession, chat_pk: int) -> int:
    """Lessons of the library the group has not had yet, whatever their date."""
    pushed = select(LessonPush.lesson_id).where(LessonPush.chat_id == chat_pk)
    result = await session.execute(
        select(func.count()).select_from(Lesson).where(in_library(chat_pk), Lesson.id.not_in(pushed))
    )
    return int(result.scalar_one())


async def pushed_on(session: AsyncSession, chat_pk: int, day: date) -> LessonPush | None:
    result = await session.execute(select(LessonPush).where(LessonPush.chat_id == chat_pk, LessonPush.pushed_on == day))
    return result.scalar_one_or_none()


async def next_lesson(session: AsyncSession, chat_pk: int, day: date) -> Lesson | None:
    """The lesson for ``day``: one dated that day, else the first not yet pushed to the group, in the
    library's order (the group's own, then the sample pack); lessons dated later wait for their day."""
    pushed = select(LessonPush.lesson_id).where(LessonPush.chat_id == chat_pk)
    result = await session.execute(
        select(Lesson)
        .where(
            in_library(chat_pk),
            Lesson.id.not_in(pushed),
            Lesson.push_on.is_(None) | (Lesson.push_on <= day),
        )
        # coalesce: an undated lesson compares as NULL, which PostgreSQL would sort first
        .order_by(
            func.coalesce(Lesson.push_on == day, False).desc(), Lesson.chat_id.is_(None), Lesson.position, Lesson.id
        )
        .limit(1)
    )
    return result.scalar_one_or_none()


async def push_with_lesson(session: AsyncSession, push_id: int) -> tuple[LessonPush, Lesson] | None:
    result = await session.execute(
        select(LessonPush, Lesson).join(Lesson, Lesson.id == LessonPush.lesson_id).where(LessonPush.id == push_id)
    )
    row = result.first()
    return (row[0], row[1]) if row else None


async def push_of_poll(session: AsyncSession, poll_id: str) -> tuple[LessonPush, Lesson] | None:
    result = await session.execute(
        select(LessonPush, Lesson).join(Lesson, Lesson.id == LessonPush.lesson_id).where(LessonPush.poll_id == poll_id)
    )
    row = result.first()
    return (row[0], row[1]) if row else None


async def add_study(session: AsyncSession, push_id: int, user_id: int, now) -> bool:
    insert = insert_for(session)
    result = await session.execute(
        insert(LessonStudy)
        .values(push_id=push_id, user_id=user_id, studied_at=now)
        .on_conflict_do_nothing()
        .returning(LessonStudy.user_id)
    )
    return result.first() is not None


async def count_studies(session: AsyncSession, push_id: int) -> int:
    result = await session.execute(select(func.count()).select_from(LessonStudy).where(LessonStudy.push_id == push_id))
    return int(result.scalar_one())


async def add_quiz_answer(session: AsyncSession, push_id: int, user_id: int, option: int, correct: bool, now) -> bool:
    insert = insert_for(session)
    result = await session.execute(
        insert(QuizAnswer)
        .values(push_id=push_id, user_id=user_id, option=option, correct=correct, answered_at=now)
        .on_conflict_do_nothing()
        .returning(QuizAnswer.user_id)
    )
    return result.first() is not None


async def unstudied_for(
    session: AsyncSession, user_id: int, chat_pks: list[int], limit: int
) -> list[tuple[LessonPush, Lesson]]:
    """Recent pushes in the member's groups that they have not marked studied, latest first; not those
    the group's committee has since removed from its library."""
    studied = select(LessonStudy.push_id).where(LessonStudy.user_id == user_id)
    skipped = (
        select(LessonSkip.lesson_id)
        .where(LessonSkip.chat_id == LessonPush.chat_id, LessonSkip.lesson_id == LessonPush.lesson_id)
        .exists()
    )
    result = await session.execute(
        select(LessonPush, Lesson)
        .join(Lesson, Lesson.id == LessonPush.lesson_id)
        .where(LessonPush.chat_id.in_(chat_pks), LessonPush.id.not_in(studied), Lesson.status == "active", ~skipped)
        .order_by(LessonPush.pushed_on.desc(), LessonPush.id.desc())
        .limit(limit)
    )
    return [(push, lesson) for push, lesson in result.all()]


async def lock_pack(session: AsyncSession) -> None:
    """Two processes starting at once must not both load the sample pack (PostgreSQL; SQLite's write
    transactions are serial already)."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy import text

        await session.execute(text("SELECT pg_advisory_xact_lock(7001)"))


async def of_user(session: AsyncSession, user_id: int) -> list[tuple[LessonPush, Lesson, object, bool | None]]:
    """Every push the member studied or answered the quiz of: (push, lesson, studied_at, correct)."""
    studied = select(LessonStudy.push_id, LessonStudy.studied_at).where(LessonStudy.user_id == user_id).subquery()
    answered = select(QuizAnswer.push_id, QuizAnswer.correct).where(QuizAnswer.user_id == user_id).subquery()
    result = await session.execute(
        select(LessonPush, Lesson, studied.c.studied_at, answered.c.correct)
        .join(Lesson, Lesson.id == LessonPush.lesson_id)
        .outerjoin(studied, studied.c.push_id == LessonPush.id)
        .outerjoin(answered, answered.c.push_id == LessonPush.id)
        .where((studied.c.push_id.is_not(None)) | (answered.c.push_id.is_not(None)))
        .order_by(LessonPush.pushed_on, LessonPush.id)
    )
    return [tuple(row) for row in result.all()]
