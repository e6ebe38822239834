"""SQLite under load: 20 writers write for a minute at once, each on its own connection (as separate
processes would: SQLite's own locking decides), and all on the bot's one Database (its write lock decides).

Every writer does what a busy group does to the database: a member seen for the first time (user and
roster rows), their 已学 on the day's lesson, and an update of a row everyone shares (the group's most
active member seen again). Five readers count meanwhile. Nothing may fail with "database is locked",
and every write a writer saw committed must be there at the end, exactly once.

LOAD_SECONDS shortens the minute for a quick look; the README's test command runs the full minute.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.services import chats as chat_service
from bot.services import lessons as lesson_service
from bot.services import people as people_service
from bot.services.people import Person
from storage.db import Database
from storage.migrate import upgrade_to_head
from storage.models import ChatMember, Lesson, LessonPush, LessonStudy, User

pytestmark = pytest.mark.load

WRITERS, READERS = 20, 5
SECONDS = float(os.environ.get("LOAD_SECONDS", "60"))
SHARED_MEMBER = 1
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def prepare(url: str) -> tuple[int, int]:
    db = Database(url)
    try:
        await upgrade_to_head(db.engine)
        async with db.transaction() as session:
            chat = (await chat_service.register_chat(session, -1001000000001, "supergroup", "负载测试群")).chat
            await lesson_service.ensure_sample_pack(session, NOW)
            lesson = (await session.execute(select(Lesson).limit(1))).scalar_one()
            push = LessonPush(chat_id=chat.id, lesson_id=lesson.id, pushed_on=date(2026, 11, 22))
            session.add(push)
            await people_service.remember_person(session, Person(SHARED_MEMBER, "常客"), NOW)
            await session.flush()
            return chat.id, push.id
    finally:
        await db.dispose()


async def write(
    url: str, shared: Database | None, writer: int, chat_pk: int, push_id: int, deadline: float
) -> tuple[list[int], list[float]]:
    """One writer, on the shared database or on its own engine (its own SQLite connection); returns the
    user ids it saw committed and how long each transaction took (waiting for the lock included)."""
    db = shared or Database(url)
    committed: list[int] = []
    latencies: list[float] = []
    serial = 0
    try:
        while time.monotonic() < deadline:
            serial += 1
            user_id = 1_000_000 * (writer + 1) + serial
            started = time.monotonic()
            async with db.transaction() as session:
                await people_service.remember_person(session, Person(user_id, f"成员{user_id}"), NOW)
                await people_service.observe_in_chat(session, chat_pk, user_id, NOW)
                studied = await lesson_service.study(session, push_id, user_id, chat_pk, NOW)
                assert studied.new
                await people_service.observe_in_chat(session, chat_pk, SHARED_MEMBER, NOW)
            latencies.append(time.monotonic() - started)
            committed.append(user_id)
            await asyncio.sleep(0)  # a real writer does other things between transactions
    finally:
        if shared is None:
            await db.dispose()
    return committed, latencies


async def read(url: str, push_id: int, deadline: float) -> int:
    db = Database(url)
    reads, last = 0, 0
    try:
        while time.monotonic() < deadline:
            async with db.transaction(read_only=True) as session:
                count = await lesson_service.studied_count(session, push_id)
            assert count >= last  # a reader never sees committed work go missing
            last, reads = count, reads + 1
            await asyncio.sleep(0.01)
    finally:
        await db.dispose()
    return reads


@pytest.mark.timeout(SECONDS + 90)
@pytest.mark.parametrize("connections", ["one per writer", "the bot's one database"])
async def test_twenty_writers_for_a_minute_lose_nothing_and_never_see_locked(tmp_path: Path, connections: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'load.db'}"
    chat_pk, push_id = await prepare(url)
    shared = Database(url) if connections == "the bot's one database" else None
    deadline = time.monotonic() + SECONDS
    try:
        results = await asyncio.gather(
            *(write(url, shared, writer, chat_pk, push_id, deadline) for writer in range(WRITERS)),
            *(read(url, push_id, deadline) for _ in range(READERS)),
        )  # any "database is locked" would surface here as an OperationalError
    finally:
        if shared is not None:
            await shared.dispose()
    writes, reads = results[:WRITERS], results[WRITERS:]
    committed = [user_id for ids, _ in writes for user_id in ids]
    latencies = sorted(latency for _, took in writes for latency in took)
    assert all(ids for ids, _ in writes), "a writer never got to write"
    assert all(count > 0 for count in reads)

    db = Database(url)
    try:
        async with db.transaction(read_only=True) as session:
            users = set((await session.execute(select(User.id).where(User.id != SHARED_MEMBER))).scalars())
            studies = (
                await session.execute(select(LessonStudy.user_id).where(LessonStudy.push_id == push_id))
            ).scalars()
            studied = list(studies)
            members = await session.scalar(
                select(func.count()).select_from(ChatMember).where(ChatMember.user_id != SHARED_MEMBER)
            )
    finally:
        await db.dispose()
    assert users == set(committed), "a committed write is missing, or one that failed is there"
    assert sorted(studied) == sorted(committed) and members == len(committed)

    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"\n{WRITERS} writers ({connections}), {SECONDS:.0f} s: {len(committed)} transactions "
        f"({len(committed) / SECONDS:.0f}/s), {sum(reads)} reads; transaction p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
