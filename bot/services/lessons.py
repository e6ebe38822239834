"""The 每日党课 lesson library: the sample pack every group starts with, and the lessons a group's
committee imports from a file. An import is all or nothing: a file with any bad entry saves none of
it, and the report says, line by line, what to mend.

The committee manages its library: it may reorder the group's own lessons and remove any lesson. The
sample pack is shared by every group, so removing one of its lessons is a per-group skip; a removed own
lesson keeps its row (marked removed), so what members studied and answered stays on record."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import lesson_files
from bot.services import outbox as outbox_service
from bot.services import roster as roster_service
from bot.services import schedules as schedule_service
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.lesson_files import LessonDraft, Problem
from bot.services.outbox import Planned
from bot.services.timephrase import Rule
from storage import lessons as lesson_store
from storage.models import AuditLog, Lesson, LessonPush, Schedule

log = logging.getLogger(__name__)

PACKS_DIR = Path(__file__).resolve().parent.parent / "lessons"
SAMPLE_PACKS = {"zh": PACKS_DIR / "sample_pack.md", "en": PACKS_DIR / "sample_pack.en.md"}
PUSH = "lesson_push"
EXHAUSTED = "lessons_exhausted"  # the outbox kind telling the committee the library is used up
MOVES = ("up", "down", "first")
PUSH_DAYS = {"d": "daily", "w": "workdays"}  # every day, or China's working days
PUSH_TIMES = ("0730", "1200", "1930", "2000", "2100")
DEFAULT_PUSH = "d2000"  # every day at 20:00, outside work hours


@dataclass(frozen=True)
class ImportReport:
    imported: int
    readable: int  # entries that were fine (none is saved while any other is not)
    problems: list[Problem]


def lesson_row(draft: LessonDraft, chat_pk: int | None, position: int, actor_id: int | None, now: datetime) -> Lesson:
    return Lesson(
        chat_id=chat_pk,
        position=position,
        title=draft.title,
        body=draft.body,
        source=draft.source,
        tags=",".join(draft.tags),
        push_on=draft.push_on,
        quiz_question=draft.question,
        quiz_options=json.dumps(list(draft.options), ensure_ascii=False) if draft.question else None,
        quiz_answer=draft.answer,
        imported_by=actor_id,
        created_at=now,
    )


async def import_file(
    session: AsyncSession, chat_pk: int, actor_id: int, filename: str, data: bytes, now: datetime
) -> ImportReport:
    """Add a file's lessons to the group's library, after its own; refuses an unreadable file with a
    ``DomainError``, and saves nothing from a file with problems."""
    parsed = lesson_files.parse_file(filename, data)
    existing = await lesson_store.titles_of(session, chat_pk)
    problems = parsed.problems + [
        Problem(draft.line, "lessons.title_exists") for draft in parsed.lessons if draft.title in existing
    ]
    if problems or not parsed.lessons:
        return ImportReport(0, len(parsed.lessons), sorted(problems, key=lambda problem: problem.line))
    position = await lesson_store.next_position(session, chat_pk)
    session.add_all(
        lesson_row(draft, chat_pk, position + index, actor_id, now) for index, draft in enumerate(parsed.lessons)
    )
    session.add(
        AuditLog(
            chat_id=chat_pk,
            actor_id=actor_id,
            action="lessons_imported",
            detail=f"{len(parsed.lessons)} {filename[:80]}",
        )
    )
    await session.flush()
    return ImportReport(len(parsed.lessons), len(parsed.lessons), [])


async def ensure_sample_pack(session: AsyncSession, now: datetime) -> int:
    """Load the bundled sample pack once per language, as lessons of no group; returns how many were added."""
    await lesson_store.lock_pack(session)
    added = 0
    for language, path in SAMPLE_PACKS.items():
        if await lesson_store.count_pack(session, language):
            continue
        parsed = lesson_files.parse_file(path.name, path.read_bytes())
        if not parsed.ok:  # a broken pack is a bug of ours: the tests read it
            raise ValueError(f"the {language} sample pack does not read: {parsed.problems[:3]}")
        rows = [lesson_row(draft, None, index + 1, None, now) for index, draft in enumerate(parsed.lessons)]
        for row in rows:
            row.language = language
        session.add_all(rows)
        added += len(rows)
    await session.flush()
    return added


async def library(session: AsyncSession, chat_pk: int) -> list[Lesson]:
    return await lesson_store.library(session, chat_pk)


async def pushed_lessons(session: AsyncSession, chat_pk: int) -> set[int]:
    return await lesson_store.pushed_ids(session, chat_pk)


async def in_library(session: AsyncSession, chat_pk: int, lesson_id: int) -> bool:
    return await lesson_store.library_lesson(session, chat_pk, lesson_id) is not None


# ------------------------------------------------------------------------------------------ managing it


@dataclass(frozen=True)
class LessonPreview:
    lesson: Lesson
    number: int  # its place in the library as listed, from 1
    own: bool  # the group's own (reorderable) rather than the sample pack's
    first_own: bool
    last_own: bool
    push: LessonPush | None  # when it was pushed to this group, if it was
    is_next: bool  # the next push would be this one


async def _library_lesson(session: AsyncSession, chat_pk: int, lesson_id: int) -> Lesson:
    """The lesson named by a button, if it is in the group's library; button data is untrusted, so
    another group's lesson, a removed one or a made-up id is refused alike."""
    lesson = await lesson_store.library_lesson(session, chat_pk, lesson_id)
    if lesson is None:
        raise DomainError("errors.button_expired")
    return lesson


