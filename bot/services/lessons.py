"""The 每日党课 lesson library: the sample pack every group starts with, and the lessons a group's
committee imports from a file. An import is all or nothing: a file with any bad entry saves none of
it, and the report says, line by line, what to mend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import lesson_files
from bot.services.lesson_files import LessonDraft, Problem
from storage import lessons as lesson_store
from storage.models import AuditLog, Lesson

SAMPLE_PACK = Path(__file__).resolve().parent.parent / "lessons" / "sample_pack.md"


@dataclass(frozen=True)
class ImportReport:
    imported: int
    readable: int  # entries that were fine (none is saved while any other is not)
    problems: list[Problem]


def _row(draft: LessonDraft, chat_pk: int | None, position: int, actor_id: int | None, now: datetime) -> Lesson:
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
    session.add_all(_row(draft, chat_pk, position + index, actor_id, now) for index, draft in enumerate(parsed.lessons))
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
    """Load the bundled sample pack once, as lessons of no group; returns how many were added."""
    if await lesson_store.count_pack(session):
        return 0
    parsed = lesson_files.parse_file(SAMPLE_PACK.name, SAMPLE_PACK.read_bytes())
    if not parsed.ok:  # a broken pack is a bug of ours: the tests read it
        raise ValueError(f"the sample pack does not read: {parsed.problems[:3]}")
    session.add_all(_row(draft, None, index + 1, None, now) for index, draft in enumerate(parsed.lessons))
    await session.flush()
    return len(parsed.lessons)


async def library(session: AsyncSession, chat_pk: int) -> list[Lesson]:
    return await lesson_store.library(session, chat_pk)


def quiz_options(lesson: Lesson) -> list[str]:
    return json.loads(lesson.quiz_options) if lesson.quiz_options else []
