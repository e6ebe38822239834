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
FAST = {"group_messages_per_minute": 1200}
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
    # The panel is edited at every tap, which counts against the group's 20 messages a minute.
    async with BotHarness(emulator, database_url, clock=clock, **FAST) as harness:
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


# ------------------------------------------------------------------------------------------ managing the library

OTHER_GROUP = -1001234567078
OWN_MD = "".join(f"---\ntitle: 本群第{n}课\nsource: 支部手册\n---\n本群第{n}课的正文。\n" for n in ("一", "二", "三"))
PACK_FIRST, PACK_SECOND, PACK_THIRD = "什么是“三会一课”", "支部党员大会开什么、多久开一次", "支部委员会的职责"


def alert(emulator: BotAPIEmulator) -> str:
    return emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")


def buttons(message: dict) -> list[tuple[str, str]]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [(b["text"], b["callback_data"]) for row in rows for b in row]


async def open_panel(emulator, bot) -> int:
    emulator.send_message(GROUP, SECRETARY, "/lessons")
    await bot.settle()
    return last(emulator, GROUP)["message_id"]


async def press(emulator, bot, panel: int, starts_with: str, user: int = SECRETARY) -> dict:
    """Press the panel's button whose text starts so, as ``user``; the panel as it is afterwards."""
    emulator.press_button(GROUP, user, panel, button(emulator.message(GROUP, panel), starts_with))
    await bot.settle()
    return emulator.message(GROUP, panel)


async def press_data(emulator, bot, panel: int, data: str, user: int = SECRETARY) -> dict:
    emulator.press_button(GROUP, user, panel, data, forged=True)
    await bot.settle()
    return emulator.message(GROUP, panel)


async def import_own(emulator, bot, text: str = OWN_MD) -> None:
    emulator.send_message(SECRETARY, SECRETARY, "/start")
    panel = await open_panel(emulator, bot)
    await press(emulator, bot, panel, "📥")
    emulator.send_document(SECRETARY, SECRETARY, "课程.md", text.encode())
    await bot.settle()
    assert "已导入" in last(emulator, SECRETARY)["text"], last(emulator, SECRETARY)["text"]


def titles_listed(panel: dict) -> list[str]:
    """The lessons on the panel's page, by their buttons ("3. 标题")."""
    return [text.split(". ", 1)[1] for text, _ in buttons(panel) if text[:1].isdigit()]


async def push_on_days(emulator, bot, clock: FrozenClock, days: list[int]) -> list[str]:
    """Move the clock to 20:00 in Shanghai on each of these days of November 2026 (December past 30);
    the titles of the lessons posted meanwhile."""
    before = len(lesson_posts(emulator))
    for day in days:
        month, day = (11, day) if day <= 30 else (12, day - 30)
        clock.set(datetime(2026, month, day, 12, 0, tzinfo=UTC))
        await bot.settle()
    return [post["text"].split("｜", 1)[1].split("\n", 1)[0] for post in lesson_posts(emulator)[before:]]


async def group_pk(bot, telegram_id: int = GROUP) -> int:
    from storage.models import Chat

    async with bot.app.db.transaction() as session:
        return await session.scalar(select(Chat.id).where(Chat.telegram_id == telegram_id))


async def library_titles(bot, telegram_id: int = GROUP) -> list[str]:
    from bot.services import lessons as lesson_service

    chat_pk = await group_pk(bot, telegram_id)
    async with bot.app.db.transaction() as session:
        return [lesson.title for lesson in await lesson_service.library(session, chat_pk)]