async def preview(session: AsyncSession, chat_pk: int, lesson_id: int, today: date) -> LessonPreview:
    lesson = await _library_lesson(session, chat_pk, lesson_id)
    lessons = await lesson_store.library(session, chat_pk)
    own = [item.id for item in lessons if item.chat_id is not None]
    # Today's push done, the next one is tomorrow's (a lesson dated tomorrow would come first then).
    day = today if await lesson_store.pushed_on(session, chat_pk, today) is None else today + timedelta(days=1)
    upcoming = await lesson_store.next_lesson(session, chat_pk, day)
    return LessonPreview(
        lesson=lesson,
        number=next(index for index, item in enumerate(lessons, 1) if item.id == lesson.id),
        own=lesson.chat_id is not None,
        first_own=bool(own) and own[0] == lesson.id,
        last_own=bool(own) and own[-1] == lesson.id,
        push=await lesson_store.push_of_lesson(session, chat_pk, lesson.id),
        is_next=upcoming is not None and upcoming.id == lesson.id,
    )


async def move(session: AsyncSession, chat_pk: int, lesson_id: int, actor_id: int, direction: str) -> bool:
    """Move one of the group's own lessons up, down or to the front of its own (the sample pack keeps
    its order: it is shared, and always follows the group's own). Returns whether the order changed."""
    if direction not in MOVES:
        raise DomainError("errors.button_expired")
    lesson = await _library_lesson(session, chat_pk, lesson_id)
    if lesson.chat_id != chat_pk:
        raise DomainError("errors.button_expired")
    own = await lesson_store.own_lessons(session, chat_pk)
    index = next(at for at, item in enumerate(own) if item.id == lesson.id)
    target = {"up": index - 1, "down": index + 1, "first": 0}[direction]
    if not 0 <= target < len(own) or target == index:
        return False
    own.insert(target, own.pop(index))
    # Renumbered rather than swapped, so gaps and ties cannot make a move a no-op; unchanged rows stay unwritten.
    for position, item in enumerate(own, 1):
        if item.position != position:
            item.position = position
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="lesson_moved", detail=f"{lesson.id} {direction}"))
    await session.flush()
    return True


async def remove(session: AsyncSession, chat_pk: int, lesson_id: int, actor_id: int, now: datetime) -> Lesson:
    """Take a lesson out of the group's library for good; it is never pushed to the group again."""
    lesson = await _library_lesson(session, chat_pk, lesson_id)
    if lesson.chat_id == chat_pk:
        lesson.status = "removed"
    else:
        await lesson_store.skip(session, chat_pk, lesson.id, actor_id, now)
    session.add(
        AuditLog(chat_id=chat_pk, actor_id=actor_id, action="lesson_removed", detail=f"{lesson.id} {lesson.title}")
    )
    await session.flush()
    return lesson


