"""Backup and restore through the emulator: /backup sends the group's settings, schedules and own lessons
as a JSON file in private (and the unit's groups with "🏢 本单位"); /restore takes such a file in private,
checks it in full (problems reported by path, nothing changed), previews what would change, and restores
it all at once; a second restore adds nothing; members and forged buttons change nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import meetings as meeting_service
from bot.services import organisation as org_service
from bot.services import vanguard as vanguard_service
from bot.services.clock import FrozenClock
from handlers.backup import RestoreButton, UnitBackupButton
from storage.models import AuditLog, Chat, Lesson, Schedule
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness
from tests.test_lesson_files import GOOD_MD

GROUP_A, GROUP_B, GROUP_C, GROUP_D = -1001234567088, -1001234567089, -1001234567090, -1001234567091
SECRETARY, OTHER_SECRETARY, MEMBER = 2001, 2002, 3001
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 03:00 in Berlin, 10:00 in Shanghai
FAST = {"group_messages_per_minute": 1200}


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        emu.add_user(OTHER_SECRETARY, "王", "书记")
        emu.add_user(MEMBER, "党员")
        for group, title in ((GROUP_A, "第一党支部"), (GROUP_B, "第二党支部"), (GROUP_C, "第三党支部")):
            emu.add_chat(group, "supergroup", title)
            emu.set_admins(group, [], creator_id=SECRETARY)
        emu.add_chat(GROUP_D, "supergroup", "别的支部")
        emu.set_admins(GROUP_D, [], creator_id=OTHER_SECRETARY)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> AsyncIterator[BotHarness]:
    async with BotHarness(emulator, database_url, clock=clock, **FAST) as harness:
        emulator.bot_added(GROUP_A, SECRETARY, status="administrator")
        emulator.bot_added(GROUP_B, SECRETARY, status="administrator")
        emulator.bot_added(GROUP_C, SECRETARY, status="administrator")
        emulator.bot_added(GROUP_D, OTHER_SECRETARY, status="administrator")
        emulator.send_message(GROUP_D, SECRETARY, "大家好")  # a plain member there
        emulator.send_message(GROUP_A, MEMBER, "大家好")
        emulator.send_message(SECRETARY, SECRETARY, "/start")
        emulator.send_message(MEMBER, MEMBER, "/start")
        await harness.settle()
        yield harness


def last(emulator: BotAPIEmulator, chat_id: int) -> dict:
    return emulator.sent_messages(chat_id)[-1]


def button(message: dict, starts_with: str) -> str:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    found = [b["callback_data"] for row in rows for b in row if b["text"].startswith(starts_with)]
    assert found, f"no {starts_with!r} in {rows}"
    return found[0]


def alert(emulator: BotAPIEmulator) -> str:
    return emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")


async def say(emulator: BotAPIEmulator, bot: BotHarness, chat_id: int, text: str, user: int = SECRETARY) -> dict:
    emulator.send_message(chat_id, user, text)
    await bot.settle()
    return last(emulator, chat_id)


async def press(emulator, bot, chat_id: int, message: dict, starts_with: str, user: int = SECRETARY) -> dict:
    emulator.press_button(chat_id, user, message["message_id"], button(message, starts_with))
    await bot.settle()
    return emulator.message(chat_id, message["message_id"])


def documents(emulator: BotAPIEmulator, user: int = SECRETARY) -> list[tuple[str, bytes]]:
    return [next(iter(call.files.values())) for call in emulator.calls_of("sendDocument", chat_id=user)]


async def send_file(emulator, bot, data: bytes, name: str = "backup.json", user: int = SECRETARY) -> dict:
    emulator.send_document(user, user, name, data)
    await bot.settle()
    return last(emulator, user)


async def restore_into(emulator, bot, group: int, data: bytes) -> dict:
    """/restore in the group, then the file in private: the bot's answer to the file."""
    await say(emulator, bot, group, "/restore")
    assert last(emulator, SECRETARY)["text"].startswith("♻️")  # in the group's language
    return await send_file(emulator, bot, data)


async def chat_row(bot: BotHarness, group: int) -> Chat:
    async with bot.app.db.transaction() as session:
        return await chat_service.get_chat(session, group)


