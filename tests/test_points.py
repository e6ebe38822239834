"""Points, streaks and the 学习达人榜: the arithmetic on its own, then a simulated month through the
emulator (daily pushes, 已学, quizzes, a notice, a member catching up past the cap, one who hides their
name), the boards posted on schedule exactly once, the unit's board, and refusals."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from bot.services import points as points_service
from bot.services.clock import FrozenClock
from bot.services.points import Tally
from storage import points as points_store
from storage.models import (
    Chat,
    ChatMember,
    Lesson,
    LessonPush,
    LessonStudy,
    Meeting,
    MeetingSignIn,
    Notice,
    NoticeAck,
    NoticePost,
    Schedule,
    Unit,
    User,
)
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP, OTHER_GROUP, NEW_GROUP = -1001234567088, -1001234567099, -1001234567111
OLD_BASIC_GROUP = -4500001
SECRETARY, ALICE, BOB, CAROL, DAVE = 2001, 3001, 3002, 3003, 3004


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


# ------------------------------------------------------------------------------------------ arithmetic


def test_each_kind_is_capped_per_local_day_and_one_thing_earns_once() -> None:
    day = date(2026, 12, 1)
    events = [(ALICE, "study", local(day, 20, n), n) for n in range(5)]  # five lessons in one evening
    events += [(ALICE, "study", local(day, 23, 59), 5), (ALICE, "study", local(day + timedelta(days=1), 0, 1), 6)]
    events += [(ALICE, "ack", local(day, 9, n), 10 + n) for n in range(4)]
    events += [(BOB, "sign_in", local(day, 19), 1), (BOB, "quiz", local(day, 20), 1)]
    tallies = points_service.tally(events, SHANGHAI)
    # studies: 2 on the 1st (cap) + 1 just after midnight, the 2nd; acks: 3 of 4
    assert tallies[ALICE] == Tally(points=3 * 2 + 3 * 1, by_kind={"study": 3, "ack": 3})
    assert tallies[BOB].points == 3 + 1
    # The group's zone decides the day: 07:00 and 09:00 in Shanghai are one day there, two in UTC.
    mixed = [(ALICE, "study", local(day, 7, 0), 1), (ALICE, "study", local(day, 9, 0), 2)]
    mixed.append((ALICE, "study", local(day, 9, 1), 3))
    assert points_service.tally(mixed, SHANGHAI)[ALICE].points == 4
    assert points_service.tally(mixed, ZoneInfo("UTC"))[ALICE].points == 6
    # A sample-pack lesson or a broadcast reaching two of the member's groups is still one.
    twice = [(ALICE, "study", local(day, 20), 7), (ALICE, "study", local(day, 20, 1), 7)]
    twice += [(ALICE, "ack", local(day, 9), 3), (ALICE, "ack", local(day, 9, 2), 3)]
    assert points_service.tally(twice, SHANGHAI)[ALICE].points == 2 + 1


def test_a_posted_board_is_of_the_period_it_closes() -> None:
    sunday_evening = local(date(2026, 12, 6), 20)
    assert points_service.posted_period("week", sunday_evening, SHANGHAI) == (date(2026, 11, 30), sunday_evening)
    monday_morning = local(date(2026, 12, 7), 9)  # last week's, counted to its end
    assert points_service.posted_period("week", monday_morning, SHANGHAI) == (
        date(2026, 11, 30),
        local(date(2026, 12, 7), 0),
    )
    last_evening = local(date(2026, 12, 31), 20)
    assert points_service.posted_period("month", last_evening, SHANGHAI) == (date(2026, 12, 1), last_evening)


def test_streaks_count_consecutive_days_and_today_is_not_over() -> None:
    today = date(2026, 12, 20)
    days = {date(2026, 12, d) for d in (*range(1, 11), *range(12, 20))}  # a gap on the 11th; not yet today
    assert points_service.streaks(days, today) == (8, 10)
    assert points_service.streaks(days | {today}, today) == (9, 10)
    assert points_service.streaks(days - {date(2026, 12, 19)}, today) == (0, 10)
    assert points_service.streaks(set(), today) == (0, 0)


def test_equal_points_share_a_place() -> None:
    users = [
        User(id=uid, first_name=name, rank_hidden=uid == CAROL)
        for uid, name in ((1, "甲"), (2, "乙"), (3, "丙"), (CAROL, "丁"))
    ]
    tallies = {1: Tally(9), 2: Tally(7), 3: Tally(7), CAROL: Tally(5), 99: Tally(50)}  # 99 left the group
    standings = points_service.rank(tallies, users)
    assert [(row.rank, row.user_id, row.points) for row in standings] == [
        (1, 1, 9),
        (2, 2, 7),
        (2, 3, 7),
        (4, CAROL, 5),
    ]
    assert standings[-1].hidden


def test_periods_are_weeks_from_monday_and_calendar_months() -> None:
    moment = local(date(2026, 12, 6), 20)  # a Sunday evening
    assert points_service.period_bounds("week", moment, SHANGHAI) == (date(2026, 11, 30), date(2026, 12, 6))
    assert points_service.period_bounds("month", moment, SHANGHAI) == (date(2026, 12, 1), date(2026, 12, 31))


# ------------------------------------------------------------------------------------------ through the emulator


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        for user_id, name in ((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol"), (DAVE, "Dave")):
            emu.add_user(user_id, name)
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.add_chat(OTHER_GROUP, "supergroup", "第二党支部")
        emu.set_admins(GROUP, [], creator_id=SECRETARY)
        emu.set_admins(OTHER_GROUP, [], creator_id=SECRETARY)
        yield emu


def harness(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> BotHarness:
    return BotHarness(emulator, database_url, clock=clock, group_messages_per_minute=1200)


def last(emulator: BotAPIEmulator, chat_id: int) -> dict:
    return emulator.sent_messages(chat_id)[-1]


def button(message: dict, starts_with: str) -> str:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    found = [b["callback_data"] for row in rows for b in row if b["text"].lstrip("· ").startswith(starts_with)]
    assert found, f"no {starts_with!r} in {rows}"
    return found[0]


def last_alert(emulator: BotAPIEmulator) -> str:
    return emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")


async def press(emulator, bot, chat_id: int, user_id: int, message: dict, starts_with: str) -> dict:
    emulator.press_button(chat_id, user_id, message["message_id"], button(message, starts_with))
    await bot.settle()
    return emulator.message(chat_id, message["message_id"])


def boards(emulator: BotAPIEmulator, chat_id: int = GROUP) -> list[str]:
    """The boards posted on schedule (not the answers to /rank)."""
    return [m["text"] for m in emulator.sent_messages(chat_id) if re.match(r"🏆 学习达人[周月]榜", m.get("text") or "")]


def lessons_file(count: int) -> str:
    entries = [
        f"---\ntitle: 第{n}课\nsource: 支部学习材料\nquiz:\n  question: 第{n}课学完了吗？\n"
        f"  options: [学完了, 没学完]\n  answer: 学完了\n---\n第{n}课的正文。\n"
        for n in range(1, count + 1)
    ]
    return "".join(entries)


async def chat_pk(bot: BotHarness, telegram_id: int) -> int:
    async with bot.app.db.transaction() as session:
        return await session.scalar(select(Chat.id).where(Chat.telegram_id == telegram_id))


async def a_group_learning_daily(emulator: BotAPIEmulator, bot: BotHarness) -> None:
    """The group with three members who started the bot, a month of lessons (each with a quiz), and the
    push on every day at 20:00."""
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    for user_id in (SECRETARY, ALICE, BOB, CAROL):
        emulator.send_message(user_id, user_id, "/start")
        emulator.send_message(GROUP, user_id, "大家好")
    await bot.settle()
    emulator.send_message(SECRETARY, SECRETARY, f"/start lsn_{await chat_pk(bot, GROUP)}")
    await bot.settle()
    emulator.send_document(SECRETARY, SECRETARY, "一个月的课.md", lessons_file(31).encode())
    await bot.settle()
    assert "已导入 31 课" in last(emulator, SECRETARY)["text"]
    emulator.send_message(GROUP, SECRETARY, "/lessons")
    await bot.settle()
    panel = last(emulator, GROUP)
    menu = await press(emulator, bot, GROUP, SECRETARY, panel, "⏰")
    assert "每日推送：每天 20:00" in (await press(emulator, bot, GROUP, SECRETARY, menu, "每天 20:00"))["text"]


async def live_one_evening(emulator: BotAPIEmulator, bot: BotHarness, clock: FrozenClock, day: date) -> None:
    """20:00 the lesson and its quiz; 20:05 who studies and answers. Alice studies daily but on the 11th
    and answers right; Bob studies the first five days (answering the first quiz wrong) and catches up
    four lessons on the 10th, of which two count; Carol studies the first three days."""
    clock.set(local(day, 20))
    await bot.settle()
    post = [m for m in emulator.sent_messages(GROUP) if (m.get("text") or "").startswith("📖")][-1]
    assert f"第{day.day}课" in post["text"]
    poll_id = [m for m in emulator.sent_messages(GROUP) if m.get("poll")][-1]["poll"]["id"]
    clock.set(local(day, 20, 5))
    if day.day != 11:
        emulator.press_button(GROUP, ALICE, post["message_id"], button(post, "✅ 已学"))
        emulator.poll_answer(poll_id, ALICE, [0])
    if day.day <= 5:
        emulator.press_button(GROUP, BOB, post["message_id"], button(post, "✅ 已学"))
    if day.day == 1:
        emulator.poll_answer(poll_id, BOB, [1])
    if day.day <= 3:
        emulator.press_button(GROUP, CAROL, post["message_id"], button(post, "✅ 已学"))
    await bot.settle()
    if day.day == 10:
        clock.set(local(day, 21))
        for _ in range(4):
            emulator.send_message(BOB, BOB, "/lesson")
            await bot.settle()
            await press(emulator, bot, BOB, BOB, last(emulator, BOB), "✅ 已学")
    if day.day == 2:  # a notice, confirmed by Alice and Bob
        emulator.send_message(GROUP, SECRETARY, "/notice 本周五交党费。")
        await bot.settle()
        post = await press(emulator, bot, GROUP, SECRETARY, last(emulator, GROUP), "📤")
        notice = [m for m in emulator.sent_messages(GROUP) if "📢" in (m.get("text") or "")][-1]
        for user_id in (ALICE, BOB):
            emulator.press_button(GROUP, user_id, notice["message_id"], button(notice, "✅"))
        await bot.settle()


async def test_a_month_of_learning(emulator, database_url) -> None:
    clock = FrozenClock(local(date(2026, 11, 30), 10))  # a Monday
    december = [date(2026, 12, d) for d in range(1, 32)]
    async with harness(emulator, database_url, clock) as bot:
        await a_group_learning_daily(emulator, bot)
        # Carol chooses, in private, not to be named; Bob cannot press her card in the group.
        emulator.send_message(CAROL, CAROL, "/me")
        await bot.settle()
        card = await press(emulator, bot, CAROL, CAROL, last(emulator, CAROL), "🙈")
        assert "不显示你的名字" in card["text"] and "不再显示" in last_alert(emulator)
        emulator.send_message(GROUP, CAROL, "/me")
        await bot.settle()
        card = last(emulator, GROUP)
        assert "📊 我的学习 · 第一党支部" in card["text"] and "未上榜" in card["text"]
        await press(emulator, bot, GROUP, BOB, card, "👤")
        assert "别人的积分卡" in last_alert(emulator)
        async with bot.app.db.transaction() as session:
            assert [user.id for user in await session.scalars(select(User).where(User.rank_hidden))] == [CAROL]

        for day in december[:12]:
            await live_one_evening(emulator, bot, clock, day)
            if day == date(2026, 12, 6):
                assert len(boards(emulator)) == 1
                board = boards(emulator)[0]
                assert "学习达人周榜（11-30 至 12-06）" in board
                assert re.search(r"🥇 Alice · 16 分\n🥈 Bob · 11 分\n🥉 （未署名） · 6 分", board), board
                assert "Carol" not in board
    # A week with a restart every evening, Sunday the 13th included: each push and board once.
    for day in december[12:19]:
        async with harness(emulator, database_url, clock) as bot:
            await live_one_evening(emulator, bot, clock, day)
            if day == date(2026, 12, 13):
                assert len(boards(emulator)) == 2
                assert re.search(r"🥇 Alice · 15 分\n🥈 Bob · 4 分\n共 2 人得分", boards(emulator)[1]), boards(
                    emulator
                )[1]
    async with harness(emulator, database_url, clock) as bot:
        for day in december[19:]:
            await live_one_evening(emulator, bot, clock, day)
        posted = boards(emulator)
        assert len(posted) == 5  # Sundays 6, 13, 20, 27, and the month on the 31st
        month = posted[-1]
        assert "学习达人月榜（12-01 至 12-31）" in month
        # Alice: 29 evenings (not the 11th, not the 31st yet) × (2 + 1) + 1 notice; Bob: 5 × 2 + 2 × 2 + 1
        assert re.search(r"🥇 Alice · 88 分\n🥈 Bob · 15 分\n🥉 （未署名） · 6 分", month), month

        emulator.send_message(GROUP, ALICE, "/me")
        await bot.settle()
        mine = last(emulator, GROUP)["text"]
        assert "本周：12 分，第 1 名" in mine and "本月：91 分，第 1 名" in mine, mine
        assert "连续学习 20 天（最长 20 天）" in mine
        assert "今日已计分：已学 1/2 · 答对 1/2 · 准时签到 0/2 · 确认通知 0/3" in mine
        emulator.send_message(BOB, BOB, "/me")
        await bot.settle()
        mine = last(emulator, BOB)["text"]
        assert "本周：0 分，未上榜" in mine and "本月：15 分，第 2 名" in mine and "连续学习 0 天（最长 5 天）" in mine

        emulator.send_message(GROUP, BOB, "/rank")
        await bot.settle()
        ranking = last(emulator, GROUP)
        assert "学习达人榜 · 本周（12-28 至 01-03）" in ranking["text"] and "🥇 Alice · 12 分" in ranking["text"]
        ranking = await press(emulator, bot, GROUP, BOB, ranking, "本月")
        assert re.search(r"🥇 Alice · 91 分\n🥈 Bob · 15 分\n🥉 （未署名） · 6 分", ranking["text"])
        assert "共 3 人得分（本群 4 人）" in ranking["text"] and "每周日 20:00 自动发布" in ranking["text"]
    async with harness(emulator, database_url, clock) as bot:  # and nothing posted again
        await bot.settle()
        assert len(boards(emulator)) == 5


async def seed_sign_ins(bot: BotHarness, at: datetime) -> None:
    """A meeting in each group: Alice on time in hers; in the other, Dave on time, Bob late and Carol
    signed in by proxy (neither earns a point)."""
    async with bot.app.db.transaction() as session:
        first = await session.scalar(select(Chat).where(Chat.telegram_id == GROUP))
        other = await session.scalar(select(Chat).where(Chat.telegram_id == OTHER_GROUP))
        unit = Unit(name="园区第一党委", kind="committee")
        branch = Unit(name="二支部", kind="branch")
        session.add_all([unit, branch])
        await session.flush()
        branch.parent_id = unit.id
        first.unit_id, other.unit_id = unit.id, branch.id  # the other group sits in a sub-unit
        meetings = [Meeting(chat_id=chat.id, kind="general", status="closed", starts_at=at) for chat in (first, other)]
        session.add_all(meetings)
        await session.flush()
        session.add_all(
            [
                MeetingSignIn(meeting_id=meetings[0].id, user_id=ALICE, signed_at=at, method="button"),
                MeetingSignIn(meeting_id=meetings[1].id, user_id=DAVE, signed_at=at, method="code"),
                MeetingSignIn(meeting_id=meetings[1].id, user_id=BOB, signed_at=at, method="button", late=True),
                MeetingSignIn(meeting_id=meetings[1].id, user_id=CAROL, signed_at=at, method="proxy", proxy_by=2001),
            ]
        )


async def test_sign_ins_the_unit_board_and_the_committee_choosing_when_to_post(emulator, database_url) -> None:
    clock = FrozenClock(local(date(2026, 12, 2), 10))  # a Wednesday
    async with harness(emulator, database_url, clock) as bot:
        for group in (GROUP, OTHER_GROUP):
            emulator.bot_added(group, SECRETARY, status="administrator")
        await bot.settle()
        emulator.send_message(GROUP, ALICE, "在")
        for user_id in (DAVE, BOB, CAROL):
            emulator.send_message(OTHER_GROUP, user_id, "在")
        await bot.settle()

        emulator.send_message(GROUP, ALICE, "/rank")
        await bot.settle()
        ranking = last(emulator, GROUP)
        assert "还没有人得分" in ranking["text"] and "🏢" not in str(ranking["reply_markup"])  # not bound yet
        emulator.press_button(GROUP, ALICE, ranking["message_id"], "rnk:u:week", forged=True)  # no unit
        await bot.settle()
        assert "还没有绑定单位" in last_alert(emulator)

        await seed_sign_ins(bot, local(date(2026, 12, 1), 19, 30))
        emulator.send_message(GROUP, ALICE, "/rank")
        await bot.settle()
        ranking = last(emulator, GROUP)
        assert "🥇 Alice · 3 分" in ranking["text"] and "Dave" not in ranking["text"]
        unit = await press(emulator, bot, GROUP, ALICE, ranking, "🏢 单位本周")
        assert "🏢 园区第一党委" in unit["text"]
        assert re.search(r"🥇 Alice · 3 分\n🥇 Dave · 3 分\n共 2 人得分", unit["text"]), unit["text"]
        for forged in ("rnk:g:year", "rnk:x:week", "rnp:7-2500", "rnh:abc:1"):
            emulator.press_button(GROUP, SECRETARY, ranking["message_id"], forged, forged=True)
            await bot.settle()
            assert "按钮已失效" in last_alert(emulator) or "已过期" in last_alert(emulator), forged

        # The committee chooses when the board goes out; a member may not.
        ranking = emulator.message(GROUP, ranking["message_id"])
        await press(emulator, bot, GROUP, ALICE, ranking, "⏰")
        assert "仅限支部委员" in last_alert(emulator)
        menu = await press(emulator, bot, GROUP, SECRETARY, ranking, "⏰")
        chosen = await press(emulator, bot, GROUP, SECRETARY, menu, "每周五 18:00")
        assert "每周五 18:00 自动发布" in chosen["text"]
        clock.set(local(date(2026, 12, 4), 18, 1))  # Friday
        await bot.settle()
        [posted] = boards(emulator)
        assert "学习达人周榜（11-30 至 12-06）" in posted and "🥇 Alice · 3 分" in posted
        assert re.search(r"🏢 园区第一党委\n🥇 Alice · 3 分\n🥇 Dave · 3 分", posted), posted  # the unit's leaders too

        menu = await press(emulator, bot, GROUP, SECRETARY, chosen, "⏰")
        stopped = await press(emulator, bot, GROUP, SECRETARY, menu, "⏹")
        assert "未开启自动发布" in stopped["text"]
        clock.set(local(date(2026, 12, 11), 18, 1))
        await bot.settle()
        clock.set(local(date(2026, 12, 31), 21))
        await bot.settle()
        assert len(boards(emulator)) == 1  # neither the next week's nor the month's
    async with harness(emulator, database_url, clock) as bot:  # housekeeping does not turn it back on
        await bot.settle()
        clock.set(local(date(2027, 1, 3), 21))
        await bot.settle()
        assert len(boards(emulator)) == 1


# ------------------------------------------------------------------------------------------ edges


async def sign_in(bot: BotHarness, telegram_id: int, user_id: int, at: datetime) -> None:
    async with bot.app.db.transaction() as session:
        chat = await session.scalar(select(Chat).where(Chat.telegram_id == telegram_id))
        meeting = Meeting(chat_id=chat.id, kind="general", status="closed", starts_at=at)
        session.add(meeting)
        await session.flush()
        session.add(MeetingSignIn(meeting_id=meeting.id, user_id=user_id, signed_at=at, method="button"))


# "每周一 09:00" posts the week that has just begun (9 hours old), never the week that ended.


async def test_monday_posting_posts_the_week_that_ended(emulator, database_url) -> None:
    clock = FrozenClock(local(date(2026, 12, 2), 10))  # Wednesday
    async with harness(emulator, database_url, clock) as bot:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await bot.settle()
        emulator.send_message(GROUP, ALICE, "在")
        await bot.settle()
        await sign_in(bot, GROUP, ALICE, local(date(2026, 12, 2), 9))  # +3 in the week 11-30..12-06
        emulator.send_message(GROUP, SECRETARY, "/rank")
        await bot.settle()
        ranking = last(emulator, GROUP)
        menu = await press(emulator, bot, GROUP, SECRETARY, ranking, "⏰")
        chosen = await press(emulator, bot, GROUP, SECRETARY, menu, "每周一 09:00")
        assert "每周一 09:00 自动发布" in chosen["text"]
        clock.set(local(date(2026, 12, 7), 9, 1))  # the Monday after
        await bot.settle()
        posted = boards(emulator)
        # Expected: last week's board, Alice 3 points. Actual: the new week (Mon 00:00-09:00) has no
        # points, so nothing at all is posted — with this choice no weekly board is ever meaningful.
        assert len(posted) == 1, posted
        assert "11-30 至 12-06" in posted[0] and "Alice · 3 分" in posted[0]


# The unit's board counts the same lesson / the same broadcast notice once per group.


async def two_groups_in_one_unit(emulator: BotAPIEmulator, bot: BotHarness, day: date) -> None:
    """Alice is in both groups; Bob only in the first. One (pack) lesson pushed in both groups and one
    broadcast notice posted in both: Alice studies/confirms it in both, Bob in his group."""
    for group in (GROUP, OTHER_GROUP):
        emulator.bot_added(group, SECRETARY, status="administrator")
    await bot.settle()
    emulator.send_message(GROUP, ALICE, "在")
    emulator.send_message(OTHER_GROUP, ALICE, "在")
    emulator.send_message(GROUP, BOB, "在")
    await bot.settle()
    at = local(day, 20, 5)
    async with bot.app.db.transaction() as session:
        first = await session.scalar(select(Chat).where(Chat.telegram_id == GROUP))
        other = await session.scalar(select(Chat).where(Chat.telegram_id == OTHER_GROUP))
        unit = Unit(name="园区第一党委", kind="committee")
        session.add(unit)
        await session.flush()
        first.unit_id = other.unit_id = unit.id
        lesson = Lesson(chat_id=None, title="共用的一课", body="正文", source="样例")
        notice = Notice(kind="text", text="交党费", status="published", unit_id=unit.id)
        session.add_all([lesson, notice])
        await session.flush()
        pushes = [LessonPush(chat_id=chat.id, lesson_id=lesson.id, pushed_on=day) for chat in (first, other)]
        posts = [NoticePost(notice_id=notice.id, chat_id=chat.id) for chat in (first, other)]
        session.add_all(pushes + posts)
        await session.flush()
        session.add_all(
            [LessonStudy(push_id=push.id, user_id=ALICE, studied_at=at) for push in pushes]
            + [NoticeAck(post_id=post.id, user_id=ALICE, acked_at=at) for post in posts]
            + [LessonStudy(push_id=pushes[0].id, user_id=BOB, studied_at=at)]
            + [NoticeAck(post_id=posts[0].id, user_id=BOB, acked_at=at)]
        )


async def test_unit_board_counts_one_lesson_and_one_notice_once(emulator, database_url) -> None:
    day = date(2026, 12, 2)
    clock = FrozenClock(local(day, 21))
    async with harness(emulator, database_url, clock) as bot:
        await two_groups_in_one_unit(emulator, bot, day)
        emulator.send_message(GROUP, BOB, "/rank")
        await bot.settle()
        unit = await press(emulator, bot, GROUP, BOB, last(emulator, GROUP), "🏢 单位本周")
        assert "🏢 园区第一党委" in unit["text"]
        # Both studied the same lesson and confirmed the same notice once: 2 + 1 each, a shared first place.
        # Actual: "🥇 Alice · 6 分 / 🥈 Bob · 3 分" — being in two groups doubles the points.
        assert re.search(r"🥇 Alice · 3 分\n🥇 Bob · 3 分", unit["text"]), unit["text"]


async def test_unit_board_does_not_call_the_unit_this_group(emulator, database_url) -> None:
    day = date(2026, 12, 2)
    clock = FrozenClock(local(day, 21))
    async with harness(emulator, database_url, clock) as bot:
        await two_groups_in_one_unit(emulator, bot, day)
        emulator.send_message(GROUP, BOB, "/rank")
        await bot.settle()
        unit = await press(emulator, bot, GROUP, BOB, last(emulator, GROUP), "🏢 单位本周")
        # "共 2 人得分（本群 2 人）": the count is the unit's members, the text says "this group".
        assert "本群" not in unit["text"], unit["text"]


# A group migrated to a supergroup whose new id was seen first ends up with two board schedules.


async def test_migrated_group_posts_its_board_once(emulator, database_url) -> None:
    emulator.add_chat(OLD_BASIC_GROUP, "group", "第三党支部")
    emulator.set_admins(OLD_BASIC_GROUP, [], creator_id=SECRETARY)
    clock = FrozenClock(local(date(2026, 12, 2), 10))  # Wednesday
    async with harness(emulator, database_url, clock) as bot:
        emulator.bot_added(OLD_BASIC_GROUP, SECRETARY, status="administrator")
        await bot.settle()
        emulator.send_message(OLD_BASIC_GROUP, ALICE, "在")
        await bot.settle()
        await sign_in(bot, OLD_BASIC_GROUP, ALICE, local(date(2026, 12, 2), 9))
        # The upgrade: the bot hears about itself in the new supergroup (my_chat_member), then the
        # migrate_to / migrate_from service messages (fold_into exists for exactly this order).
        emulator.add_chat(NEW_GROUP, "supergroup", "第三党支部")
        emulator.set_admins(NEW_GROUP, [], creator_id=SECRETARY)
        emulator.bot_added(NEW_GROUP, SECRETARY, status="administrator")
        await bot.settle()
        emulator.migrate_chat(OLD_BASIC_GROUP, NEW_GROUP)
        await bot.settle()
        async with bot.app.db.transaction() as session:
            chat_pk = await session.scalar(select(Chat.id).where(Chat.telegram_id == NEW_GROUP))
            weekly = await session.scalar(
                select(func.count())
                .select_from(Schedule)
                .where(Schedule.chat_id == chat_pk, Schedule.kind == "rank_week", Schedule.status == "active")
            )
        clock.set(local(date(2026, 12, 6), 20, 1))  # Sunday
        await bot.settle()
        posted = boards(emulator, NEW_GROUP)
        assert weekly == 1 and len(posted) == 1, (weekly, posted)


# A change of time zone after the Sunday board went out posts the same week's board again.


async def test_time_zone_change_does_not_post_the_week_twice(emulator, database_url) -> None:
    sunday = date(2026, 12, 6)
    clock = FrozenClock(local(date(2026, 12, 2), 10))
    async with harness(emulator, database_url, clock) as bot:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await bot.settle()
        emulator.send_message(GROUP, ALICE, "在")
        await bot.settle()
        await sign_in(bot, GROUP, ALICE, local(date(2026, 12, 2), 9))
        clock.set(local(sunday, 20, 1))
        await bot.settle()
        assert len(boards(emulator)) == 1
        clock.set(local(sunday, 20, 30))  # 07:30 on Sunday in New York
        emulator.send_message(GROUP, SECRETARY, "/settings tz America/New_York")
        await bot.settle()
        clock.set(datetime(2026, 12, 7, 1, 1, tzinfo=UTC))  # Sunday 20:01 in New York
        await bot.settle()
        posted = boards(emulator)
        # The second one is the same week 11-30..12-06 with the same points.
        assert len(posted) == 1, posted


# /me in private takes the first five groups before dropping those the bot has left.


async def test_private_me_skips_groups_the_bot_left_before_taking_five(emulator, database_url) -> None:
    gone = [-1009000000001 - n for n in range(5)]
    for group in gone:
        emulator.add_chat(group, "supergroup", f"旧群{group}")
        emulator.set_admins(group, [], creator_id=SECRETARY)
    clock = FrozenClock(local(date(2026, 12, 2), 10))
    async with harness(emulator, database_url, clock) as bot:
        for group in [*gone, GROUP]:
            emulator.bot_added(group, SECRETARY, status="administrator")
            await bot.settle()
            emulator.send_message(group, ALICE, "在")
            await bot.settle()
        for group in gone:
            emulator.bot_removed(group, SECRETARY)
        await bot.settle()
        emulator.send_message(ALICE, ALICE, "/me")
        await bot.settle()
        text = last(emulator, ALICE)["text"]
        # Actual: "你还不在任何有本助手的群里。" although Alice is in 第一党支部 with the bot.
        assert "第一党支部" in text, text


# Performance: every group of a unit recomputes the whole unit's board for its posted board.


async def test_posted_boards_of_a_unit_do_not_reload_the_unit_for_every_group(
    emulator, database_url, monkeypatch
) -> None:
    groups = [-1008000000001 - n for n in range(12)]
    for group in groups:
        emulator.add_chat(group, "supergroup", f"支部{group}")
        emulator.set_admins(group, [], creator_id=SECRETARY)
    clock = FrozenClock(local(date(2026, 12, 2), 10))
    loaded: list[int] = []
    original = points_store.events

    async def counting(session, chat_pks, start, end, user_id=None):
        found = await original(session, chat_pks, start, end, user_id)
        loaded.append(len(found))
        return found

    monkeypatch.setattr(points_store, "events", counting)
    async with harness(emulator, database_url, clock) as bot:
        for group in groups:
            emulator.bot_added(group, SECRETARY, status="administrator")
        await bot.settle()
        async with bot.app.db.transaction() as session:
            chats = list(await session.scalars(select(Chat).where(Chat.telegram_id.in_(groups))))
            unit = Unit(name="园区综合党委", kind="committee")
            session.add(unit)
            await session.flush()
            users = []
            for index, chat in enumerate(chats):
                chat.unit_id = unit.id
                meeting = Meeting(
                    chat_id=chat.id, kind="general", status="closed", starts_at=local(date(2026, 12, 2), 9)
                )
                session.add(meeting)
                await session.flush()
                for n in range(10):  # ten members per group, each signed in once
                    user = User(id=500000 + index * 100 + n, first_name=f"M{index}-{n}")
                    users.append(user)
                    session.add(user)
                    await session.flush()
                    session.add(ChatMember(chat_id=chat.id, user_id=user.id, status="member"))
                    session.add(
                        MeetingSignIn(
                            meeting_id=meeting.id, user_id=user.id, signed_at=local(date(2026, 12, 2), 9), method="code"
                        )
                    )
        total = 12 * 10
        loaded.clear()
        clock.set(local(date(2026, 12, 6), 20, 1))
        await bot.settle()
        assert all(len(boards(emulator, group)) == 1 for group in groups)
        # Each group's board (10 events) plus, for each of the 12 groups, the unit's 120 events again:
        # 12 × 130 = 1560 rows read for 120 events; with 1,000 groups it is 1,000 × the unit.
        assert sum(loaded) <= 3 * total, (sum(loaded), loaded)


# "⏹ 不自动发布" in a group that has no board schedule yet is a no-op; housekeeping then turns it on.


async def test_posting_turned_off_before_housekeeping_stays_off(emulator, database_url) -> None:
    clock = FrozenClock(local(date(2026, 12, 2), 10))
    async with harness(emulator, database_url, clock) as bot:
        # A group the bot was in before it had a record of it (the middleware registers it on sight).
        emulator.send_message(GROUP, SECRETARY, "/sync")
        emulator.send_message(GROUP, ALICE, "在")
        await bot.settle()
        await sign_in(bot, GROUP, ALICE, local(date(2026, 12, 2), 9))
        emulator.send_message(GROUP, SECRETARY, "/rank")
        await bot.settle()
        ranking = last(emulator, GROUP)
        assert "未开启自动发布" in ranking["text"]
        menu = await press(emulator, bot, GROUP, SECRETARY, ranking, "⏰")
        stopped = await press(emulator, bot, GROUP, SECRETARY, menu, "⏹")
        assert "未开启自动发布" in stopped["text"]
    async with harness(emulator, database_url, clock) as bot:  # a restart: housekeeping runs
        await bot.settle()
        clock.set(local(date(2026, 12, 6), 20, 1))
        await bot.settle()
        clock.set(local(date(2026, 12, 6), 20, 2))  # housekeeping is a task beside polling: let it finish
        await bot.settle()
        assert boards(emulator) == [], boards(emulator)