async def is_exhausted(session: AsyncSession, chat_pk: int) -> bool:
    """No lesson of the library is left for the group, on any day."""
    return await lesson_store.count_unpushed(session, chat_pk) == 0


def quiz_options(lesson: Lesson) -> list[str]:
    return json.loads(lesson.quiz_options) if lesson.quiz_options else []


# ------------------------------------------------------------------------------------------ the daily push


def push_rule(choice: str) -> Rule:
    """ "d2000" → every day at 20:00; "w0730" → working days at 07:30 (the offered choices only)."""
    days, time = choice[:1], choice[1:]
    if days not in PUSH_DAYS or time not in PUSH_TIMES:
        raise DomainError("errors.button_expired")
    return Rule(kind=PUSH_DAYS[days], hour=int(time[:2]), minute=int(time[2:]))


async def set_push(
    session: AsyncSession, chat_pk: int, actor_id: int, choice: str | None, settings: GroupSettings, now: datetime
) -> Schedule | None:
    """Turn the group's daily push on at a chosen rhythm and time, or off (``choice`` None)."""
    rule = push_rule(choice) if choice is not None else None
    schedule = await schedule_service.set_routine(session, chat_pk, PUSH, rule, settings, now)
    if rule is None and schedule is not None:  # a post still waiting out quiet hours does not go either
        await outbox_service.cancel_all(session, schedule_service.firing_key_prefix(schedule.id))
    detail = rule.canonical() if rule else "off"
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="lesson_push", detail=detail))
    await session.flush()
    return schedule


async def push_of(session: AsyncSession, chat_pk: int) -> Schedule | None:
    return await schedule_service.routine_of(session, chat_pk, PUSH)


async def _plan_push(
    session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
) -> None:
    """One lesson a day per group, never one it had: the post with "已学", and its quiz as a poll."""
    day = due_at.astimezone(settings.zone).date()
    if await lesson_store.pushed_on(session, schedule.chat_id, day) is not None:
        return
    lesson = await lesson_store.next_lesson(session, schedule.chat_id, day)
    if lesson is None:
        log.info("group %s has no lesson for %s", schedule.chat_id, day)
        if await is_exhausted(session, schedule.chat_id):  # not merely waiting for a dated lesson's day
            await _plan_exhausted(session, schedule.chat_id, settings, now)
        return
    push = LessonPush(chat_id=schedule.chat_id, lesson_id=lesson.id, pushed_on=day, created_at=now)
    session.add(push)
    await session.flush()
    key = schedule_service.firing_key(schedule.id, due_at)
    not_before = chat_service.quiet_hours_end(settings, now)
    # The quiz, if any, is planned once the post is out (``record_posted``), so it never comes first.
    post = Planned(
        key=f"{key}:post", kind="lesson_post", args={"push_id": push.id}, chat_pk=push.chat_id, not_before=not_before
    )
    await outbox_service.plan(session, [post], now)


def exhausted_key_prefix(chat_pk: int, pushes: int) -> str:
    return f"{EXHAUSTED}:{chat_pk}:{pushes}:"


async def _plan_exhausted(session: AsyncSession, chat_pk: int, settings: GroupSettings, now: datetime) -> None:
    """Tell the committee, once, that the library is used up: privately to the secretaries (else the
    committee) who started the bot, else in the group. The count of pushes so far tells one exhaustion
    from the next (a push of newly imported lessons starts another), without a table of its own."""
    pushes = await lesson_store.count_pushes(session, chat_pk)
    prefix = exhausted_key_prefix(chat_pk, pushes)
    # Checked as a whole, not per key: whom the bot can reach may change between one day and the next.
    if (await outbox_service.progress(session, prefix)).total:
        return
    args = {"pushes": pushes}
    not_before = chat_service.quiet_hours_end(settings, now)
    planned = [
        Planned(
            key=f"{prefix}user:{user_id}",
            kind=EXHAUSTED,
            args=args,
            chat_pk=chat_pk,
            user_id=user_id,
            not_before=not_before,
        )
        for user_id in await attendance_service.compliance_recipients(session, chat_pk)
    ] or [Planned(key=f"{prefix}group", kind=EXHAUSTED, args=args, chat_pk=chat_pk, not_before=not_before)]
    await outbox_service.plan(session, planned, now)