async def test_the_library_is_paged_and_a_lesson_opens_as_a_preview(emulator, bot) -> None:
    panel_id = await open_panel(emulator, bot)
    panel = emulator.message(GROUP, panel_id)
    assert "第 1/2 页" in panel["text"]
    assert titles_listed(panel)[:2] == [PACK_FIRST, PACK_SECOND]
    assert len(titles_listed(panel)) == 8
    assert all(len(data.encode()) <= 64 for _, data in buttons(panel))

    page_two = await press(emulator, bot, panel_id, "▶")
    assert "第 2/2 页" in page_two["text"] and "9. “亮身份”是什么、怎么亮" in page_two["text"]
    assert [text for text, _ in buttons(page_two) if text in ("◀", "▶")] == ["◀"]

    preview = await press(emulator, bot, panel_id, "9.")
    text = preview["text"]
    assert "预览 · 第 9 课" in text and "📖 每日党课｜“亮身份”是什么、怎么亮" in text and "来源" in text
    assert "❓ 测验：" in text and text.count("✅ ") == 1 and "▫️ B." in text
    assert "🏷 标签：" in text and "尚未推送到本群" in text and "示例课程" in text
    labels = [label for label, _ in buttons(preview)]
    assert labels == ["🗑 删除", "◀ 返回列表"]  # the pack keeps its order: no moving it
    assert all(len(data.encode()) <= 64 for _, data in buttons(preview))

    back = await press(emulator, bot, panel_id, "◀ 返回列表")  # to the page it was on
    assert "第 2/2 页" in back["text"]
    first = await press(emulator, bot, panel_id, "◀")
    preview = await press(emulator, bot, panel_id, "1.")
    assert "📖 每日党课｜什么是“三会一课”" in preview["text"] and "✅ A. 党课" in preview["text"]
    assert "下一次推送的就是这课" in preview["text"]
    assert "第 1/2 页" in first["text"]


async def test_a_long_lesson_is_previewed_within_telegrams_limit(emulator, bot) -> None:
    body = "长" * 3000
    options = ", ".join(f"选项{'甲乙丙丁戊己庚辛壬癸'[n]}{'很' * 90}" for n in range(10))
    md = f"---\ntitle: {'题' * 60}\nsource: {'源' * 200}\ntags: [甲, 乙]\nquiz:\n  question: {'问' * 300}\n"
    md += f"  options: [{options}]\n  answer: 2\n---\n{body}\n"
    await import_own(emulator, bot, md)
    panel = await open_panel(emulator, bot)
    assert titles_listed(emulator.message(GROUP, panel))[0] == "题" * 15 + "…"  # a button holds a short title
    preview = await press(emulator, bot, panel, "1.")
    assert len(preview["text"]) <= 4096 and preview["text"].count("✅ ") == 1 and "✅ B." in preview["text"]
    assert "…" in preview["text"] and "🏷 标签：甲、乙" in preview["text"]


async def test_moving_own_lessons_changes_what_is_pushed(emulator, bot) -> None:
    await import_own(emulator, bot)
    panel = await open_panel(emulator, bot)
    assert titles_listed(emulator.message(GROUP, panel))[:3] == ["本群第一课", "本群第二课", "本群第三课"]

    preview = await press(emulator, bot, panel, "1.")
    assert "本群导入" in preview["text"] and "下一次推送的就是这课" in preview["text"]
    assert [label for label, _ in buttons(preview)] == ["⬇ 下移", "🗑 删除", "◀ 返回列表"]  # first: no ⬆, no ⏭
    preview = await press(emulator, bot, panel, "⬇")
    assert "已下移" in alert(emulator) and "第 2 课" in preview["text"] and "下一次推送" not in preview["text"]
    assert {"⬆ 上移", "⬇ 下移", "⏭ 下一课推送"} <= {label for label, _ in buttons(preview)}

    listed = await press(emulator, bot, panel, "◀ 返回列表")
    assert titles_listed(listed)[:3] == ["本群第二课", "本群第一课", "本群第三课"]
    await press(emulator, bot, panel, "3.")
    preview = await press(emulator, bot, panel, "⏭")  # the third, pushed next
    assert "已设为下一课" in alert(emulator) and "第 1 课" in preview["text"]
    assert "下一次推送的就是这课" in preview["text"]
    await press(emulator, bot, panel, "◀ 返回列表")
    await press(emulator, bot, panel, "3.")  # 本群第一课, last of the group's own
    preview = await press(emulator, bot, panel, "⬆")
    assert "第 2 课" in preview["text"] and "⬇ 下移" in [label for label, _ in buttons(preview)]
    listed = await press(emulator, bot, panel, "◀ 返回列表")
    assert titles_listed(listed)[:4] == ["本群第三课", "本群第一课", "本群第二课", PACK_FIRST]

    await turn_push_on(emulator, bot)
    pushed = await push_on_days(emulator, bot, bot.clock, [23, 24, 25, 26])
    assert pushed == ["本群第三课", "本群第一课", "本群第二课", PACK_FIRST]

    panel = await open_panel(emulator, bot)  # the panel marks what was pushed, and the preview says when
    assert "1. 本群第三课 ✔️已推送" in emulator.message(GROUP, panel)["text"]
    preview = await press(emulator, bot, panel, "1.")
    assert "已于 2026-11-23 推送到本群" in preview["text"]
    assert "⏭ 下一课推送" not in [label for label, _ in buttons(preview)]  # pushed once, never again


