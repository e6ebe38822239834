"""Meeting settings and the required-meeting check, through the emulator and the production Dispatcher:
/settings reminders and rules (one line and buttons), and the monthly warning to the secretary that a
required meeting (三会一课) is due this period and not yet held or planned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import delete

from bot.i18n import Translator
from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import meetings as meeting_service
from bot.services import schedules as schedule_service
from bot.services.clock import FrozenClock
from bot.services.errors import DomainError
from handlers.settings import reminders_label, rules_label
from storage.models import Chat, Meeting, Schedule
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

GROUP = -1001234567021
SECRETARY, DEPUTY, MEMBER = 2101, 2102, 2103
# Tuesday 2027-01-05 10:00 in Shanghai: the first check is on 2027-01-15, mid-quarter.
JANUARY = datetime(2027, 1, 5, 2, 0, tzinfo=UTC)
# Monday 2026-11-23 10:00 in Shanghai: the first check is on 2026-12-15, the quarter's last month.
NOVEMBER = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
WARNING_MARK = "规定会议提醒"


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        emu.add_user(DEPUTY, "王", "委员")
        emu.add_user(MEMBER, "张三")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.set_admins(GROUP, [DEPUTY], creator_id=SECRETARY)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(JANUARY)


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> AsyncIterator[BotHarness]:
    async with BotHarness(emulator, database_url, clock=clock) as harness:
        await join_group(emulator, harness)
        yield harness


async def join_group(emulator: BotAPIEmulator, bot: BotHarness) -> None:
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    await emulator.wait_for_call("getChatAdministrators")
    await bot.settle()


def texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [message.get("text", "") for message in emulator.sent_messages(chat_id)]


def warnings(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [text for text in texts(emulator, chat_id) if WARNING_MARK in text]


async def chat_row(bot: BotHarness) -> Chat:
    async with bot.app.db.transaction() as session:
        return await chat_service.get_chat(session, GROUP)


async def say(emulator: BotAPIEmulator, bot: BotHarness, text: str, user: int = DEPUTY) -> str:
    """Send ``text`` in the group and return the bot's last message there."""
    emulator.send_message(GROUP, user, text)
    await bot.settle()
    return texts(emulator, GROUP)[-1]


async def start_checks(bot: BotHarness, clock: FrozenClock) -> None:
    async with bot.app.db.transaction() as session:
        await schedule_service.ensure_routines_everywhere(
            session, clock.now(), default_language="zh", default_timezone="Asia/Shanghai"
        )


# ------------------------------------------------------------------------------------------ parsing


def test_parse_reminders() -> None:
    assert meeting_service.parse_reminders("1d,1h") == (1440, 60)
    assert meeting_service.parse_reminders("1天 1小时") == (1440, 60)
    assert meeting_service.parse_reminders("30m, 2h") == (120, 30)  # largest first
    assert meeting_service.parse_reminders("off") == ()
    for bad in ("3周", "1m", "8d", "1h,2h,3h,4h", ""):
        with pytest.raises(DomainError) as refused:
            meeting_service.parse_reminders(bad)
        assert refused.value.key == "meetings.bad_reminders", bad


def test_parse_rules() -> None:
    defaults = attendance_service.DEFAULT_RULES
    assert attendance_service.parse_rules("支委会=月 党课=季度 党小组会=关", defaults) == {
        "general": "quarter",
        "committee": "month",
        "lecture": "quarter",
    }
    assert attendance_service.parse_rules("committee=quarter theme=month", {}) == {
        "committee": "quarter",
        "theme_day": "month",
    }
    for bad, key in (
        ("支委会=每周", "meetings.bad_rules"),
        ("支委会", "meetings.bad_rules"),
        ("", "meetings.bad_rules"),
    ):
        with pytest.raises(DomainError) as refused:
            attendance_service.parse_rules(bad, defaults)
        assert refused.value.key == key, bad
    with pytest.raises(DomainError) as refused:
        attendance_service.parse_rules("读书会=月", defaults)
    assert refused.value.key == "meetings.unknown_kind"