async def pushed(session: AsyncSession, push_id: int) -> tuple[LessonPush, Lesson] | None:
    return await lesson_store.push_with_lesson(session, push_id)


async def record_posted(
    session: AsyncSession, push_id: int, message_id: int | None, post_key: str, now: datetime
) -> None:
    """The post is out (``message_id`` None: perhaps, its answer was lost): remember it, and plan its quiz
    (keyed after the post, so once)."""
    found = await lesson_store.push_with_lesson(session, push_id)
    if found is None:
        return
    push, lesson = found
    push.message_id = message_id
    if lesson.quiz_question:
        quiz = Planned(
            key=post_key.removesuffix(":post") + ":quiz",
            kind="lesson_quiz",
            args={"push_id": push.id},
            chat_pk=push.chat_id,
        )
        await outbox_service.plan(session, [quiz], now)


async def record_quiz_posted(session: AsyncSession, push_id: int, poll_id: str) -> None:
    found = await lesson_store.push_with_lesson(session, push_id)
    if found is not None:
        found[0].poll_id = poll_id


@dataclass(frozen=True)
class Studied:
    new: bool
    count: int
    lesson: Lesson


async def study(session: AsyncSession, push_id: int, user_id: int, chat_pk: int | None, now: datetime) -> Studied:
    """A member's "已学" (``chat_pk``: the group it was pressed in; None in private, where the member
    must belong to the push's group)."""
    found = await lesson_store.push_with_lesson(session, push_id)
    if found is None or (chat_pk is not None and found[0].chat_id != chat_pk):
        raise DomainError("errors.button_expired")
    push, lesson = found
    if chat_pk is None and not await roster_service.is_member(session, push.chat_id, user_id):
        raise DomainError("lessons.not_member")
    new = await lesson_store.add_study(session, push_id, user_id, now)
    return Studied(new, await lesson_store.count_studies(session, push_id), lesson)


async def studied_count(session: AsyncSession, push_id: int) -> int:
    return await lesson_store.count_studies(session, push_id)


async def answer_quiz(
    session: AsyncSession, poll_id: str, user_id: int, option_ids: list[int], now: datetime
) -> bool | None:
    """A member's answer to a pushed quiz, recorded once; returns whether it was right (None: not one
    of our quizzes, or a retracted vote)."""
    found = await lesson_store.push_of_poll(session, poll_id)
    if found is None or len(option_ids) != 1:
        return None
    _, lesson = found
    correct = option_ids[0] == lesson.quiz_answer
    await lesson_store.add_quiz_answer(session, found[0].id, user_id, option_ids[0], correct, now)
    return correct


async def catch_up(session: AsyncSession, user_id: int, limit: int = 5) -> list[tuple[LessonPush, Lesson]]:
    """Lessons pushed in the member's groups that they have not marked studied, latest first."""
    chats = await roster_service.groups_of(session, user_id)
    return await lesson_store.unstudied_for(session, user_id, chats, limit) if chats else []


async def of_user(session: AsyncSession, user_id: int) -> list[dict]:
    """For /mydata: the lessons the member marked studied, and their quiz answers."""
    return [
        {
            "lesson": lesson.title,
            "pushed_on": push.pushed_on.isoformat(),
            "studied_at": studied_at.isoformat() if studied_at else None,
            "quiz_correct": correct,
        }
        for push, lesson, studied_at, correct in await lesson_store.of_user(session, user_id)
    ]


# A push missed while the bot was down still goes out within two hours; later, the day is skipped.
schedule_service.register_kind(PUSH, _plan_push, grace=timedelta(hours=2))