async def test_removing_an_own_and_a_pack_lesson(emulator, bot) -> None:
    emulator.add_chat(OTHER_GROUP, "supergroup", "第二党支部")
    emulator.set_admins(OTHER_GROUP, [], creator_id=SECRETARY)
    emulator.bot_added(OTHER_GROUP, SECRETARY, status="administrator")
    await import_own(emulator, bot)
    panel = await open_panel(emulator, bot)

    await press(emulator, bot, panel, "1.")
    confirm = await press(emulator, bot, panel, "🗑")
    assert "确定从本群课程库删除「本群第一课」" in confirm["text"]
    assert [label for label, _ in buttons(confirm)] == ["✅ 确认删除", "✖ 取消"]
    preview = await press(emulator, bot, panel, "✖ 取消")  # nothing removed: back to the preview
    assert "📖 每日党课｜本群第一课" in preview["text"]
    assert (await library_titles(bot))[0] == "本群第一课"
    await press(emulator, bot, panel, "🗑")
    listed = await press(emulator, bot, panel, "✅ 确认删除")
    assert "已删除「本群第一课」" in alert(emulator)
    assert "本群导入 2 课，示例课程 16 课" in listed["text"] and "本群第一课" not in listed["text"]

    await press(emulator, bot, panel, "3.")  # the sample pack's first
    confirm = await press(emulator, bot, panel, "🗑")
    assert PACK_FIRST in confirm["text"] and "其他群不受影响" in confirm["text"]
    listed = await press(emulator, bot, panel, "✅ 确认删除")
    assert "示例课程 15 课" in listed["text"] and PACK_FIRST not in listed["text"]
    assert PACK_FIRST not in await library_titles(bot)
    assert (await library_titles(bot, OTHER_GROUP))[0] == PACK_FIRST  # the pack is shared: theirs is intact

    await turn_push_on(emulator, bot)
    pushed = await push_on_days(emulator, bot, bot.clock, [23, 24, 25, 26])
    assert pushed == ["本群第二课", "本群第三课", PACK_SECOND, PACK_THIRD]

    # A lesson already pushed may go too: what members did with it stays on record.
    emulator.send_message(GROUP, MEMBER, "学习了")
    await bot.settle()
    post = lesson_posts(emulator)[0]
    emulator.press_button(GROUP, MEMBER, post["message_id"], button(post, "✅ 已学"))
    await bot.settle()
    panel = await open_panel(emulator, bot)
    preview = await press(emulator, bot, panel, "1.")
    assert "本群第二课" in preview["text"] and "已于 2026-11-23 推送到本群" in preview["text"]
    confirm = await press(emulator, bot, panel, "🗑")
    assert "学习记录和测验答案会保留" in confirm["text"]
    await press(emulator, bot, panel, "✅ 确认删除")
    from storage.models import LessonSkip, LessonStudy

    async with bot.app.db.transaction() as session:
        statuses = dict((await session.execute(select(Lesson.title, Lesson.status))).all())
        studies = list(await session.scalars(select(LessonStudy.user_id)))
        skipped = list(await session.scalars(select(LessonSkip.lesson_id)))
    assert statuses["本群第一课"] == statuses["本群第二课"] == "removed" and statuses[PACK_FIRST] == "active"
    assert studies == [MEMBER] and len(skipped) == 1
    assert await push_on_days(emulator, bot, bot.clock, [27, 28]) == ["党小组会怎么开", "党课怎么上好"]

    # Removed after its push, a lesson is not offered for catching up either.
    panel = await open_panel(emulator, bot)
    assert "5. 党课怎么上好" in emulator.message(GROUP, panel)["text"]
    await press(emulator, bot, panel, "5.")
    await press(emulator, bot, panel, "🗑")
    await press(emulator, bot, panel, "✅ 确认删除")
    emulator.send_message(MEMBER, MEMBER, "/lesson")
    await bot.settle()
    assert "党小组会怎么开" in last(emulator, MEMBER)["text"]