async def state_of(bot: BotHarness, group: int) -> dict:
    """What a restore may change in a group, to compare before and after."""
    async with bot.app.db.transaction() as session:
        chat = await chat_service.get_chat(session, group)
        schedules = await session.scalars(
            select(Schedule).where(Schedule.chat_id == chat.id, Schedule.status.in_(("active", "paused")))
        )
        lessons = await session.scalars(
            select(Lesson).where(Lesson.chat_id == chat.id, Lesson.status == "active").order_by(Lesson.position)
        )
        return {
            "settings": (
                chat.language,
                chat.timezone,
                chat.quiet_start,
                chat.quiet_end,
                meeting_service.reminders_of(chat),
                attendance_service.rules_of(chat),
                vanguard_service.weights_of(chat),
            ),
            "schedules": sorted(
                (s.kind, s.rule, s.text, s.with_ack, s.quiet_ok, s.status, s.next_run_at) for s in schedules
            ),
            "lessons": [(lesson.title, lesson.quiz_question, lesson.tags, lesson.push_on) for lesson in lessons],
        }


def handmade(**group_changes) -> dict:
    """A small valid backup of one group, to spoil in the tests."""
    group = {
        "title": "第一党支部",
        "telegram_id": GROUP_A,
        "settings": {"timezone": "Europe/Berlin"},
        "schedules": [
            {"kind": "announcement", "rule": "every Monday 09:00", "text": "周一学习"},
            {"rule": "每周三 19:30", "text": "党小组学习"},
        ],
        "lessons": [{"title": "党费", "body": "按月交纳党费。", "source": "党章"}],
        **group_changes,
    }
    return {"format": "branch-assistant-backup", "version": 1, "groups": [group]}