def test_period_of() -> None:
    assert attendance_service.period_of(date(2027, 1, 15), "month") == (date(2027, 1, 1), date(2027, 2, 1))
    assert attendance_service.period_of(date(2026, 12, 15), "month") == (date(2026, 12, 1), date(2027, 1, 1))
    assert attendance_service.period_of(date(2027, 2, 28), "quarter") == (date(2027, 1, 1), date(2027, 4, 1))
    assert attendance_service.period_of(date(2026, 12, 31), "quarter") == (date(2026, 10, 1), date(2027, 1, 1))
    assert attendance_service.period_of(date(2026, 6, 1), "year") == (date(2026, 1, 1), date(2027, 1, 1))


def test_labels_in_both_languages() -> None:
    zh, en = Translator("zh"), Translator("en")
    assert reminders_label(zh, (1440, 60)) == "提前 1天、1小时"
    assert reminders_label(en, (1500, 30)) == "1d1h, 30min before"
    assert reminders_label(zh, ()) == "关闭"
    rules = {"lecture": "quarter", "committee": "month"}
    assert rules_label(zh, rules) == "支部委员会 每月 · 党课 每季度"  # in the order of meeting types
    assert rules_label(en, {}) == "none"


# ------------------------------------------------------------------------------------------ settings


async def test_panel_shows_meeting_settings_and_one_line_forms_change_them(emulator, bot) -> None:
    panel = await say(emulator, bot, "/settings")
    assert "提前 1天、1小时" in panel
    assert "支部党员大会 每季度 · 支部委员会 每月 · 党小组会 每月 · 党课 每季度" in panel

    reply = await say(emulator, bot, "/settings reminders 2h")
    assert "已保存" in reply and "提前 2小时" in reply
    assert (await chat_row(bot)).meeting_reminders == "120"

    reply = await say(emulator, bot, "/settings rules 支委会=关")
    assert "已保存" in reply and "支部委员会" not in reply
    assert (await chat_row(bot)).meeting_rules == "general=quarter,group=month,lecture=quarter"

    reply = await say(emulator, bot, "/settings 会议要求 主题党日=月 党课=年")
    assert "主题党日 每月" in reply and "党课 每年" in reply
    assert (await chat_row(bot)).meeting_rules == "general=quarter,group=month,lecture=year,theme_day=month"

    reply = await say(emulator, bot, "/settings 提醒 off")
    assert "会议提醒：关闭" in reply
    assert (await chat_row(bot)).meeting_reminders == ""


async def test_reminder_presets_by_button(emulator, bot) -> None:
    emulator.send_message(GROUP, DEPUTY, "/settings")
    await bot.settle()
    message_id = emulator.sent_messages(GROUP)[-1]["message_id"]
    emulator.press_button(GROUP, DEPUTY, message_id, "st:remindmenu:")
    await bot.settle()
    menu = emulator.message(GROUP, message_id)
    labels = [row[0]["text"] for row in menu["reply_markup"]["inline_keyboard"]]
    assert labels[:5] == ["提前 1天、1小时", "提前 1天", "提前 2小时", "提前 1天、2小时", "关闭"]

    emulator.press_button(GROUP, DEPUTY, message_id, "st:remind:3")
    await bot.settle()
    assert (await chat_row(bot)).meeting_reminders == "1440,120"
    assert "提前 1天、2小时" in emulator.message(GROUP, message_id)["text"]

    for forged in ("st:remind:5", "st:remind:-1", "st:remind:x"):
        emulator.press_button(GROUP, DEPUTY, message_id, forged, forged=True)
        await bot.settle()
    emulator.press_button(GROUP, MEMBER, message_id, "st:remindmenu:")
    await bot.settle()
    answers = emulator.calls_of("answerCallbackQuery")[-4:]
    assert all(call.ok and call.params.get("text") for call in answers)
    assert "仅限支部委员" in answers[-1].params["text"]
    assert (await chat_row(bot)).meeting_reminders == "1440,120"