async def test_members_cannot_manage_the_library(emulator, bot) -> None:
    await import_own(emulator, bot)
    titles = await library_titles(bot)
    panel = await open_panel(emulator, bot)
    before = emulator.message(GROUP, panel)
    first_id, second_id = (int(button(before, f"{n}.").split(":")[2]) for n in (1, 2))
    await press(emulator, bot, panel, "1.", user=MEMBER)  # the real button, the wrong person
    assert "仅限支部委员" in alert(emulator) and emulator.message(GROUP, panel) == before
    for data in (
        f"lsm:down:{first_id}:0",
        f"lsm:first:{second_id}:0",
        f"lsm:remove:{first_id}:0",
        f"lsm:remove_yes:{first_id}:0",
        "lsm:list:0:1",
    ):
        after = await press_data(emulator, bot, panel, data, user=MEMBER)
        assert "仅限支部委员" in alert(emulator), data
        assert after == before, data
    assert await library_titles(bot) == titles and titles[:3] == ["本群第一课", "本群第二课", "本群第三课"]
    from storage.models import AuditLog, LessonSkip

    async with bot.app.db.transaction() as session:
        assert not list(await session.scalars(select(LessonSkip)))
        actions = set(await session.scalars(select(AuditLog.action)))
    assert not actions & {"lesson_moved", "lesson_removed"}


async def test_forged_lesson_ids_are_refused(emulator, bot) -> None:
    emulator.add_chat(OTHER_GROUP, "supergroup", "第二党支部")
    emulator.set_admins(OTHER_GROUP, [], creator_id=SECRETARY)
    emulator.bot_added(OTHER_GROUP, SECRETARY, status="administrator")
    await import_own(emulator, bot)
    other_pk = await group_pk(bot, OTHER_GROUP)
    async with bot.app.db.transaction() as session:
        theirs = Lesson(chat_id=other_pk, position=1, title="别的群的课", body="正文", source="来源")
        session.add(theirs)
        await session.flush()
        theirs_id = theirs.id
        own = {lesson.title: lesson.id for lesson in await session.scalars(select(Lesson))}
    panel = await open_panel(emulator, bot)
    await press(emulator, bot, panel, "2.")
    await press(emulator, bot, panel, "🗑")
    await press(emulator, bot, panel, "✅ 确认删除")  # 本群第二课 is removed
    removed_id, pack_id = own["本群第二课"], own[PACK_FIRST]
    before = emulator.message(GROUP, panel)["text"]
    titles = await library_titles(bot)

    for data in (
        f"lsm:open:{theirs_id}:0",
        f"lsm:remove_yes:{theirs_id}:0",
        f"lsm:down:{theirs_id}:0",
        f"lsm:open:{removed_id}:0",
        f"lsm:up:{removed_id}:0",
        f"lsm:remove_yes:{removed_id}:0",
        f"lsm:up:{pack_id}:0",  # the pack keeps its order
        f"lsm:first:{pack_id}:0",
        "lsm:open:999999:0",
        "lsm:remove_yes:0:0",
        f"lsm:explode:{own['本群第一课']}:0",
    ):
        after = await press_data(emulator, bot, panel, data)
        assert alert(emulator) == "此按钮已失效。", data
        assert after["text"] == before, data
    assert await library_titles(bot) == titles
    assert await library_titles(bot, OTHER_GROUP) == ["别的群的课", *titles[2:]]
    listed = await press_data(emulator, bot, panel, "lsm:list:0:99")  # a page that is not there: the last one
    assert "第 3/3 页" in listed["text"] and "18. 发展党员的基本程序" in listed["text"]


