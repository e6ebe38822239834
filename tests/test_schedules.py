"""Recurring announcements through the emulator, with a clock the tests move: create → preview with the
next runs → save → /schedules → pause, resume, edit, delete; firings sent once across restarts, skipped
past the grace window, in order, and kept out of quiet hours unless the committee said so."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.services import chats as chat_service
from bot.services import schedules as schedule_service
from bot.services.clock import FrozenClock
from storage.db import Database
from storage.migrate import upgrade_to_head
from storage.models import OutboxMessage, Schedule
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness, BotProcess

GROUP = -1001234567011
SECRETARY, DEPUTY = 2001, 2002
MEMBERS = list(range(3001, 3006))
# Monday 2026-11-23 10:00 in Shanghai
MONDAY_MORNING = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
# Wednesday 2026-11-25 19:30 in Shanghai
WEDNESDAY_EVENING = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)
POST_MARK = "📅 <b>定时公告</b>"


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        emu.add_user(DEPUTY, "王", "委员")
        for user_id in MEMBERS:
            emu.add_user(user_id, f"党员{user_id}")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.set_admins(GROUP, [DEPUTY], creator_id=SECRETARY)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(MONDAY_MORNING)


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> AsyncIterator[BotHarness]:
    async with BotHarness(emulator, database_url, clock=clock) as harness:
        await join_group(emulator, harness)
        yield harness


async def join_group(emulator: BotAPIEmulator, bot: BotHarness) -> None:
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    await emulator.wait_for_call("getChatAdministrators")


def buttons(message: dict) -> dict[str, str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return {button["text"]: button.get("callback_data") for row in rows for button in row}


def button_data(message: dict, starts_with: str) -> str:
    return next(data for text, data in buttons(message).items() if text.startswith(starts_with))


def last(emulator: BotAPIEmulator) -> dict:
    return emulator.sent_messages(GROUP)[-1]


def posts(emulator: BotAPIEmulator) -> list[str]:
    return [m["text"] for m in emulator.sent_messages(GROUP) if m.get("text", "").startswith("📅 定时公告\n")]


def alerts(emulator: BotAPIEmulator) -> list[str]:
    return [call.params.get("text", "") for call in emulator.calls_of("answerCallbackQuery") if call.params.get("text")]


def asks_for_reply(emulator: BotAPIEmulator) -> bool:
    """The last message sent opens the reply field (ForceReply)."""
    return "force_reply" in str(emulator.calls_of("sendMessage")[-1].params.get("reply_markup"))


async def press(emulator: BotAPIEmulator, bot: BotHarness, message: dict, starts_with: str, user=SECRETARY) -> dict:
    emulator.press_button(GROUP, user, message["message_id"], button_data(message, starts_with))
    await bot.settle()
    return emulator.message(GROUP, message["message_id"])


async def create(emulator: BotAPIEmulator, bot: BotHarness, line: str, save: str = "💾 保存") -> dict:
    """/schedule <line>, then the save button; returns the saved panel."""
    emulator.send_message(GROUP, SECRETARY, f"/schedule {line}")
    await bot.settle()
    preview = last(emulator)
    assert "定时公告预览" in preview["text"], preview["text"]
    return await press(emulator, bot, preview, save)


async def schedules_in_db(bot: BotHarness) -> list[Schedule]:
    async with bot.app.db.transaction() as session:
        # Announcements only: every group also has its routines (the meeting check, the boards, the report).
        query = select(Schedule).where(Schedule.kind == "announcement").order_by(Schedule.id)
        return list((await session.execute(query)).scalars())


async def test_create_list_pause_resume_edit_delete(emulator, bot, clock) -> None:
    emulator.send_message(GROUP, SECRETARY, "/schedule 每周三晚上七点半 | 党小组学习，请准时参加")
    await bot.settle()
    preview = last(emulator)
    text = preview["text"]
    assert "19:30" in text and "Asia/Shanghai" in text
    for day in ("2026-11-25", "2026-12-02", "2026-12-09"):  # the next three Wednesdays
        assert day in text
    assert await schedules_in_db(bot) and (await schedules_in_db(bot))[0].status == "draft"

    panel = await press(emulator, bot, preview, "💾 保存")
    assert "已保存" in panel["text"] and "进行中" in panel["text"]

    emulator.send_message(GROUP, DEPUTY, "/schedules")
    await bot.settle()
    listing = last(emulator)
    assert "下次 2026-11-25" in listing["text"] and "党小组学习" in listing["text"]

    panel = await press(emulator, bot, listing, "1", user=DEPUTY)
    panel = await press(emulator, bot, panel, "⏸", user=DEPUTY)
    assert "已暂停" in panel["text"]
    clock.set(WEDNESDAY_EVENING + timedelta(minutes=1))
    await bot.settle()
    assert posts(emulator) == []  # paused: nothing goes out

    panel = await press(emulator, bot, panel, "▶️", user=DEPUTY)
    assert "2026-12-02" in panel["text"]  # resumed from now: the missed run is not owed

    # Edit: the prompt asks for a reply "new time | new text"; only the time changes here.
    panel = await press(emulator, bot, panel, "✏️")
    prompt = last(emulator)
    assert prompt["text"].startswith("✏️") and asks_for_reply(emulator)
    emulator.send_message(GROUP, SECRETARY, "每周四 20:00 |", reply_to_message_id=prompt["message_id"])
    await bot.settle()
    edit_preview = last(emulator)
    assert "修改定时公告预览" in edit_preview["text"] and "2026-11-26" in edit_preview["text"]
    await press(emulator, bot, edit_preview, "💾 保存")
    [schedule] = [s for s in await schedules_in_db(bot) if s.status == "active"]
    assert schedule.rule == "every Thursday 20:00" or "Thursday" in schedule.rule
    assert schedule.text == "党小组学习，请准时参加"
    assert schedule.next_run_at == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

    emulator.send_message(GROUP, SECRETARY, "/schedules")
    await bot.settle()
    panel = await press(emulator, bot, last(emulator), "1")
    confirm = await press(emulator, bot, panel, "🗑")
    assert "确定删除" in confirm["text"]
    done = await press(emulator, bot, confirm, "🗑 确定删除")
    assert "已删除" in done["text"] and "还没有定时公告" in done["text"]
    clock.set(datetime(2026, 11, 26, 12, 1, tzinfo=UTC))
    await bot.settle()
    assert posts(emulator) == []


async def test_firing_goes_out_once_at_its_time(emulator, bot, clock) -> None:
    await create(emulator, bot, "每周三 19:30 | 党小组学习")
    clock.set(WEDNESDAY_EVENING - timedelta(seconds=1))
    await bot.settle()
    assert posts(emulator) == []
    clock.set(WEDNESDAY_EVENING)
    await bot.settle()
    await bot.settle()
    assert posts(emulator) == ["📅 定时公告\n\n党小组学习"]
    [schedule] = await schedules_in_db(bot)
    assert schedule.last_run_at == WEDNESDAY_EVENING
    assert schedule.next_run_at == WEDNESDAY_EVENING + timedelta(days=7)
    async with bot.app.db.transaction() as session:
        keys = list(await session.scalars(select(OutboxMessage.dedupe_key)))
    assert keys == [f"schedule:{schedule.id}:20261125T113000Z"]


async def test_restart_across_the_due_time_sends_once(emulator, database_url, clock) -> None:
    async with BotHarness(emulator, database_url, clock=clock) as bot:
        await join_group(emulator, bot)
        await create(emulator, bot, "每天 20:00 | 今日学习打卡")
    # Down across 20:00; back at 20:40, inside the hour of grace.
    clock.set(datetime(2026, 11, 23, 12, 40, tzinfo=UTC))
    for _ in range(2):  # the second start must not send it again
        async with BotHarness(emulator, database_url, clock=clock) as bot:
            await bot.settle()
    assert posts(emulator) == ["📅 定时公告\n\n今日学习打卡"]


async def test_firing_missed_past_the_grace_window_is_skipped_and_logged(emulator, database_url, clock, caplog):
    async with BotHarness(emulator, database_url, clock=clock) as bot:
        await join_group(emulator, bot)
        await create(emulator, bot, "每天 20:00 | 今日学习打卡")
    clock.set(datetime(2026, 11, 23, 14, 30, tzinfo=UTC))  # 22:30: two and a half hours late
    with caplog.at_level(logging.WARNING, logger="bot.services.schedules"):
        async with BotHarness(emulator, database_url, clock=clock) as bot:
            await bot.settle()
            [schedule] = await schedules_in_db(bot)
    assert posts(emulator) == []
    assert any("skipped" in record.getMessage() for record in caplog.records)
    assert schedule.next_run_at == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # tomorrow 20:00


async def test_two_firings_due_at_once_keep_their_order(emulator, bot, clock) -> None:
    await create(emulator, bot, "每周三 19:30 | 第一条")
    await create(emulator, bot, "每周三 19:30 | 第二条", save="💾 保存（带✅收到）")
    await create(emulator, bot, "每周三 19:30 | 第三条")
    clock.set(WEDNESDAY_EVENING)
    await bot.settle()
    await bot.settle()
    sent = [m for m in emulator.sent_messages(GROUP) if "条" in m.get("text", "") and "预览" not in m["text"]]
    sent = [m for m in sent if m["text"].startswith(("📅 定时公告\n", "📢"))]
    assert [m["text"].rsplit("\n", 1)[-1] for m in sent] == ["第一条", "第二条", "第三条"]
    assert any(text.startswith("✅ 收到") for text in buttons(sent[1]))  # the one saved with the button


async def test_quiet_hours_need_an_explicit_yes_and_defer_otherwise(emulator, bot, clock) -> None:
    emulator.send_message(GROUP, SECRETARY, "/schedule 每天 23:00 | 夜班安全提醒")
    await bot.settle()
    preview = last(emulator)
    assert "免打扰" in preview["text"]
    assert not any(text.startswith("💾") for text in buttons(preview))  # only "save anyway"
    await press(emulator, bot, preview, "⚠️ 仍然保存")
    clock.set(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))  # 23:00
    await bot.settle()
    assert posts(emulator) == ["📅 定时公告\n\n夜班安全提醒"]

    # A schedule saved outside quiet hours, which a later change of quiet hours covers: it waits.
    await create(emulator, bot, "每天 21:30 | 明日排班")
    emulator.send_message(GROUP, SECRETARY, "/settings quiet 21:00-08:00")
    await bot.settle()
    clock.set(datetime(2026, 11, 24, 13, 30, tzinfo=UTC))  # 21:30 the next day
    await bot.settle()
    assert "明日排班" not in "".join(posts(emulator))
    clock.set(datetime(2026, 11, 25, 0, 0, tzinfo=UTC))  # 08:00
    bot.app.outbox.wake()
    await bot.settle()
    assert posts(emulator)[-1].endswith("明日排班")


async def test_pausing_stops_a_post_that_waits_out_quiet_hours(emulator, bot, clock) -> None:
    panel = await create(emulator, bot, "每天 21:30 | 明日排班", save="💾 保存（带✅收到）")
    emulator.send_message(GROUP, SECRETARY, "/settings quiet 21:00-08:00")
    await bot.settle()
    clock.set(datetime(2026, 11, 23, 13, 30, tzinfo=UTC))  # 21:30: fired, the post waits for 08:00
    await bot.settle()
    await press(emulator, bot, panel, "⏸")
    clock.set(datetime(2026, 11, 24, 0, 0, tzinfo=UTC))  # 08:00
    bot.app.outbox.wake()
    await bot.settle()
    assert not [m for m in emulator.sent_messages(GROUP) if "明日排班" in m.get("text", "") and "📢" in m["text"]]
    async with bot.app.db.transaction() as session:
        assert list(await session.scalars(select(OutboxMessage.status))) == ["skipped"]


async def test_guided_schedule_with_buttons(emulator, bot, clock) -> None:
    emulator.send_message(GROUP, SECRETARY, "/schedule")
    await bot.settle()
    menu = last(emulator)
    assert "多久发一次" in menu["text"]
    menu = await press(emulator, bot, menu, "工作日")
    assert "几点" in menu["text"]
    await press(emulator, bot, menu, "08:00")
    prompt = last(emulator)
    assert prompt["text"].startswith("📝") and asks_for_reply(emulator)
    emulator.send_message(GROUP, SECRETARY, "今日安全生产提醒", reply_to_message_id=prompt["message_id"])
    await bot.settle()
    preview = last(emulator)
    assert "工作日" in preview["text"] and "2026-11-24" in preview["text"]
    await press(emulator, bot, preview, "💾 保存")
    [schedule] = await schedules_in_db(bot)
    assert schedule.status == "active" and schedule.text == "今日安全生产提醒"
    assert schedule.next_run_at == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


async def test_a_broken_schedule_is_paused_and_holds_back_no_other(emulator, bot, clock) -> None:
    await create(emulator, bot, "每周三 19:30 | 正常的")
    [good] = await schedules_in_db(bot)
    async with bot.app.db.transaction() as session:
        session.add(  # a row whose rule cannot be read back (written by hand, say), due first
            Schedule(chat_id=good.chat_id, rule="garbage", text="坏的", status="active", next_run_at=MONDAY_MORNING)
        )
    clock.set(WEDNESDAY_EVENING)
    await bot.settle()
    await bot.settle()
    assert posts(emulator) == ["📅 定时公告\n\n正常的"]
    broken = next(s for s in await schedules_in_db(bot) if s.text == "坏的")
    assert broken.status == "paused" and broken.next_run_at is None


async def test_unsaved_previews_are_forgotten_after_a_day(emulator, bot, clock) -> None:
    await create(emulator, bot, "每天 20:00 | 保存的")
    emulator.send_message(GROUP, SECRETARY, "/schedule 每天 21:00 | 没保存的")
    await bot.settle()
    clock.advance(days=2)
    async with bot.app.db.transaction() as session:
        assert await schedule_service.forget_stale_drafts(session, clock.now()) == 1
    assert [s.text for s in await schedules_in_db(bot)] == ["保存的"]


async def test_timezone_change_moves_future_runs(emulator, bot) -> None:
    await create(emulator, bot, "每天 20:00 | 学习打卡")
    emulator.send_message(GROUP, SECRETARY, "/settings tz Europe/London")
    await bot.settle()
    [schedule] = await schedules_in_db(bot)
    assert schedule.next_run_at == datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # 20:00 in London (GMT)


async def test_members_are_refused_and_bad_input_changes_nothing(emulator, bot) -> None:
    emulator.send_message(GROUP, MEMBERS[0], "/schedule 每天 20:00 | 我也想发")
    await bot.settle()
    assert "支部委员" in last(emulator)["text"] or "committee" in last(emulator)["text"].lower()
    for line, expected in (
        ("", "多久发一次"),
        ("每天 20:00", "用法"),
        ("每周八 25点 | 内容", "每周八"),
        ("每天 20:00 | ", "不能为空"),
        ("cron */5 * * * * | 刷屏", "每小时"),
        ("2020-01-01 08:00 | 过去", "不会再到"),
        ("每天 20:00 | " + "长" * 4001, "太长"),
    ):
        emulator.send_message(GROUP, SECRETARY, f"/schedule {line}")
        await bot.settle()
        assert expected in last(emulator)["text"], (line, last(emulator)["text"])
    message_id = last(emulator)["message_id"]
    for data in (
        "scd:save:999:0:0",
        "sch:pause:abc",
        "sch:open:-1",
        "scg:zz:",
        "scg:d:9999",
        "sch:nuke:1",
        "scg::0800",
    ):
        emulator.press_button(GROUP, SECRETARY, message_id, data, forged=True)
    await bot.settle()
    async with bot.app.db.transaction() as session:
        saved = (
            select(func.count())
            .select_from(Schedule)
            .where(Schedule.status != "draft", Schedule.kind == "announcement")
        )
        assert await session.scalar(saved) == 0

    assert len(alerts(emulator)) == 7 and all(alerts(emulator))  # each forged press answered, none crashed
    # A guided draft cannot be saved (by forged data) before its text came.
    emulator.send_message(GROUP, SECRETARY, "/schedule")
    await bot.settle()
    await press(emulator, bot, await press(emulator, bot, last(emulator), "每天"), "08:00")
    [draft] = [s for s in await schedules_in_db(bot) if s.status == "draft"]
    emulator.press_button(GROUP, SECRETARY, message_id, f"scd:save:{draft.id}:0:0", forged=True)
    await bot.settle()
    assert "不能为空" in alerts(emulator)[-1]

    # A member pressing a committee button on a real preview is refused, and nothing is saved.
    emulator.send_message(GROUP, SECRETARY, "/schedule 每天 20:00 | 学习打卡")
    await bot.settle()
    preview = last(emulator)
    emulator.press_button(GROUP, MEMBERS[0], preview["message_id"], button_data(preview, "💾 保存"))
    await bot.settle()
    async with bot.app.db.transaction() as session:
        active = (
            select(func.count())
            .select_from(Schedule)
            .where(Schedule.status == "active", Schedule.kind == "announcement")
        )
        assert await session.scalar(active) == 0


async def test_real_process_timer_fires_and_restarts_never_repeat(emulator, sqlite_url) -> None:
    """`python -m bot` with the system clock: at start, a run missed 10 minutes ago is sent once and one
    missed 2 hours ago is skipped and logged; the APScheduler timer sends one due a few seconds later;
    a restart sends none of them again."""
    groups = {"late": -1001234567101, "too_late": -1001234567102, "soon": -1001234567103}
    for title, telegram_id in groups.items():
        emulator.add_chat(telegram_id, "supergroup", title)
    now = datetime.now(UTC)
    # A daily time half a day away: none of its own runs falls in the minutes this test looks at.
    far_rule = f"every day {(now + timedelta(hours=12)).astimezone(ZoneInfo('Asia/Shanghai')).hour:02d}:00"
    due = {
        "late": now - timedelta(minutes=10),
        "too_late": now - timedelta(hours=2),
        "soon": now + timedelta(seconds=8),
    }
    db = Database(sqlite_url)
    try:
        await upgrade_to_head(db.engine)
        async with db.transaction() as session:
            for title, telegram_id in groups.items():
                chat = (await chat_service.register_chat(session, telegram_id, "supergroup", title)).chat
                await session.flush()
                session.add(
                    Schedule(
                        chat_id=chat.id,
                        rule=far_rule,
                        text=f"公告 {title}",
                        status="active",
                        quiet_ok=True,
                        next_run_at=due[title].replace(microsecond=0),
                    )
                )
    finally:
        await db.dispose()

    def sent(title: str) -> int:
        return sum(1 for m in emulator.sent_messages(groups[title]) if f"公告 {title}" in m.get("text", ""))

    process = await BotProcess(emulator, sqlite_url).start()
    try:
        await emulator.wait_for(lambda: sent("late") == 1, timeout=30)
        await emulator.wait_for(lambda: sent("soon") == 1, timeout=40)
    finally:
        await process.stop()
    assert "skipped" in process.text()
    assert sent("too_late") == 0

    again = await BotProcess(emulator, sqlite_url).start()
    await asyncio.sleep(3)
    await again.stop()
    assert (sent("late"), sent("too_late"), sent("soon")) == (1, 0, 1)