async def test_bad_meeting_settings_are_refused_and_change_nothing(emulator, bot) -> None:
    reply = await say(emulator, bot, "/settings reminders 3周")
    assert "无法识别提醒时间" in reply and "3周" in reply
    reply = await say(emulator, bot, "/settings reminders 1m")  # under five minutes
    assert "无法识别提醒时间" in reply
    reply = await say(emulator, bot, "/settings rules 支委会=每周")
    assert "无法识别会议要求" in reply and "支委会=每周" in reply
    reply = await say(emulator, bot, "/settings rules <b>读书会</b>=月")
    assert "无法识别会议要求" in reply and "<b>读书会</b>" in reply  # echoed as text, not as markup
    reply = await say(emulator, bot, "/settings reminders 2h", user=MEMBER)
    assert "仅限支部委员" in reply
    reply = await say(emulator, bot, "/settings rules 支委会=关", user=MEMBER)
    assert "仅限支部委员" in reply
    chat = await chat_row(bot)
    assert (chat.meeting_reminders, chat.meeting_rules) == (None, None)


# ------------------------------------------------------------------------------------------ the check


async def test_mid_quarter_check_warns_the_secretary_of_monthly_meetings_once(emulator, bot, clock) -> None:
    emulator.send_message(SECRETARY, SECRETARY, "/start")
    await bot.settle()
    await start_checks(bot, clock)

    clock.set(datetime(2027, 1, 15, 0, 59, tzinfo=UTC))  # 08:59 in Shanghai: not yet
    await bot.settle()
    assert warnings(emulator, SECRETARY) == []

    clock.set(datetime(2027, 1, 15, 1, 0, 30, tzinfo=UTC))  # the 15th, 09:00 in Shanghai
    await bot.settle()
    [warning] = warnings(emulator, SECRETARY)
    assert "第一党支部" in warning and "/meeting" in warning
    assert "支部委员会（每月一次），截止 2027-01-31" in warning
    assert "党小组会（每月一次），截止 2027-01-31" in warning
    assert "党课" not in warning and "支部党员大会" not in warning  # the quarter ends in March
    assert warnings(emulator, GROUP) == [] and warnings(emulator, DEPUTY) == []  # the secretary only

    clock.advance(minutes=5)
    await bot.settle()
    assert len(warnings(emulator, SECRETARY)) == 1


async def test_last_month_of_quarter_adds_quarterly_meetings_and_a_planned_one_counts(emulator, bot, clock) -> None:
    clock.set(NOVEMBER)
    async with bot.app.db.transaction() as session:  # the check made when the bot joined (in January) goes
        await session.execute(delete(Schedule).where(Schedule.kind == attendance_service.COMPLIANCE))
    emulator.send_message(SECRETARY, SECRETARY, "/start")
    await bot.settle()
    await start_checks(bot, clock)
    async with bot.app.db.transaction() as session:
        chat = await chat_service.get_chat(session, GROUP)
        starts_at = datetime(2026, 12, 20, 11, 0, tzinfo=UTC)  # 19:00 in Shanghai
        session.add(
            Meeting(
                chat_id=chat.id,
                kind="committee",
                title="十二月支委会",
                starts_at=starts_at,
                ends_at=starts_at + timedelta(hours=2),
                place="会议室",
                status="scheduled",
                created_by=SECRETARY,
                created_at=clock.now(),
            )
        )

    clock.set(datetime(2026, 12, 15, 1, 0, 30, tzinfo=UTC))
    await bot.settle()
    [warning] = warnings(emulator, SECRETARY)
    assert "支部党员大会（每季度一次），截止 2026-12-31" in warning
    assert "党小组会（每月一次）" in warning and "党课（每季度一次）" in warning
    assert "支部委员会" not in warning  # planned for the 20th
    await bot.settle()
    assert len(warnings(emulator, SECRETARY)) == 1


async def test_group_is_warned_when_no_committee_member_started_the_bot(emulator, bot, clock) -> None:
    await say(emulator, bot, "/settings rules 支委会=关")
    await start_checks(bot, clock)
    clock.set(datetime(2027, 1, 15, 1, 0, 30, tzinfo=UTC))
    await bot.settle()
    [warning] = warnings(emulator, GROUP)
    assert "党小组会" in warning and "支部委员会" not in warning  # the group's own rules