async def test_the_committee_is_told_once_when_the_library_is_used_up(emulator, database_url) -> None:
    from bot.services import lessons as lesson_service

    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    exhausted = "课程库已全部推送"
    async with BotHarness(emulator, database_url, clock=clock, **FAST) as bot:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await bot.settle()
        chat_pk = await group_pk(bot)
        async with bot.app.db.transaction() as session:  # a tiny library: two lessons of the pack left
            for lesson in (await lesson_service.library(session, chat_pk))[2:]:
                await lesson_service.remove(session, chat_pk, lesson.id, SECRETARY, clock.now())
        await turn_push_on(emulator, bot)
        assert await push_on_days(emulator, bot, clock, [23, 24, 25, 26]) == [PACK_FIRST, PACK_SECOND]
        # Nobody of the committee has started the bot: the group is told, once.
        notes = [m for m in emulator.sent_messages(GROUP) if exhausted in (m.get("text") or "")]
        assert len(notes) == 1 and "共推送 2 课" in notes[0]["text"] and "/lessons" in notes[0]["text"]
    async with BotHarness(emulator, database_url, clock=clock, **FAST) as bot:  # a restart changes nothing
        assert await push_on_days(emulator, bot, clock, [27, 28]) == []
        assert len([m for m in emulator.sent_messages(GROUP) if exhausted in (m.get("text") or "")]) == 1

        # New lessons are pushed, and their end is another exhaustion: this time the secretary is
        # reachable, so it goes to them in private.
        await import_own(emulator, bot, "---\ntitle: 新课\nsource: 支部手册\n---\n新课的正文。\n")
        assert await push_on_days(emulator, bot, clock, [29, 30, 31]) == ["新课"]
        private = [m for m in emulator.sent_messages(SECRETARY) if exhausted in (m.get("text") or "")]
        assert len(private) == 1 and "第一党支部" in private[0]["text"] and "共推送 3 课" in private[0]["text"]
        assert len([m for m in emulator.sent_messages(GROUP) if exhausted in (m.get("text") or "")]) == 1
    async with BotHarness(emulator, database_url, clock=clock, **FAST) as bot:
        assert await push_on_days(emulator, bot, clock, [32, 33]) == []
        assert len([m for m in emulator.sent_messages(SECRETARY) if exhausted in (m.get("text") or "")]) == 1


async def test_an_english_group_gets_the_english_sample_pack(emulator, database_url) -> None:
    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    async with BotHarness(emulator, database_url, clock=clock) as bot:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await bot.settle()
        emulator.send_message(GROUP, SECRETARY, "/settings lang en")
        emulator.send_message(GROUP, SECRETARY, "/lessons")
        await bot.settle()
        panel = last(emulator, GROUP)
        assert "three meetings and one lecture" in panel["text"] and "三会一课”" not in panel["text"]
        emulator.press_button(GROUP, SECRETARY, panel["message_id"], "lsn:push:d2000", forged=True)
        await bot.settle()
        clock.set(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # 20:00 in Shanghai
        await bot.settle()
        [post] = [m for m in emulator.sent_messages(GROUP) if (m.get("text") or "").startswith("📖 Daily lesson")]
        assert "What are the 'three meetings and one lecture'" in post["text"]
        [poll] = emulator.calls_of("sendPoll")
        assert "what is the 'one lecture'" in poll.params["question"]


async def test_a_lesson_post_whose_answer_was_lost_still_gets_its_quiz(emulator, database_url) -> None:
    """The post is not sent again (it may be in the group already), but its quiz is not held back for it."""
    clock = FrozenClock(datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    async with BotHarness(emulator, database_url, clock=clock) as bot:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await bot.settle()
        await turn_push_on(emulator, bot)
        emulator.fail_next("sendMessage", "lost", chat_id=GROUP)
        clock.set(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # 20:00
        await bot.settle()
        assert len(lesson_posts(emulator)) == 1  # Telegram took it; the bot never heard back
        [poll_call] = emulator.calls_of("sendPoll")
        assert poll_call.params["type"] == "quiz" and "reply_parameters" not in poll_call.params
        from storage.models import OutboxMessage

        async with bot.app.db.transaction() as session:
            rows = dict((await session.execute(select(OutboxMessage.kind, OutboxMessage.status))).all())
        assert rows["lesson_post"] == "unknown" and rows["lesson_quiz"] == "sent"
    async with BotHarness(emulator, database_url, clock=clock) as bot:  # a restart sends neither again
        await bot.settle()
        assert len(lesson_posts(emulator)) == 1 and len(emulator.calls_of("sendPoll")) == 1
