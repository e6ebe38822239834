"""The monthly report through the emulator: a seeded November whose figures are worked out by hand below,
/report in the group (refused to members, a link for a secretary who has not started the bot), the chart
and the Excel ledger in private, the buttons (another month, the unit, CSV), forged buttons, and the
report the secretary gets on the 1st, once."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from sqlalchemy import select

from bot.services import reports as report_service
from bot.services.clock import FrozenClock
from bot.services.errors import DomainError
from storage.models import (
    Chat,
    Identity,
    LessonPush,
    LessonStudy,
    Meeting,
    MeetingAnswer,
    MeetingSignIn,
    Notice,
    NoticeAck,
    NoticePost,
    QuizAnswer,
    Unit,
    UnitRole,
    User,
)
from storage.models import Lesson as LessonRow
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP, OTHER_GROUP = -1001234567111, -1001234567122
SECRETARY, ALICE, BOB, CAROL, DAVE, ERIN = 2001, 3001, 3002, 3003, 3004, 3005
NOVEMBER = date(2026, 11, 1)


def local(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        for user_id, name in ((ALICE, "Alice"), (BOB, "Bob"), (CAROL, "Carol"), (DAVE, "Dave"), (ERIN, "Erin")):
            emu.add_user(user_id, name)
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.add_chat(OTHER_GROUP, "supergroup", "第二党支部")
        emu.set_admins(GROUP, [], creator_id=SECRETARY)
        emu.set_admins(OTHER_GROUP, [], creator_id=SECRETARY)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(local(1, 9))


def harness(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> BotHarness:
    return BotHarness(emulator, database_url, clock=clock, group_messages_per_minute=1200)


def last(emulator: BotAPIEmulator, chat_id: int) -> dict:
    return emulator.sent_messages(chat_id)[-1]


def button(message: dict, starts_with: str) -> str:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    found = [b for row in rows for b in row if b["text"].startswith(starts_with)]
    assert found, f"no {starts_with!r} in {rows}"
    return found[0].get("callback_data") or found[0].get("url")


def last_alert(emulator: BotAPIEmulator) -> str:
    return emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")


def files_sent(emulator: BotAPIEmulator, method: str, user_id: int) -> list[tuple[str, bytes]]:
    return [file for call in emulator.calls_of(method, chat_id=user_id) for file in call.files.values()]


async def seed_november(bot: BotHarness) -> None:
    """The month, row by row (figures in the test below). Everyone was first seen on 1 November.

    - Identities: Alice verified (full member), Bob pending, Carol verified 群众 (not expected at
      meetings); the secretary and Dave undeclared.
    - Meetings (closed): 10 Nov 支部党员大会 (secretary and Alice on time, Bob late, Dave absent);
      20 Nov 支委会 (the committee, the secretary: on time); 25 Nov 党课 (Alice on time, Bob on approved
      leave, the secretary and Dave absent). Also a 支部党员大会 on 20 October: the quarter's, not the month's.
    - Notices: 5 Nov, confirmed by the secretary, Alice, Bob; 15 Nov, confirmed by Alice.
    - Lessons: 3 Nov (Alice, Bob studied; Alice answered its quiz right, Bob wrong); 4 Nov (Alice).
    - Bob asked not to be named on boards.
    """
    async with bot.app.db.transaction() as session:
        chat = await session.scalar(select(Chat).where(Chat.telegram_id == GROUP))
        for user_id, member_type, status in (
            (ALICE, "full", "verified"),
            (BOB, "full", "pending"),
            (CAROL, "masses", "verified"),
        ):
            session.add(
                Identity(
                    user_id=user_id,
                    chat_id=chat.id,
                    real_name={ALICE: "王丽", BOB: "赵博", CAROL: "陈卡"}[user_id],
                    member_type=member_type,
                    duty_post="岗位",
                    pledge="承诺",
                    status=status,
                )
            )
        (await session.get(User, BOB)).rank_hidden = True

        def meeting(kind: str, title: str, starts_at: datetime) -> Meeting:
            return Meeting(
                chat_id=chat.id,
                kind=kind,
                title=title,
                starts_at=starts_at,
                ends_at=starts_at + timedelta(hours=2),
                status="closed",
                created_by=SECRETARY,
            )

        october = meeting("general", "十月党员大会", local(20, 19, month=10))
        general = meeting("general", "十一月党员大会", local(10, 19, 30))
        committee = meeting("committee", "十一月支委会", local(20, 19))
        lecture = meeting("lecture", "专题党课", local(25, 19))
        session.add_all([october, general, committee, lecture])
        await session.flush()
        session.add_all(
            [
                MeetingSignIn(meeting_id=general.id, user_id=SECRETARY, signed_at=local(10, 19, 25), method="button"),
                MeetingSignIn(meeting_id=general.id, user_id=ALICE, signed_at=local(10, 19, 31), method="button"),
                MeetingSignIn(meeting_id=general.id, user_id=BOB, signed_at=local(10, 20, 0), method="code", late=True),
                MeetingSignIn(meeting_id=committee.id, user_id=SECRETARY, signed_at=local(20, 19), method="button"),
                MeetingSignIn(meeting_id=lecture.id, user_id=ALICE, signed_at=local(25, 19), method="button"),
                MeetingAnswer(
                    meeting_id=lecture.id, user_id=BOB, answer="leave", reason="出差", leave_status="approved"
                ),
            ]
        )

        def notice(text: str, at: datetime, acks: list[int]) -> None:
            row = Notice(origin_chat_id=chat.id, kind="text", text=text, status="published", published_at=at)
            session.add(row)
            pending.append((row, acks, at))

        pending: list = []
        notice("本周五交党费，请大家按时缴纳。", local(5, 10), [SECRETARY, ALICE, BOB])
        notice('=HYPERLINK("x") 周末志愿服务报名', local(15, 10), [ALICE])
        await session.flush()
        for row, acks, at in pending:
            post = NoticePost(notice_id=row.id, chat_id=chat.id, message_id=900 + row.id)
            session.add(post)
            await session.flush()
            session.add_all(
                NoticeAck(post_id=post.id, user_id=user_id, acked_at=at + timedelta(minutes=5)) for user_id in acks
            )

        lessons = [LessonRow(chat_id=chat.id, position=n, title=f"第{n}课", body="正文", source="来源") for n in (1, 2)]
        session.add_all(lessons)
        await session.flush()
        first = LessonPush(chat_id=chat.id, lesson_id=lessons[0].id, pushed_on=date(2026, 11, 3), message_id=501)
        second = LessonPush(chat_id=chat.id, lesson_id=lessons[1].id, pushed_on=date(2026, 11, 4), message_id=502)
        session.add_all([first, second])
        await session.flush()
        session.add_all(
            [
                LessonStudy(push_id=first.id, user_id=ALICE, studied_at=local(3, 20, 5)),
                LessonStudy(push_id=first.id, user_id=BOB, studied_at=local(3, 20, 6)),
                LessonStudy(push_id=second.id, user_id=ALICE, studied_at=local(4, 20, 5)),
                QuizAnswer(push_id=first.id, user_id=ALICE, option=0, correct=True, answered_at=local(3, 20, 7)),
                QuizAnswer(push_id=first.id, user_id=BOB, option=1, correct=False, answered_at=local(3, 20, 8)),
            ]
        )


async def a_group_in_november(emulator: BotAPIEmulator, bot: BotHarness) -> None:
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    for user_id in (SECRETARY, ALICE, BOB, CAROL, DAVE):
        emulator.send_message(GROUP, user_id, "到")
    await bot.settle()
    await seed_november(bot)


async def test_the_figures_of_a_seeded_month(emulator, database_url, clock) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group_in_november(emulator, bot)
        clock.set(local(2, 10, month=12))
        async with bot.app.db.transaction() as session:
            chat = await session.scalar(select(Chat).where(Chat.telegram_id == GROUP))
            report = await report_service.group_report(
                session, chat, NOVEMBER, SHANGHAI, clock.now(), hidden_name="（未署名）"
            )

    assert [(row.title, row.expected, row.on_time, row.late, row.leave, row.absent) for row in report.meetings] == [
        ("十一月党员大会", 4, 2, 1, 0, 1),  # Carol (群众) is not expected
        ("十一月支委会", 1, 1, 0, 0, 0),  # the committee only
        ("专题党课", 4, 1, 0, 1, 2),
    ]
    assert report.attendance_rate == 5 / 9  # present 3 + 1 + 1 of 4 + 1 + 4 expected (as each summary counts)
    assert {row.kind: (row.held, row.met) for row in report.required} == {
        "general": (2, True),  # October's counts for the quarter
        "committee": (1, True),
        "group": (0, False),
        "lecture": (1, True),
    }
    assert [(row.expected, row.acked) for row in report.notices] == [(5, 3), (5, 1)]
    assert report.ack_rate == 4 / 10
    assert [(row.title, row.members, row.studied, row.quiz_answered, row.quiz_correct) for row in report.lessons] == [
        ("第1课", 5, 2, 2, 1),
        ("第2课", 5, 1, 0, 0),
    ]
    assert report.learning_participation == 2 / 5
    members = {row.user_id: row for row in report.members}
    assert set(members) == {SECRETARY, ALICE, BOB, CAROL, DAVE}
    alice, bob, carol, dave, secretary = (members[u] for u in (ALICE, BOB, CAROL, DAVE, SECRETARY))
    assert (alice.meetings_expected, alice.meetings_present, alice.notices_acked, alice.lessons_studied) == (2, 2, 2, 2)
    assert (bob.meetings_expected, bob.meetings_present, bob.meetings_late, bob.meetings_leave) == (2, 1, 1, 1)
    assert bob.attendance_rate == 1 / 2 and dave.attendance_rate == 0.0 and carol.attendance_rate is None
    assert secretary.meetings_expected == 3 and secretary.attendance_rate == 2 / 3
    # Points: Alice 2 + 2 studied, 1 quiz, 3 + 3 on time, 1 + 1 notices; the secretary 3 + 3 + 1; Bob 2 + 1.
    assert (alice.points, secretary.points, bob.points, dave.points) == (13, 7, 3, 0)
    assert [(row.rank, row.name, row.points) for row in report.top_learners] == [
        (1, "王丽", 13),
        (2, "李 书记", 7),
        (3, "（未署名）", 3),
    ]
    assert sorted(row.user_id for row in report.undeclared) == [SECRETARY, DAVE]
    assert alice.name == "王丽" and alice.section == "verified" and carol.member_type == "masses"


def test_months_are_read_in_both_languages() -> None:
    now = local(2, 10, month=12)
    assert report_service.parse_month("", now, SHANGHAI) == date(2026, 12, 1)
    assert report_service.parse_month("上月", now, SHANGHAI) == NOVEMBER
    assert report_service.parse_month("2026年11月", now, SHANGHAI) == NOVEMBER
    assert report_service.parse_month("2026-1", now, SHANGHAI) == date(2026, 1, 1)
    for bad in ("2027-01", "2026-13", "next", "2019-12", "<b>"):
        with pytest.raises(DomainError):
            report_service.parse_month(bad, now, SHANGHAI)
    assert report_service.parse_monthly("3号 18:30").day == 3
    assert report_service.parse_monthly("off") is None
    for bad in ("31 09:00", "1 25:00", "monday", ""):
        with pytest.raises(DomainError):
            report_service.parse_monthly(bad)


async def test_report_in_private_with_chart_ledger_and_buttons(emulator, database_url, clock) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group_in_november(emulator, bot)
        clock.set(local(2, 10, month=12))
        emulator.send_message(GROUP, ALICE, "/report 上月")
        await bot.settle()
        assert "仅限支部委员" in last(emulator, GROUP)["text"]

        emulator.send_message(GROUP, SECRETARY, "/report 2026-11")  # never started the bot: a link
        await bot.settle()
        reply = last(emulator, GROUP)
        assert "私聊" in reply["text"]
        link = button(reply, "🔒")
        payload = link.split("start=")[1]
        assert not files_sent(emulator, "sendPhoto", SECRETARY)

        emulator.send_message(SECRETARY, SECRETARY, f"/start {payload}")
        await bot.settle()
        [(png_name, png)] = files_sent(emulator, "sendPhoto", SECRETARY)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
        photo = next(m for m in emulator.sent_messages(SECRETARY) if m.get("photo"))
        caption = photo["caption"]
        assert "第一党支部 · 2026年11月" in caption
        assert "会议：3 次 · 到会率 56%" in caption
        assert "通知：2 条 · 确认率 40%" in caption and "学习：2 课 · 参与率 40%" in caption
        assert "未亮身份：2 人（共 5 人）" in caption and "1. 王丽 13" in caption and "赵博" not in caption
        [(xlsx_name, xlsx)] = files_sent(emulator, "sendDocument", SECRETARY)
        assert xlsx_name.endswith("2026-11.xlsx")
        book = openpyxl.load_workbook(io.BytesIO(xlsx))
        assert book.sheetnames[:6] == ["汇总", "会议", "出勤", "通知", "学习", "花名册"]
        meeting_rows = [[cell for cell in row] for row in book["会议"].iter_rows(values_only=True)]
        by_title = {row[2]: list(row[3:9]) for row in meeting_rows[1:]}
        assert by_title["十一月党员大会"] == [4, 3, 1, 0, 1, 0.75]  # 应到 到会 迟到 请假 缺席 到会率
        assert by_title["专题党课"] == [4, 1, 0, 1, 2, 0.25]
        assert meeting_rows[-1][0] == "合计" and list(meeting_rows[-1][3:9]) == [9, 5, 1, 1, 3, 5 / 9]
        notice_cells = [cell for row in book["通知"].iter_rows(values_only=True) for cell in row]
        assert not any(isinstance(cell, str) and cell.startswith("=") for cell in notice_cells)  # no formulas from text

        # October, then the CSV files of it.
        emulator.press_button(SECRETARY, SECRETARY, photo["message_id"], button(photo, "◀"))
        await bot.settle()
        october = [m for m in emulator.sent_messages(SECRETARY) if m.get("photo")][-1]
        assert "2026年10月" in october["caption"] and "会议：1 次" in october["caption"]
        emulator.press_button(SECRETARY, SECRETARY, october["message_id"], button(october, "🗂"))
        await bot.settle()
        name, archive = files_sent(emulator, "sendDocument", SECRETARY)[-1]
        assert name.endswith("-csv.zip")
        with zipfile.ZipFile(io.BytesIO(archive)) as bundle:
            assert len(bundle.namelist()) >= 5
            for member in bundle.namelist():
                text = bundle.read(member).decode("utf-8-sig")
                assert list(csv.reader(io.StringIO(text))), member

        # Forged: a month to come, another group, an odd scope; and the unit before the group is bound.
        before = len(files_sent(emulator, "sendPhoto", SECRETARY))
        for forged in ("rpt:1:202701:g:x", "rpt:99:202611:g:x", "rpt:1:202611:q:x", "rpt:1:202613:g:x"):
            emulator.press_button(SECRETARY, SECRETARY, photo["message_id"], forged, forged=True)
            await bot.settle()
            assert "失效" in last_alert(emulator), forged
        emulator.press_button(SECRETARY, SECRETARY, photo["message_id"], "rpt:1:202611:u:x", forged=True)
        await bot.settle()
        assert "没有绑定单位" in last_alert(emulator)
        assert len(files_sent(emulator, "sendPhoto", SECRETARY)) == before
        # A member cannot use the committee's button from a forwarded or forged message either.
        emulator.send_message(ALICE, ALICE, "/start")
        emulator.press_button(ALICE, ALICE, 1, "rpt:1:202611:g:x", forged=True)
        await bot.settle()
        assert "仅限支部委员" in last_alert(emulator) and not files_sent(emulator, "sendPhoto", ALICE)


async def test_the_unit_report_one_row_per_group(emulator, database_url, clock) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group_in_november(emulator, bot)
        emulator.bot_added(OTHER_GROUP, SECRETARY, status="administrator")
        emulator.send_message(OTHER_GROUP, ERIN, "到")
        emulator.send_message(SECRETARY, SECRETARY, "/start")
        await bot.settle()
        async with bot.app.db.transaction() as session:
            first = await session.scalar(select(Chat).where(Chat.telegram_id == GROUP))
            other = await session.scalar(select(Chat).where(Chat.telegram_id == OTHER_GROUP))
            park = Unit(name="园区党委", kind="committee")
            session.add(park)
            await session.flush()
            branch = Unit(name="二支部", kind="branch", parent_id=park.id)
            session.add(branch)
            await session.flush()
            first.unit_id, other.unit_id = park.id, branch.id
        clock.set(local(2, 10, month=12))
        emulator.send_message(GROUP, SECRETARY, "/report 上月")
        await bot.settle()
        photo = next(m for m in emulator.sent_messages(SECRETARY) if m.get("photo"))
        emulator.press_button(SECRETARY, SECRETARY, photo["message_id"], button(photo, "🏢"))
        await bot.settle()
        assert "仅限本单位" in last_alert(emulator)  # the group's committee, without a role on the unit

        async with bot.app.db.transaction() as session:
            session.add(UnitRole(unit_id=park.id, user_id=SECRETARY, role="secretary"))
        emulator.press_button(SECRETARY, SECRETARY, photo["message_id"], button(photo, "🏢"))
        await bot.settle()
        unit = [m for m in emulator.sent_messages(SECRETARY) if m.get("photo")][-1]
        assert "园区党委 · 2026年11月 · 2 个群" in unit["caption"]
        assert "第一党支部：会议 3 次 · 到会率 56% · 确认率 40%" in unit["caption"]
        assert "第二党支部：会议 0 次 · 到会率 — · 确认率 —" in unit["caption"]
        _, xlsx = files_sent(emulator, "sendDocument", SECRETARY)[-1]
        summary = [
            cell
            for row in openpyxl.load_workbook(io.BytesIO(xlsx)).worksheets[0].iter_rows(values_only=True)
            for cell in row
        ]
        assert "第一党支部" in summary and "第二党支部" in summary


async def test_the_secretary_gets_last_months_report_on_the_first(emulator, database_url, clock) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group_in_november(emulator, bot)
        emulator.send_message(SECRETARY, SECRETARY, "/start")
        await bot.settle()
        clock.set(local(1, 9, 1, month=12))
    async with harness(emulator, database_url, clock) as bot:  # back just after 09:00 on the 1st
        await bot.settle()
        [(_, png)] = files_sent(emulator, "sendPhoto", SECRETARY)
        caption = next(m for m in emulator.sent_messages(SECRETARY) if m.get("photo"))["caption"]
        assert "上月报表" in caption and "2026年11月" in caption
        [(name, _)] = files_sent(emulator, "sendDocument", SECRETARY)
        assert name.endswith("2026-11.xlsx")
        assert not [
            m for m in emulator.sent_messages(GROUP) if m.get("photo") or m.get("document")
        ]  # names: never the group
    async with harness(emulator, database_url, clock) as bot:  # nothing twice
        await bot.settle()
        assert len(files_sent(emulator, "sendPhoto", SECRETARY)) == 1

        emulator.send_message(GROUP, SECRETARY, "/settings report 3 18:00")
        await bot.settle()
        assert "每月3日 18:00 私聊发送上月报表" in last(emulator, GROUP)["text"]
        emulator.send_message(GROUP, SECRETARY, "/settings report 40 18:00")
        await bot.settle()
        assert "看不懂" in last(emulator, GROUP)["text"]
        clock.set(datetime(2027, 1, 3, 10, 1, tzinfo=UTC))  # 18:01 in Shanghai
        await bot.settle()
        assert len(files_sent(emulator, "sendPhoto", SECRETARY)) == 2
        assert "2026年12月" in [m for m in emulator.sent_messages(SECRETARY) if m.get("photo")][-1]["caption"]
        emulator.send_message(GROUP, SECRETARY, "/settings report off")
        await bot.settle()
        assert "不自动发送" in last(emulator, GROUP)["text"]
        clock.set(datetime(2027, 2, 3, 10, 1, tzinfo=UTC))
        await bot.settle()
        assert len(files_sent(emulator, "sendPhoto", SECRETARY)) == 2
