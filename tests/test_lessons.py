"""The lesson library through the emulator: /lessons, "📥 导入课程", the file sent in private, and the
line-by-line report; nothing saved from a broken file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.services.clock import FrozenClock
from storage.models import Lesson
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness
from tests.test_lesson_files import GOOD_MD

GROUP = -1001234567077
SECRETARY, MEMBER = 2001, 3001


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        emu.add_user(MEMBER, "党员")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.set_admins(GROUP, [], creator_id=SECRETARY)
        yield emu


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str) -> AsyncIterator[BotHarness]:
    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    async with BotHarness(emulator, database_url, clock=clock) as harness:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await harness.settle()
        yield harness


def last(emulator: BotAPIEmulator, chat_id: int) -> dict:
    return emulator.sent_messages(chat_id)[-1]


async def own_lessons(bot: BotHarness) -> int:
    async with bot.app.db.transaction() as session:
        return await session.scalar(select(func.count()).select_from(Lesson).where(Lesson.chat_id.is_not(None)))


async def test_import_by_file_in_private_with_a_line_by_line_report(emulator, bot) -> None:
    emulator.send_message(SECRETARY, SECRETARY, "/start")
    emulator.send_message(GROUP, SECRETARY, "/lessons")
    await bot.settle()
    library = last(emulator, GROUP)
    assert "本群导入 0 课" in library["text"]
    emulator.press_button(GROUP, SECRETARY, library["message_id"], button(library, "📥"))
    await bot.settle()
    assert "请发送要导入「第一党支部」的课程文件" in last(emulator, SECRETARY)["text"]

    bad = "标题,正文,来源\n好课,正文,来源\n,缺标题,来源\n错,正文,\n".encode("gb18030")
    emulator.send_document(SECRETARY, SECRETARY, "课程.csv", bad)
    await bot.settle()
    report = last(emulator, SECRETARY)["text"]
    assert "2 处问题，未导入任何课程" in report and "第 3 行：缺少标题。" in report and "第 4 行：缺少来源。" in report
    assert await own_lessons(bot) == 0

    emulator.send_document(SECRETARY, SECRETARY, "课程.md", GOOD_MD.encode())  # the bot still waits for it
    await bot.settle()
    assert "已导入 2 课" in last(emulator, SECRETARY)["text"]
    assert await own_lessons(bot) == 2
    emulator.send_document(SECRETARY, SECRETARY, "课程.md", GOOD_MD.encode())  # not asked for any more
    await bot.settle()
    assert "/lessons" in last(emulator, SECRETARY)["text"] and await own_lessons(bot) == 2

    emulator.send_message(GROUP, SECRETARY, "/lessons")
    await bot.settle()
    assert "本群导入 2 课" in last(emulator, GROUP)["text"] and "亮身份" in last(emulator, GROUP)["text"]


async def test_members_and_wrong_files_are_refused(emulator, bot) -> None:
    emulator.send_message(GROUP, MEMBER, "/lessons")
    await bot.settle()
    assert "仅限支部委员" in last(emulator, GROUP)["text"]
    emulator.send_message(MEMBER, MEMBER, f"/start lsn_{1}")
    await bot.settle()
    assert "仅限支部委员" in last(emulator, MEMBER)["text"]

    emulator.send_message(SECRETARY, SECRETARY, "/start lsn_1")
    await bot.settle()
    for name, data, expected in (
        ("课程.docx", b"PK\x03\x04", "请发送 .md、.yaml 或 .csv"),
        ("课程.md", b"x" * (600 * 1024), "文件太大"),
    ):
        emulator.send_document(SECRETARY, SECRETARY, name, data)
        await bot.settle()
        assert expected in last(emulator, SECRETARY)["text"], name
    assert await own_lessons(bot) == 0


def button(message: dict, starts_with: str) -> str:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    found = [b["callback_data"] for row in rows for b in row if b["text"].startswith(starts_with)]
    assert found, f"no {starts_with!r} in {rows}"
    return found[0]


def lesson_posts(emulator: BotAPIEmulator) -> list[dict]:
    return [m for m in emulator.sent_messages(GROUP) if (m.get("text") or "").startswith("📖 每日党课")]


async def turn_push_on(emulator, bot, choice: str = "每天 20:00") -> None:
    emulator.send_message(GROUP, SECRETARY, "/lessons")
    await bot.settle()
    panel = last(emulator, GROUP)
    assert "每日推送：未开启" in panel["text"]
    emulator.press_button(GROUP, SECRETARY, panel["message_id"], button(panel, "⏰"))
    await bot.settle()
    menu = emulator.message(GROUP, panel["message_id"])
    emulator.press_button(GROUP, SECRETARY, panel["message_id"], button(menu, choice))
    await bot.settle()
    assert "每日推送：每天 20:00" in emulator.message(GROUP, panel["message_id"])["text"]


async def test_the_daily_push_with_study_and_quiz(emulator, database_url) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))  # Monday 10:00 in Shanghai
    async with BotHarness(emulator, database_url, clock=clock) as bot:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        emulator.send_message(GROUP, MEMBER, "大家好")
        emulator.send_message(MEMBER, MEMBER, "/start")
        await bot.settle()
        await turn_push_on(emulator, bot)
        clock.set(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # 20:00
        await bot.settle()
        [post] = lesson_posts(emulator)
        assert "什么是“三会一课”" in post["text"] and "来源" in post["text"]
        [poll_call] = emulator.calls_of("sendPoll")
        assert poll_call.params["type"] == "quiz" and poll_call.params["is_anonymous"] in (False, "false")
        assert poll_call.params["reply_parameters"]["message_id"] == post["message_id"]  # after its post

        emulator.press_button(GROUP, MEMBER, post["message_id"], button(post, "✅ 已学"))
        await bot.settle()
        assert "已记录学习" in emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")
        emulator.press_button(GROUP, MEMBER, post["message_id"], button(post, "✅ 已学"))
        await bot.settle()
        assert "已经学过" in emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")

        poll_id = next(m for m in emulator.sent_messages(GROUP) if m.get("poll"))["poll"]["id"]
        emulator.poll_answer(poll_id, MEMBER, [0])
        await bot.settle()
    async with BotHarness(emulator, database_url, clock=clock) as bot:  # a restart: nothing again
        await bot.settle()
        assert len(lesson_posts(emulator)) == 1
        from storage.models import LessonStudy, QuizAnswer

        async with bot.app.db.transaction() as session:
            studies = list(await session.scalars(select(LessonStudy)))
            answers = list(await session.scalars(select(QuizAnswer)))
        assert [(row.user_id) for row in studies] == [MEMBER]
        assert [(row.user_id, row.option, row.correct) for row in answers] == [(MEMBER, 0, True)]
    # Down across the next evening's push, back at 21:00 (within the 2 hours): the next lesson, once.
    clock.set(datetime(2026, 11, 24, 13, 0, tzinfo=UTC))
    for _ in range(2):
        async with BotHarness(emulator, database_url, clock=clock) as bot:
            await bot.settle()
    posts = lesson_posts(emulator)
    assert len(posts) == 2 and "支部党员大会" in posts[1]["text"]

    async with BotHarness(emulator, database_url, clock=clock) as bot:  # catching up in private
        emulator.send_message(MEMBER, MEMBER, "/lesson")
        await bot.settle()
        catch_up = last(emulator, MEMBER)
        assert "支部党员大会" in catch_up["text"]
        emulator.press_button(MEMBER, MEMBER, catch_up["message_id"], button(catch_up, "✅ 已学"))
        emulator.send_message(MEMBER, MEMBER, "/lesson")
        await bot.settle()
        assert "都学过了" in last(emulator, MEMBER)["text"]

        emulator.send_message(MEMBER, MEMBER, "/mydata")  # what the member studied and answered is theirs
        await bot.settle()
        [(_, content)] = emulator.calls_of("sendDocument", chat_id=MEMBER)[-1].files.values()
        exported = json.loads(content)["lessons"]
        assert [(row["lesson"], row["quiz_correct"]) for row in exported] == [
            ("什么是“三会一课”", True),
            ("支部党员大会开什么、多久开一次", None),
        ]
