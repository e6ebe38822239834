"""The 先锋指数 through the emulator and the production Dispatcher: a seeded month whose figures are worked
out by hand (a late arrival, an approved leave, a member who joined mid-month, a component with nothing
to count), weights changed with /settings, refusals, the per-unit view and the private list."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from bot.i18n import Translator
from bot.services import chats as chat_service
from bot.services import organisation as org_service
from bot.services import people as people_service
from bot.services import vanguard as vanguard_service
from bot.services.clock import FrozenClock
from bot.services.errors import DomainError
from bot.services.people import Person
from bot.services.roster import RosterEntry
from bot.services.vanguard import GroupIndex, MemberScore
from handlers.vanguard import list_view
from storage.models import (
    Chat,
    ChatMember,
    Identity,
    Lesson,
    LessonPush,
    LessonStudy,
    Meeting,
    MeetingAnswer,
    MeetingSignIn,
    Notice,
    NoticeAck,
    NoticePost,
)
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP, SUBGROUP, OTHER_BRANCH = -1001234567081, -1001234567082, -1001234567083
SECRETARY, MEMBER_A, MEMBER_B, MEMBER_C, DEPUTY = 2601, 2602, 2603, 2604, 2605
SUB_E, SUB_F, OTHER_Z = 2611, 2612, 2621
ROOT = 9601  # a superuser, only to build the organisation tree
NOW = datetime(2027, 1, 20, 4, 0, tzinfo=UTC)  # Wednesday 2027-01-20 12:00 in Shanghai
NAMES = {SECRETARY: "李建国", MEMBER_A: "张三", MEMBER_B: "王五", MEMBER_C: "赵六"}


def local(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2027) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        emu.add_user(MEMBER_A, "小张")
        emu.add_user(MEMBER_B, "王五")
        emu.add_user(MEMBER_C, "小赵")
        emu.add_user(DEPUTY, "钱", "委员")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.set_admins(GROUP, [], creator_id=SECRETARY)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> AsyncIterator[BotHarness]:
    async with BotHarness(emulator, database_url, clock=clock) as harness:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await harness.settle()
        await emulator.wait_for_call("getChatAdministrators")
        for user_id in (SECRETARY, MEMBER_A, MEMBER_B, MEMBER_C):  # seen in the group: on the roster
            emulator.send_message(GROUP, user_id, "大家好")
        emulator.send_message(SECRETARY, SECRETARY, "/start")
        await harness.settle()
        yield harness


# ------------------------------------------------------------------------------------------ helpers


def texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [message.get("text", "") for message in emulator.sent_messages(chat_id)]


def buttons(message: dict) -> dict[str, str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return {button["text"]: button.get("callback_data") or button.get("url") for row in rows for button in row}


def button_data(message: dict, starts_with: str) -> str:
    found = [data for text, data in buttons(message).items() if text.startswith(starts_with)]
    assert found, f"no button {starts_with!r} in {list(buttons(message))}"
    return found[0]


def last_alert(emulator: BotAPIEmulator) -> str:
    return emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")


async def say(emulator: BotAPIEmulator, bot: BotHarness, text: str, user: int = SECRETARY) -> dict:
    emulator.send_message(GROUP, user, text)
    await bot.settle()
    return emulator.sent_messages(GROUP)[-1]


async def press(emulator, bot, chat_id: int, message: dict, starts_with: str, user: int = SECRETARY) -> dict:
    emulator.press_button(chat_id, user, message["message_id"], button_data(message, starts_with))
    await bot.settle()
    return emulator.message(chat_id, message["message_id"])


MEMBER_LINE = re.compile(r"^\d+\. (.+?)\s+(\S+)$")


def figures(text: str) -> dict[str, tuple[str, str]]:
    """The private list: name → (index, the line of components)."""
    lines = text.split("\n")
    found = {}
    for line, components in zip(lines, lines[1:], strict=False):
        match = MEMBER_LINE.match(line)
        if match:
            found[match.group(1)] = (match.group(2), components.strip())
    return found


async def chat_row(bot: BotHarness, telegram_id: int = GROUP) -> Chat:
    async with bot.app.db.transaction() as session:
        return await chat_service.get_chat(session, telegram_id)


def meeting(chat: Chat, kind: str, starts_at: datetime, status: str = "closed") -> Meeting:
    return Meeting(
        chat_id=chat.id,
        kind=kind,
        title=f"{kind} {starts_at.date()}",
        starts_at=starts_at,
        ends_at=starts_at + timedelta(hours=2),
        place="会议室",
        status=status,
        checkin_mode="button",
        checkin_opened_at=starts_at if status == "closed" else None,
        checkin_closed_at=starts_at + timedelta(hours=2) if status == "closed" else None,
        created_by=SECRETARY,
        created_at=starts_at - timedelta(days=3),
    )


async def add_notice(session, chat: Chat, at: datetime, acked_by: tuple[int, ...], *, delivered: bool = True) -> None:
    notice = Notice(
        author_id=SECRETARY,
        origin_chat_id=chat.id,
        kind="text",
        text=f"通知 {at.date()}",
        status="published",
        published_at=at if delivered else at - timedelta(days=5),
        send_at=None if delivered else at,
        created_at=at,
    )
    session.add(notice)
    await session.flush()
    post = NoticePost(
        notice_id=notice.id,
        chat_id=chat.id,
        message_id=90000 + notice.id if delivered else None,
        shown_acks=len(acked_by),
    )
    session.add(post)
    await session.flush()
    session.add_all(
        NoticeAck(post_id=post.id, user_id=user_id, acked_at=at + timedelta(hours=1)) for user_id in acked_by
    )


async def add_push(session, chat: Chat, day: date, studied_by: tuple[int, ...]) -> None:
    lesson = Lesson(chat_id=chat.id, position=day.toordinal(), title=f"第{day}课", body="内容", source="党章")
    session.add(lesson)
    await session.flush()
    at = datetime(day.year, day.month, day.day, 20, tzinfo=SHANGHAI)
    push = LessonPush(chat_id=chat.id, lesson_id=lesson.id, pushed_on=day, message_id=80000 + lesson.id, created_at=at)
    session.add(push)
    await session.flush()
    session.add_all(LessonStudy(push_id=push.id, user_id=user_id, studied_at=at) for user_id in studied_by)


async def set_first_seen(session, chat: Chat, seen: dict[int, datetime]) -> None:
    for user_id, at in seen.items():
        await session.execute(
            update(ChatMember)
            .where(ChatMember.chat_id == chat.id, ChatMember.user_id == user_id)
            .values(first_seen_at=at)
        )


def identity(user_id: int, chat: Chat, name: str, status: str) -> Identity:
    return Identity(
        user_id=user_id,
        chat_id=chat.id,
        real_name=name,
        member_type="full",
        duty_post="车间主任",
        pledge="带头攻坚",
        status=status,
        submitted_at=local(1, 2, year=2026),
    )


async def seed_month(bot: BotHarness) -> Chat:
    """December 2026 and January 2027 in the group (see the figures in the tests below).

    * the secretary, 张三 and 王五 were there from 1 December; 赵六 was first seen on 16 January.
    * meetings: 5 Jan (secretary and 张三 on time, 王五 late), 15 Jan (secretary on time, 张三 on an
      approved leave, 王五 absent, 赵六 not yet there), one cancelled and one still to come; none in December.
    * notices: 3 Jan (secretary, 张三), 12 Jan (secretary), 18 Jan (secretary, 张三, 赵六), one scheduled
      for 25 Jan; 20 Dec (secretary, 张三).
    * lessons: 2, 9, 16, 19 Jan (secretary all; 张三 2 and 9; 王五 16; 赵六 19); 28 Dec (secretary).
    * 亮身份: secretary verified, 张三 pending, 王五 none, 赵六 verified.
    """
    async with bot.app.db.transaction() as session:
        chat = await chat_service.get_chat(session, GROUP)
        december = local(12, 1, year=2026)
        seen = {SECRETARY: december, MEMBER_A: december, MEMBER_B: december, MEMBER_C: local(1, 16, 10)}
        await set_first_seen(session, chat, seen)
        session.add_all(
            [
                identity(SECRETARY, chat, NAMES[SECRETARY], "verified"),
                identity(MEMBER_A, chat, NAMES[MEMBER_A], "pending"),
                identity(MEMBER_C, chat, NAMES[MEMBER_C], "verified"),
            ]
        )
        first = meeting(chat, "general", local(1, 5, 19))
        second = meeting(chat, "group", local(1, 15, 19))
        cancelled = meeting(chat, "lecture", local(1, 8, 19), status="cancelled")
        coming = meeting(chat, "theme_day", local(1, 25, 19), status="scheduled")
        session.add_all([first, second, cancelled, coming])
        await session.flush()

        def signed(item: Meeting, user_id: int, minutes: int, late: bool = False) -> MeetingSignIn:
            at = item.starts_at + timedelta(minutes=minutes)
            return MeetingSignIn(meeting_id=item.id, user_id=user_id, signed_at=at, late=late, method="button")

        session.add_all(
            [
                signed(first, SECRETARY, 0),
                signed(first, MEMBER_A, 5),
                signed(first, MEMBER_B, 40, late=True),
                signed(second, SECRETARY, 0),
                signed(cancelled, MEMBER_B, 0),  # a cancelled meeting counts for nobody
                MeetingAnswer(
                    meeting_id=second.id,
                    user_id=MEMBER_A,
                    answer="leave",
                    reason="出差",
                    leave_status="approved",
                    reviewed_by=SECRETARY,
                    answered_at=local(1, 14),
                ),
            ]
        )
        await add_notice(session, chat, local(1, 3, 10), (SECRETARY, MEMBER_A))
        await add_notice(session, chat, local(1, 12, 10), (SECRETARY,))
        await add_notice(session, chat, local(1, 18, 10), (SECRETARY, MEMBER_A, MEMBER_C))
        await add_notice(session, chat, local(1, 25, 10), (), delivered=False)
        await add_notice(session, chat, local(12, 20, 10, year=2026), (SECRETARY, MEMBER_A))
        await add_push(session, chat, date(2027, 1, 2), (SECRETARY, MEMBER_A))
        await add_push(session, chat, date(2027, 1, 9), (SECRETARY, MEMBER_A))
        await add_push(session, chat, date(2027, 1, 16), (SECRETARY, MEMBER_B))
        await add_push(session, chat, date(2027, 1, 19), (SECRETARY, MEMBER_C))
        await add_push(session, chat, date(2026, 12, 28), (SECRETARY,))
        return chat


# ------------------------------------------------------------------------------------------ weights


def test_parse_weights() -> None:
    defaults = vanguard_service.DEFAULT_WEIGHTS
    assert vanguard_service.parse_weights("出勤=40 回执=20 学习=30 亮身份=10", {}) == defaults
    assert vanguard_service.parse_weights("学习=50，出勤：0", defaults) == {
        "attendance": 0,
        "acks": 20,
        "learning": 50,
        "identity": 10,
    }
    assert vanguard_service.parse_weights("attendance=10 acks=10 learning=10 identity=70%", defaults) == {
        "attendance": 10,
        "acks": 10,
        "learning": 10,
        "identity": 70,
    }
    assert vanguard_service.parse_weights("默认", defaults) is None
    for bad in ("出勤=120", "出勤", "体育=10", "出勤=-1", "出勤=4.5", "出勤=", ""):
        with pytest.raises(DomainError) as refused:
            vanguard_service.parse_weights(bad, defaults)
        assert refused.value.key == "vanguard.bad_weights", bad
    with pytest.raises(DomainError) as refused:
        vanguard_service.parse_weights("出勤=0 回执=0 学习=0 亮身份=0", defaults)
    assert refused.value.key == "vanguard.weights_all_zero"


def test_stored_weights_and_the_index_formula() -> None:
    chat = Chat(vanguard_weights="attendance=0,acks=20,learning=50,identity=10")
    assert vanguard_service.weights_of(chat) == {"attendance": 0, "acks": 20, "learning": 50, "identity": 10}
    assert vanguard_service.weights_of(Chat(vanguard_weights=None)) == vanguard_service.DEFAULT_WEIGHTS
    assert vanguard_service.weights_of(Chat(vanguard_weights="junk")) == vanguard_service.DEFAULT_WEIGHTS
    weights = vanguard_service.DEFAULT_WEIGHTS
    rates = {"attendance": None, "acks": 1.0, "learning": 0.5, "identity": 1.0}
    assert vanguard_service.score_of(rates, weights) == pytest.approx(75.0)  # (20 + 15 + 10) / 60
    assert (
        vanguard_service.score_of(
            {"attendance": None, "acks": None, "learning": None, "identity": 1.0},
            {
                **weights,
                "identity": 0,
            },
        )
        is None
    )
    assert [vanguard_service.round_half_up(value) for value in (17.5, 62.5, 66.458, 0.0)] == [18, 63, 66, 0]


def test_a_long_list_is_paged_below_telegrams_limit() -> None:
    t = Translator("zh")
    period = vanguard_service.period_of(NOW, SHANGHAI)
    members = [
        MemberScore(
            RosterEntry(5000 + n, "很长很长的名字" * 10 + "<b>", None, "verified", "full", None, False),
            {"attendance": 0.5, "acks": 1.0, "learning": None, "identity": 1.0},
            70.0,
        )
        for n in range(45)
    ]
    report = GroupIndex(Chat(id=1, title="第一党支部" * 30), period, dict(vanguard_service.DEFAULT_WEIGHTS), members)
    pages = [list_view(t, report, page) for page in range(4)]
    assert all(len(text) < 4096 for text, _ in pages)
    assert "第 1/3 页" in pages[0][0] and "第 3/3 页" in pages[2][0]
    assert pages[3][0] == pages[2][0]  # a page past the end shows the last one
    assert "&lt;b&gt;" not in pages[0][0] and "…" in pages[0][0]  # names are cut before they are escaped
    assert [button["text"] for button in pages[0][1].model_dump()["inline_keyboard"][0]] == ["›"]
    assert [button["text"] for button in pages[1][1].model_dump()["inline_keyboard"][0]] == ["‹", "›"]


# ------------------------------------------------------------------------------------------ the seeded month


async def test_seeded_month_matches_the_figures_worked_out_by_hand(emulator, bot) -> None:
    await seed_month(bot)
    reply = await say(emulator, bot, "/vanguard")
    text = reply["text"]
    # Attendance: 李 2/2, 张三 1/1 (the leave excused), 王五 (½ + 0)/2, 赵六 none (came after both).
    # Acks: 李 3/3, 张三 2/3, 王五 0/3, 赵六 1/1 (only the notice after he came; the scheduled one not out).
    # Learning: 李 4/4, 张三 2/4, 王五 1/4, 赵六 1/2 (the pushes from 16 Jan). 亮身份: 1, 0.5, 0, 1.
    # Index (40/20/30/10): 李 100; 张三 40 + 13.33 + 15 + 5 = 73.3; 王五 10 + 0 + 7.5 + 0 = 17.5;
    # 赵六 without attendance: (20 + 15 + 10) / 60 = 75. Average 66.46.
    assert "2027年1月1–20日 · 4 人" in text and "平均 66" in text
    assert "出勤 75% · 回执 67% · 学习 56% · 亮身份 63%" in text
    assert "权重：出勤 40 · 回执 20 · 学习 30 · 亮身份 10" in text
    assert "已私信" in text
    assert not any(name in text for name in NAMES.values())  # no names in the group

    private = emulator.sent_messages(SECRETARY)[-1]["text"]
    assert "每人明细" in private and "平均 66" in private
    assert figures(private) == {
        "李建国": ("100", "出勤 100% · 回执 100% · 学习 100% · 亮身份 100%"),
        "赵六": ("75", "出勤 — · 回执 100% · 学习 50% · 亮身份 100%"),
        "张三": ("73", "出勤 100% · 回执 67% · 学习 50% · 亮身份 50%"),
        "王五": ("18", "出勤 25% · 回执 0% · 学习 25% · 亮身份 0%"),
    }
    assert list(figures(private)) == ["李建国", "赵六", "张三", "王五"]  # best first
    assert "迟到按 50% 出勤计" in private

    # Last month: no meeting was held, so attendance is left out and the rest renormalised; 赵六 was not
    # there yet. 李 100; 张三 (20 + 0 + 5) / 60 = 41.7; 王五 0. Average 47.2.
    reply = await press(emulator, bot, GROUP, reply, "上月")
    assert "2026年12月 · 3 人" in reply["text"] and "平均 47" in reply["text"]
    assert "出勤 — · 回执 67% · 学习 33% · 亮身份 50%" in reply["text"]
    assert "没有可计的出勤" in reply["text"] and "按比例折算" in reply["text"]
    assert button_data(reply, "✅ 上月")

    # The private list switches month by its own buttons.
    private = emulator.sent_messages(SECRETARY)[-1]
    private = await press(emulator, bot, SECRETARY, private, "上月")
    assert figures(private["text"]) == {
        "李建国": ("100", "出勤 — · 回执 100% · 学习 100% · 亮身份 100%"),
        "张三": ("42", "出勤 — · 回执 100% · 学习 0% · 亮身份 50%"),
        "王五": ("0", "出勤 — · 回执 0% · 学习 0% · 亮身份 0%"),
    }

    # The service agrees, in English too.
    async with bot.app.db.transaction() as session:
        chat = await chat_service.get_chat(session, GROUP)
        report = await vanguard_service.group_index(session, chat, NOW, SHANGHAI)
    scores = {member.entry.user_id: member.score for member in report.members}
    assert scores == pytest.approx({SECRETARY: 100, MEMBER_A: 73.333333, MEMBER_B: 17.5, MEMBER_C: 75})
    assert report.left_out == [] and report.partly_counted
    assert "average <b>66</b>" in list_view(Translator("en"), report)[0]


async def test_weights_set_in_settings_change_the_figures(emulator, bot) -> None:
    await seed_month(bot)
    reply = await say(emulator, bot, "/settings vanguard 出勤=0 学习=50")
    assert "已保存" in reply["text"] and "先锋指数权重：出勤 0 · 回执 20 · 学习 50 · 亮身份 10" in reply["text"]
    assert (await chat_row(bot)).vanguard_weights == "attendance=0,acks=20,learning=50,identity=10"

    panel = await say(emulator, bot, "/settings")
    assert "先锋指数权重：出勤 0 · 回执 20 · 学习 50 · 亮身份 10" in panel["text"]

    # Out of 80: 张三 13.33 + 25 + 5 = 43.3 → 54; 王五 12.5 → 16; 赵六 20 + 25 + 10 = 55 → 69.
    reply = await say(emulator, bot, "/vanguard")
    assert "平均 60" in reply["text"] and "权重：出勤 0 · 回执 20 · 学习 50 · 亮身份 10" in reply["text"]
    assert {name: index for name, (index, _) in figures(emulator.sent_messages(SECRETARY)[-1]["text"]).items()} == {
        "李建国": "100",
        "赵六": "69",
        "张三": "54",
        "王五": "16",
    }

    reply = await say(emulator, bot, "/settings 先锋指数 默认")
    assert "出勤 40 · 回执 20 · 学习 30 · 亮身份 10" in reply["text"]
    assert (await chat_row(bot)).vanguard_weights is None


async def test_bad_weights_are_refused_and_change_nothing(emulator, bot) -> None:
    await say(emulator, bot, "/settings vanguard 学习=50")
    for line, expected in (
        ("/settings vanguard 出勤=120", "无法识别权重「出勤=120」"),
        ("/settings vanguard 出勤 40", "无法识别权重「出勤」"),
        ("/settings vanguard 体育=10", "无法识别权重「体育=10」"),
        ("/settings vanguard <b>出勤</b>=1", "无法识别权重「<b>出勤</b>=1」"),  # echoed as text, not markup
        ("/settings vanguard 出勤=0 回执=0 学习=0 亮身份=0", "不能全为 0"),
        ("/settings vanguard", "无法识别权重"),
    ):
        reply = await say(emulator, bot, line)
        assert expected in reply["text"], (line, reply["text"])
        assert "已保存" not in reply["text"]
    reply = await say(emulator, bot, "/settings vanguard 出勤=10", user=MEMBER_A)
    assert "仅限支部委员" in reply["text"]
    assert (await chat_row(bot)).vanguard_weights == "attendance=40,acks=20,learning=50,identity=10"


# ------------------------------------------------------------------------------------------ who may see it


async def test_members_are_refused_and_forged_buttons_change_nothing(emulator, bot) -> None:
    await seed_month(bot)
    reply = await say(emulator, bot, "/vanguard", user=MEMBER_A)
    assert "仅限支部委员" in reply["text"] and "平均" not in reply["text"]
    assert texts(emulator, MEMBER_A) == []

    reply = await say(emulator, bot, "/vanguard")
    before = reply["text"]
    chat_pk = (await chat_row(bot)).id
    for label in ("上月", "🏢", "📋"):
        emulator.press_button(GROUP, MEMBER_A, reply["message_id"], button_data(reply, label))
        await bot.settle()
        assert "仅限支部委员" in last_alert(emulator)
    for forged in (f"vg:g:{chat_pk + 1}:0:0", f"vg:g:{chat_pk}:5:0", f"vg:x:{chat_pk}:0:0", f"vg:m:{chat_pk}:0:-1"):
        emulator.press_button(GROUP, SECRETARY, reply["message_id"], forged, forged=True)
        await bot.settle()
        assert "已失效" in last_alert(emulator), forged
    assert emulator.message(GROUP, reply["message_id"])["text"] == before
    assert texts(emulator, MEMBER_A) == []

    # In private the group's key is in the button, so the role is checked on that group.
    emulator.send_message(MEMBER_A, MEMBER_A, f"/start vg_{chat_pk}_0")
    await bot.settle()
    [refusal] = texts(emulator, MEMBER_A)
    assert "仅限支部委员" in refusal
    message_id = emulator.sent_messages(MEMBER_A)[-1]["message_id"]
    emulator.press_button(MEMBER_A, MEMBER_A, message_id, f"vg:m:{chat_pk}:0:0", forged=True)
    await bot.settle()
    assert "仅限支部委员" in last_alert(emulator)
    assert not any(name in text for text in texts(emulator, MEMBER_A) for name in ("李建国", "王五"))


async def test_names_reach_a_committee_member_who_had_not_started_the_bot(emulator, bot) -> None:
    await seed_month(bot)
    emulator.set_admins(GROUP, [DEPUTY], creator_id=SECRETARY)
    await say(emulator, bot, "/sync", user=DEPUTY)
    chat_pk = (await chat_row(bot)).id

    reply = await say(emulator, bot, "/vanguard", user=DEPUTY)
    assert "私聊" in reply["text"] and texts(emulator, DEPUTY) == []
    link = buttons(reply)["📋 私聊查看名单"]
    assert link.endswith(f"?start=vg_{chat_pk}_0")

    emulator.press_button(GROUP, DEPUTY, reply["message_id"], button_data(reply, "📋 名单"))
    await bot.settle()
    assert emulator.calls_of("answerCallbackQuery")[-1].params.get("url", "").endswith(f"start=vg_{chat_pk}_0")

    emulator.send_message(DEPUTY, DEPUTY, f"/start vg_{chat_pk}_0")
    await bot.settle()
    private = emulator.sent_messages(DEPUTY)[-1]
    assert "每人明细" in private["text"] and figures(private["text"])["张三"][0] == "73"

    # Now that the deputy has started the bot, the group's button sends the list (last month's) privately.
    reply = await press(emulator, bot, GROUP, reply, "上月", user=DEPUTY)
    emulator.press_button(GROUP, DEPUTY, reply["message_id"], button_data(reply, "📋 名单"))
    await bot.settle()
    assert "私信" in last_alert(emulator)
    private = emulator.sent_messages(DEPUTY)[-1]["text"]
    assert "2026年12月" in private and figures(private)["张三"][0] == "42"
    assert not any(name in emulator.message(GROUP, reply["message_id"])["text"] for name in NAMES.values())


# ------------------------------------------------------------------------------------------ per unit


async def build_units(bot: BotHarness) -> None:
    """综合党委 → 支部A (this group) → 第一党小组 (SUBGROUP); 综合党委 → 支部B (OTHER_BRANCH)."""
    superusers = frozenset({ROOT})
    async with bot.app.db.transaction() as session:
        await people_service.remember_person(session, Person(ROOT, "管理员"), NOW)
        top = await org_service.create_unit(
            session, ROOT, superusers, name="园区综合党委", kind="committee", parent_id=None
        )
        branch = await org_service.create_unit(session, ROOT, superusers, name="支部A", kind="branch", parent_id=top.id)
        team = await org_service.create_unit(
            session, ROOT, superusers, name="第一党小组", kind="group", parent_id=branch.id
        )
        other = await org_service.create_unit(session, ROOT, superusers, name="支部B", kind="branch", parent_id=top.id)
        (await chat_service.get_chat(session, GROUP)).unit_id = branch.id
        for telegram_id, title, unit, people in (
            (SUBGROUP, "第一党小组群", team, (SUB_E, SUB_F)),
            (OTHER_BRANCH, "支部B群", other, (OTHER_Z,)),
        ):
            chat = (await chat_service.register_chat(session, telegram_id, "supergroup", title)).chat
            chat.unit_id = unit.id
            await session.flush()
            for user_id in people:
                await people_service.remember_person(session, Person(user_id, f"党员{user_id}"), NOW)
                session.add(
                    ChatMember(
                        chat_id=chat.id,
                        user_id=user_id,
                        status="member",
                        first_seen_at=local(12, 1, year=2026),
                        last_seen_at=NOW,
                    )
                )
            await session.flush()
            if telegram_id == SUBGROUP:
                # E: verified, did not study the one lesson → (0·30 + 1·10) / 40 = 25; F: studied it,
                # no 亮身份 → 30 / 40 = 75. The group's average: 50.
                session.add(identity(SUB_E, chat, "党员E", "verified"))
                await add_push(session, chat, date(2027, 1, 10), (SUB_F,))
            else:
                await add_push(session, chat, date(2027, 1, 10), (OTHER_Z,))


async def test_unit_view_lists_the_groups_of_the_unit_and_below(emulator, bot) -> None:
    await seed_month(bot)
    reply = await say(emulator, bot, "/vanguard")
    emulator.press_button(GROUP, SECRETARY, reply["message_id"], button_data(reply, "🏢"))
    await bot.settle()
    assert "/bind" in last_alert(emulator) and "没有绑定" in last_alert(emulator)

    await build_units(bot)
    view = await press(emulator, bot, GROUP, reply, "🏢")
    text = view["text"]
    assert "本单位先锋指数 ·「支部A」" in text and "2027年1月1–20日" in text
    # Over the six members of both groups: (100 + 73.3 + 17.5 + 75 + 25 + 75) / 6 = 61.
    assert "单位平均 61（2 个群 · 6 人）" in text
    assert "· 支部A｜第一党支部：66（4 人）" in text
    assert "· 第一党小组｜第一党小组群：50（2 人）" in text
    assert "支部B" not in text  # a sibling branch is not below this group's unit
    assert not any(name in text for name in NAMES.values())

    view = await press(emulator, bot, GROUP, view, "« 本群")
    assert "平均 66" in view["text"]

    # From the private list as well.
    private = emulator.sent_messages(SECRETARY)[-1]
    private = await press(emulator, bot, SECRETARY, private, "🏢")
    assert "· 第一党小组｜第一党小组群：50（2 人）" in private["text"]
    assert "« 本群" not in buttons(private)