def encoded(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


# ------------------------------------------------------------------------------------------ one group


async def set_up_group_a(emulator: BotAPIEmulator, bot: BotHarness) -> None:
    """Non-default settings, two announcements (the second paused), the lesson push on, two own lessons."""
    for line in (
        "/settings tz Europe/Berlin",
        "/settings quiet 21:00-08:00",
        "/settings reminders 2h",
        "/settings rules 支委会=季度",
        "/settings vanguard 出勤=50 学习=20",
    ):
        assert "已保存" in (await say(emulator, bot, GROUP_A, line))["text"], line
    preview = await say(emulator, bot, GROUP_A, "/schedule 每周一 09:00 | 周一学习提醒")
    await press(emulator, bot, GROUP_A, preview, "💾 保存（带✅收到）")
    preview = await say(emulator, bot, GROUP_A, "/schedule 每月5日 10:00 | 请按时交纳党费")
    await press(emulator, bot, GROUP_A, preview, "💾 保存")
    listing = await say(emulator, bot, GROUP_A, "/schedules")
    panel = await press(emulator, bot, GROUP_A, listing, "2")
    assert "已暂停" in (await press(emulator, bot, GROUP_A, panel, "⏸"))["text"]

    library = await say(emulator, bot, GROUP_A, "/lessons")
    menu = await press(emulator, bot, GROUP_A, library, "⏰")
    assert "每日推送：每天 20:00" in (await press(emulator, bot, GROUP_A, menu, "每天 20:00"))["text"]
    await press(emulator, bot, GROUP_A, emulator.message(GROUP_A, library["message_id"]), "📥")
    assert "已导入 2 课" in (await send_file(emulator, bot, GOOD_MD.encode(), "课程.md"))["text"]
    assert "Saved" in (await say(emulator, bot, GROUP_A, "/settings lang en"))["text"]


async def test_backup_and_restore_into_a_fresh_group(emulator, bot, clock) -> None:
    await set_up_group_a(emulator, bot)
    reply = await say(emulator, bot, GROUP_A, "/backup")
    assert "private" in reply["text"] or "私聊" in reply["text"]
    [(filename, data)] = documents(emulator)
    assert filename == "backup-第一党支部-2026-11-23.json"
    backup = json.loads(data)
    assert (backup["format"], backup["version"], backup["unit"]) == ("branch-assistant-backup", 1, None)
    assert backup["from"] == {"title": "第一党支部", "telegram_id": GROUP_A}
    assert backup["created_at"] == "2026-11-23T02:00:00Z"
    [group] = backup["groups"]
    assert group["settings"] == {
        "language": "en",
        "timezone": "Europe/Berlin",
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "meeting_reminders": [120],
        "meeting_rules": {"general": "quarter", "committee": "quarter", "group": "month", "lecture": "quarter"},
        "vanguard_weights": {"attendance": 50, "acks": 20, "learning": 20, "identity": 10},
    }
    announcements = [item for item in group["schedules"] if item["kind"] == "announcement"]
    assert [(item["text"], item["with_ack"], item["status"]) for item in announcements] == [
        ("周一学习提醒", True, "active"),
        ("请按时交纳党费", False, "paused"),
    ]
    routines = {item["kind"]: (item["rule"], item["status"]) for item in group["schedules"]}
    assert routines["lesson_push"] == ("every day 20:00", "active")
    assert routines["rank_week"] == ("every Sunday 20:00", "active")
    assert routines["monthly_report"] == ("every month on day 1 09:00", "active")
    kinds = {item["kind"] for item in group["schedules"]}
    assert kinds == {"announcement", "lesson_push", "rank_week", "rank_month", "monthly_report"}
    assert [lesson["title"] for lesson in group["lessons"]] == ['什么是"三会一课"', "亮身份"]
    assert group["lessons"][0]["quiz"] == {
        "question": '"三会一课"中的"一课"指的是什么？',
        "options": ["党课", "业务培训", "读书会"],
        "answer": "党课",
    }
    assert group["lessons"][0]["date"] == "2026-12-01" and group["lessons"][0]["tags"] == ["三会一课", "组织生活"]
    text = data.decode()
    assert "李" not in text and "书记" not in text and str(SECRETARY) not in text and str(MEMBER) not in text

    # Into a fresh group: a preview of what would change, then everything at once. A minute later: the
    # secretary has pressed and typed more than a person does at one instant (the flood guard counts it).
    clock.advance(minutes=1)
    fresh = await state_of(bot, GROUP_B)
    preview = await restore_into(emulator, bot, GROUP_B, data)
    assert "恢复预览" in preview["text"] and "第二党支部" in preview["text"]
    assert "时区：Asia/Shanghai → Europe/Berlin" in preview["text"]
    assert "定时公告：新增 2 条；0 条本群已有" in preview["text"]
    assert "每日党课推送：关闭 → 每天 20:00" in preview["text"]
    assert "课程：新增 2 课" in preview["text"]
    assert await state_of(bot, GROUP_B) == fresh  # nothing before the confirmation
    done = await press(emulator, bot, SECRETARY, preview, "✅ 恢复")
    assert "已恢复到「第二党支部」" in done["text"] and not done.get("reply_markup")

    a, b = await state_of(bot, GROUP_A), await state_of(bot, GROUP_B)
    assert b["settings"] == a["settings"]
    assert b["lessons"] == a["lessons"]
    restored = [item for item in b["schedules"] if item[0] == "announcement"]
    assert [(item[1], item[2], item[3], item[5]) for item in restored] == [
        ("every Monday 09:00", "周一学习提醒", True, "active"),
        ("every month on day 5 10:00", "请按时交纳党费", False, "paused"),
    ]
    # Next runs in the group's (restored) zone: 09:00 and 20:00 in Berlin are 08:00 and 19:00 UTC.
    assert restored[0][6] == datetime(2026, 11, 23, 8, 0, tzinfo=UTC) and restored[1][6] is None
    [push] = [item for item in b["schedules"] if item[0] == "lesson_push"]
    assert push[1] == "every day 20:00" and push[6] == datetime(2026, 11, 23, 19, 0, tzinfo=UTC)
    async with bot.app.db.transaction() as session:
        chat_b = await chat_service.get_chat(session, GROUP_B)
        actions = set(await session.scalars(select(AuditLog.action).where(AuditLog.chat_id == chat_b.id)))
    assert {"backup_restored", "settings", "schedule_created", "routine_set", "lessons_imported"} <= actions

    clock.set(datetime(2026, 11, 23, 19, 0, tzinfo=UTC))  # 20:00 in Berlin: the push fires in the new group
    await bot.settle()
    [post] = [m for m in emulator.sent_messages(GROUP_B) if (m.get("text") or "").startswith("📖")]
    assert "亮身份" in post["text"]  # the restored lessons come first

    # The same file again: nothing left to do; and the used button pressed again adds nothing.
    after = await state_of(bot, GROUP_B)
    again = await restore_into(emulator, bot, GROUP_B, data)
    assert "无需恢复" in again["text"] and not again.get("reply_markup")
    emulator.press_button(SECRETARY, SECRETARY, preview["message_id"], button(preview, "✅ 恢复"), forged=True)
    await bot.settle()
    assert "未做更改" in alert(emulator)
    assert await state_of(bot, GROUP_B) == after


async def test_broken_files_are_refused_with_the_problem_paths(emulator, bot) -> None:
    before = await state_of(bot, GROUP_B)
    bad = handmade()
    group = bad["groups"][0]
    group["settings"]["timezone"] = "Mars/Base"
    group["schedules"][1]["rule"] = "每周八 9点"
    del group["lessons"][0]["title"]
    group["lessons"].append({"title": "党费", "body": "x", "source": "y", "quiz": {"question": "?", "options": ["a"]}})
    report = (await restore_into(emulator, bot, GROUP_B, encoded(bad)))["text"]
    assert "未做任何更改" in report
    for path in (
        "groups[0].settings.timezone：",
        "groups[0].schedules[1].rule：",
        "groups[0].lessons[0].title：缺少标题",
        "groups[0].lessons[1].quiz.options：",
    ):
        assert path in report, (path, report)

    for document, expected in (
        ({**handmade(), "version": 2}, "version：不支持的备份版本「2」"),
        ({**handmade(), "format": "something-else"}, "format：不是本机器人的备份文件"),
        (handmade(schedules=[{"kind": "meeting_reminder", "rule": "every day 09:00"}]), "schedules[0].kind："),
        (handmade(schedules=[{"rule": "every day 09:00", "text": "x", "with_ack": "yes"}]), "with_ack：这里应是 true"),
        (handmade(settings={"quiet_hours": {"start": "25:00", "end": "07:00"}}), "settings.quiet_hours："),
        (handmade(settings={"meeting_reminders": [1]}), "settings.meeting_reminders："),
        (handmade(colour="red"), "groups[0].colour：不认识的字段"),
    ):
        assert expected in (await send_file(emulator, bot, encoded(document)))["text"], expected
    assert "不是有效的 JSON" in (await send_file(emulator, bot, b'{"format": '))["text"]
    assert "文件太大" in (await send_file(emulator, bot, b" " * (1024 * 1024 + 1)))["text"]
    assert await state_of(bot, GROUP_B) == before

    # The bot still waits for the file: a good one gets its preview.
    preview = await send_file(emulator, bot, encoded(handmade()))
    assert "恢复预览" in preview["text"] and "课程：新增 1 课" in preview["text"]
    cancelled = await press(emulator, bot, SECRETARY, preview, "✖ 取消")
    assert "已取消" in cancelled["text"] and await state_of(bot, GROUP_B) == before
    assert "/restore" in (await send_file(emulator, bot, encoded(handmade())))["text"]  # no longer waited for


# ------------------------------------------------------------------------------------------ a unit's groups


async def bind_a_and_b(bot: BotHarness) -> None:
    """A: a 支部 of which the secretary is secretary; B: bound to a 党小组 below it; C: unbound."""
    async with bot.app.db.transaction() as session:
        chat_a = await chat_service.get_chat(session, GROUP_A)
        branch = await org_service.create_branch_for_chat(session, chat_a, SECRETARY, frozenset(), NOW)
        team = await org_service.create_unit(
            session, SECRETARY, frozenset(), name="第一党小组", kind="group", parent_id=branch.id
        )
        await org_service.bind_chat(
            session, await chat_service.get_chat(session, GROUP_B), SECRETARY, frozenset(), team.id
        )


async def test_a_unit_backup_restores_the_entry_of_each_group(emulator, bot) -> None:
    await bind_a_and_b(bot)
    await say(emulator, bot, GROUP_A, "/settings tz Europe/Berlin")
    await say(emulator, bot, GROUP_B, "/settings tz Asia/Tokyo")
    await say(emulator, bot, GROUP_A, "/backup")
    sent = last(emulator, SECRETARY)
    assert sent.get("document") and "🏢" in str(sent.get("reply_markup"))
    await press(emulator, bot, SECRETARY, sent, "🏢")
    assert "单位备份已发送" in alert(emulator)
    filename, data = documents(emulator)[-1]
    unit = json.loads(data)
    assert filename == "backup-第一党支部-2026-11-23.json" and unit["unit"] == {"name": "第一党支部"}
    assert [(g["title"], g["settings"]["timezone"]) for g in unit["groups"]] == [
        ("第一党支部", "Europe/Berlin"),
        ("第二党支部", "Asia/Tokyo"),
    ]
    assert "🏢" not in str(last(emulator, SECRETARY).get("reply_markup"))

    # B's own entry is chosen for B.
    await say(emulator, bot, GROUP_B, "/settings tz America/New_York")
    preview = await restore_into(emulator, bot, GROUP_B, data)
    assert "时区：America/New_York → Asia/Tokyo" in preview["text"]
    await press(emulator, bot, SECRETARY, preview, "✅ 恢复")
    assert (await chat_row(bot, GROUP_B)).timezone == "Asia/Tokyo"

    # C is in neither entry: the committee member chooses which group's entry to restore.
    picker = await restore_into(emulator, bot, GROUP_C, data)
    assert "单位备份，含 2 个群" in picker["text"]
    preview = await press(emulator, bot, SECRETARY, picker, "第一党支部")
    assert "时区：Asia/Shanghai → Europe/Berlin" in preview["text"]
    await press(emulator, bot, SECRETARY, preview, "✅ 恢复")
    assert (await chat_row(bot, GROUP_C)).timezone == "Europe/Berlin"

    # The unit button is for those who manage the unit: not for the secretary of an unbound group.
    emulator.press_button(
        SECRETARY,
        SECRETARY,
        sent["message_id"],
        UnitBackupButton(chat=(await chat_row(bot, GROUP_C)).id).pack(),
        forged=True,
    )
    await bot.settle()
    assert "单位的书记" in alert(emulator)


# ------------------------------------------------------------------------------------------ refusals


async def test_members_and_forged_buttons_change_nothing(emulator, bot) -> None:
    pk_a, pk_b, pk_d = [(await chat_row(bot, group)).id for group in (GROUP_A, GROUP_B, GROUP_D)]
    await bind_a_and_b(bot)
    before = {group: await state_of(bot, group) for group in (GROUP_A, GROUP_B, GROUP_D)}
    for command in ("/backup", "/restore"):
        assert "仅限支部委员" in (await say(emulator, bot, GROUP_A, command, user=MEMBER))["text"]
    for payload in (f"bak_{pk_a}", f"rst_{pk_a}"):
        assert "仅限支部委员" in (await say(emulator, bot, MEMBER, f"/start {payload}", user=MEMBER))["text"]
    # A file nobody asked for is answered with how to ask for one.
    hint = await send_file(emulator, bot, encoded(handmade()), user=MEMBER)
    assert "/restore" in hint["text"] and "/lessons" in hint["text"]
    for data in (
        RestoreButton(action="apply", chat=pk_a).pack(),
        RestoreButton(action="pick", chat=pk_b).pack(),
        UnitBackupButton(chat=pk_a).pack(),
    ):
        emulator.press_button(MEMBER, MEMBER, hint["message_id"], data, forged=True)
        await bot.settle()
        assert "仅限支部委员" in alert(emulator), data
    assert documents(emulator, MEMBER) == []

    # The committee member's own preview, with made-up data.
    preview = await restore_into(emulator, bot, GROUP_B, encoded(handmade()))
    prompt = emulator.sent_messages(SECRETARY)[-2]  # "send the file": a reply to no file
    for message_id, data, expected in (
        (preview["message_id"], RestoreButton(action="apply", chat=pk_b, entry=7).pack(), "已失效"),
        (preview["message_id"], RestoreButton(action="drop", chat=pk_b).pack(), "已失效"),
        (preview["message_id"], RestoreButton(action="apply", chat=pk_d).pack(), "仅限支部委员"),
        (preview["message_id"], RestoreButton(action="apply", chat=999999).pack(), "已失效"),
        (prompt["message_id"], RestoreButton(action="apply", chat=pk_b).pack(), "已失效"),
        (preview["message_id"], "rsb:apply:x:0", "已失效"),
    ):
        emulator.press_button(SECRETARY, SECRETARY, message_id, data, forged=True)
        await bot.settle()
        assert expected in alert(emulator), data
    emulator.press_button(GROUP_B, SECRETARY, 1, RestoreButton(action="apply", chat=pk_b).pack(), forged=True)
    await bot.settle()
    assert "已失效" in alert(emulator)
    assert {group: await state_of(bot, group) for group in (GROUP_A, GROUP_B, GROUP_D)} == before
