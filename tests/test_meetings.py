"""Meetings through the emulator, with a clock the tests move: the whole life of a meeting (create →
answers → leave with a reason and its approval → reminders to those who have not answered → sign-in by
button, by code, late, by proxy → summary → minutes → 补学), and the refusals on the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.services.clock import FrozenClock
from storage.models import Meeting, MeetingAnswer, MeetingMakeup, MeetingSignIn, OutboxMessage
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

GROUP = -1001234567066
SECRETARY, DEPUTY = 2001, 2002
# Members: 3001 will attend, 3002 maybe, 3003 asks for leave, 3004 asks for leave without having started
# the bot, 3005 never answers, 3006 is signed in by proxy.
MEMBERS = list(range(3001, 3007))
STARTED = (SECRETARY, 3001, 3002, 3003, 3005, 3006)
MONDAY_MORNING = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Mon 2026-11-23 10:00 in Shanghai
START = datetime(2026, 11, 25, 11, 30, tzinfo=UTC)  # Wed 2026-11-25 19:30 in Shanghai
# A meeting's whole life is compressed here into moments of real time: lift the group's 20 a minute.
FAST = {"group_messages_per_minute": 1200}
LINE = "党课 | 学习党章第一章 | 11月25日 19:30 | 三楼会议室 | 一、学习党章\n二、交流发言"


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
    async with BotHarness(emulator, database_url, clock=clock, **FAST) as harness:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await harness.settle()
        for user_id in (SECRETARY, DEPUTY, *MEMBERS):  # seen in the group: on the roster
            emulator.send_message(GROUP, user_id, "大家好")
        for user_id in STARTED:
            emulator.send_message(user_id, user_id, "/start")
        await harness.settle()
        yield harness


def buttons(message: dict) -> dict[str, str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return {button["text"]: button.get("callback_data") or button.get("url") for row in rows for button in row}


def button_data(message: dict, starts_with: str) -> str:
    found = [data for text, data in buttons(message).items() if text.startswith(starts_with)]
    assert found, f"no button {starts_with!r} in {list(buttons(message))}"
    return found[0]


def last(emulator: BotAPIEmulator, chat_id: int = GROUP) -> dict:
    return emulator.sent_messages(chat_id)[-1]


def texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [m.get("text") or m.get("caption") or "" for m in emulator.sent_messages(chat_id)]


def last_alert(emulator: BotAPIEmulator) -> str:
    return emulator.calls_of("answerCallbackQuery")[-1].params.get("text", "")


async def press(emulator, bot, message: dict, starts_with: str, user=SECRETARY, chat_id=GROUP) -> dict:
    emulator.press_button(chat_id, user, message["message_id"], button_data(message, starts_with))
    await bot.settle()
    return emulator.message(chat_id, message["message_id"])


async def reply(emulator, bot, prompt: dict, text: str, user=SECRETARY) -> None:
    emulator.send_message(GROUP, user, text, reply_to_message_id=prompt["message_id"])
    await bot.settle()


async def publish(emulator, bot, line: str = LINE) -> dict:
    """/meeting <line> → preview → publish; returns the group post."""
    emulator.send_message(GROUP, SECRETARY, f"/meeting {line}")
    await bot.settle()
    preview = last(emulator)
    assert "会议预览" in preview["text"], preview["text"]
    await press(emulator, bot, preview, "✅ 发布")
    post = last(emulator)
    assert "会议通知" in post["text"]
    return post


async def in_db(bot: BotHarness, model, *where):
    async with bot.app.db.transaction() as session:
        return list((await session.execute(select(model).where(*where))).scalars())


async def test_the_whole_life_of_a_meeting(emulator, bot, clock) -> None:
    post = await publish(emulator, bot)
    assert "学习党章第一章" in post["text"] and "2026-11-25 周三 19:30" in post["text"] and "三楼会议室" in post["text"]
    assert {"✅ 参加 · 0", "🙋 请假 · 0", "🤔 待定 · 0", "📅 添加到日历"} <= set(buttons(post))
    [meeting] = await in_db(bot, Meeting)
    assert meeting.status == "scheduled" and meeting.starts_at == START and len(meeting.checkin_code) == 4

    # Answers, with live counts on the post.
    await press(emulator, bot, post, "✅ 参加", user=3001)
    await press(emulator, bot, post, "🤔 待定", user=3002)
    await press(emulator, bot, post, "✅ 参加", user=3003)
    post = await press(emulator, bot, post, "🙋 请假", user=3003)  # changed their mind
    assert "私聊" in last_alert(emulator)
    assert "请假原因" in last(emulator, 3003)["text"]
    assert {"✅ 参加 · 1", "🙋 请假 · 1", "🤔 待定 · 1"} <= set(buttons(post))

    # The leave's reason in private → the author is asked to decide → the member is told.
    emulator.send_message(3003, 3003, "出差在外地，无法参加")
    await bot.settle()
    assert "等待支委审批" in last(emulator, 3003)["text"]
    review = last(emulator, SECRETARY)
    assert "请假申请" in review["text"] and "出差在外地" in review["text"]
    emulator.press_button(SECRETARY, SECRETARY, review["message_id"], button_data(review, "✅ 批准"))
    await bot.settle()
    assert "已批准" in emulator.message(SECRETARY, review["message_id"])["text"]
    assert "请假已批准" in last(emulator, 3003)["text"]
    [leave] = await in_db(bot, MeetingAnswer, MeetingAnswer.user_id == 3003)
    assert (leave.answer, leave.reason, leave.leave_status, leave.reviewed_by) == (
        "leave",
        "出差在外地，无法参加",
        "approved",
        SECRETARY,
    )
    # A member who never opened the bot is sent there by a link that asks for the reason.
    emulator.press_button(GROUP, 3004, post["message_id"], button_data(post, "🙋 请假"))
    await bot.settle()
    assert "start=mtg_" in emulator.calls_of("answerCallbackQuery")[-1].params.get("url", "")

    # The calendar file goes privately, with the meeting and an alarm.
    emulator.press_button(GROUP, 3001, post["message_id"], button_data(post, "📅"))
    await bot.settle()
    [document] = [call for call in emulator.calls_of("sendDocument") if str(call.params.get("chat_id")) == "3001"]
    ics = next(iter(document.files.values()))[1].decode()
    assert "BEGIN:VEVENT" in ics and "DTSTART:20261125T113000Z" in ics and "BEGIN:VALARM" in ics

    # 1 day before: a reminder under the post, and privately to those who have not answered only.
    clock.set(START - timedelta(days=1))
    await bot.settle()
    assert "会议提醒" in last(emulator)["text"] and "未回复" in last(emulator)["text"]
    reminded = {
        m["chat"]["id"] for u in STARTED for m in emulator.sent_messages(u) if "会议提醒" in (m.get("text") or "")
    }
    assert reminded == {SECRETARY, 3005, 3006}  # 3001-3003 answered; 3004 never opened the bot
    clock.set(START - timedelta(hours=1))
    await bot.settle()
    assert sum("会议提醒" in text for text in texts(emulator, GROUP)) == 2
    await bot.settle()  # nothing twice
    assert sum("会议提醒" in text for text in texts(emulator, GROUP)) == 2
    # Answers close at the start.
    clock.set(START)
    await bot.settle()
    emulator.press_button(GROUP, 3005, post["message_id"], button_data(post, "✅ 参加"))
    await bot.settle()
    assert "会议已开始" in last_alert(emulator)

    # Sign-in opens at the start: a button in the group, the code privately to the author.
    signin = last(emulator)
    assert "签到开始" in signin["text"]
    code = meeting.checkin_code
    assert code in last(emulator, SECRETARY)["text"]
    clock.set(START + timedelta(minutes=2))
    signin = await press(emulator, bot, signin, "✅ 签到", user=3001)
    assert "签到成功" in last_alert(emulator)
    await press(emulator, bot, signin, "✅ 签到", user=3001)
    assert "已于 19:32 签到" in last_alert(emulator)
    emulator.send_message(3005, 3005, "1" + code[1:] if code[0] != "1" else "2" + code[1:])
    await bot.settle()
    assert "签到码不对" in last(emulator, 3005)["text"]
    emulator.send_message(3005, 3005, code)
    await bot.settle()
    assert "签到成功" in last(emulator, 3005)["text"]
    clock.set(START + timedelta(minutes=20))  # past the 15 minutes of grace
    signin = await press(emulator, bot, emulator.message(GROUP, signin["message_id"]), "✅ 签到", user=3002)
    assert "迟到" in last_alert(emulator)
    assert "✅ 签到 · 3" in buttons(signin)

    # 代签 from the meeting's panel: a member may not; the committee may, with a note.
    emulator.send_message(GROUP, SECRETARY, "/meetings")
    await bot.settle()
    listing = last(emulator)
    assert "学习党章第一章" in listing["text"] and "签到中" in listing["text"]
    emulator.press_button(GROUP, 3001, listing["message_id"], button_data(listing, "1"))
    await bot.settle()
    assert "仅限支部委员" in last_alert(emulator)
    panel = await press(emulator, bot, listing, "1")
    choose = await press(emulator, bot, panel, "👤 代签")
    assert "党员3006" in buttons(choose) and "党员3001" not in buttons(choose)
    await press(emulator, bot, choose, "党员3006")
    prompt = last(emulator)
    assert "#m" in prompt["text"] and "force_reply" in str(emulator.calls_of("sendMessage")[-1].params["reply_markup"])
    await reply(emulator, bot, prompt, "在车间值班，电话确认参会")
    assert "已为 党员3006 代签" in last(emulator)["text"]
    [proxy] = await in_db(bot, MeetingSignIn, MeetingSignIn.user_id == 3006)
    # Vouched for by the committee: not marked late.
    assert (proxy.method, proxy.proxy_by, proxy.note, proxy.late) == (
        "proxy",
        SECRETARY,
        "在车间值班，电话确认参会",
        False,
    )

    # Sign-in closes at the end (2 hours): the summary goes to the group; a code after it is refused.
    clock.set(START + timedelta(hours=2))
    await bot.settle()
    summary = last(emulator)
    assert "会议小结" in summary["text"]
    # Expected: the 6 members, the secretary and the deputy. Present 3001, 3005, 3006 (proxy) on time;
    # 3002 late. On leave: 3003 (approved). Absent: 3004 (a leave whose reason never came is no leave),
    # the secretary and the deputy.
    assert "应到 8 · 到会 4（迟到 1）· 请假 1 · 缺席 3" in summary["text"]
    assert buttons(emulator.message(GROUP, signin["message_id"])) == {}
    emulator.send_message(3001, 3001, code)
    await bot.settle()
    assert "签到已结束" in last(emulator, 3001)["text"]

    # Minutes by reply → 补学 privately to those on leave or absent who opened the bot.
    emulator.send_message(GROUP, SECRETARY, "/meetings")
    await bot.settle()
    panel = await press(emulator, bot, last(emulator), "1")
    await press(emulator, bot, panel, "📎 上传纪要")
    await reply(emulator, bot, last(emulator), "会议学习了党章第一章，大家交流了体会。")
    saved = last(emulator)
    assert "补学材料已发给 2/4 人" in saved["text"], saved["text"]
    assert "start=mtg_" in str(saved.get("reply_markup"))  # a link for the two the bot cannot reach
    makeup = last(emulator, 3003)
    assert "补学" in makeup["text"] and "党章第一章" in makeup["text"]
    emulator.press_button(3003, 3003, makeup["message_id"], button_data(makeup, "✅ 已学习"))
    await bot.settle()
    rows = {row.user_id: row for row in await in_db(bot, MeetingMakeup)}
    assert {user_id: row.reason for user_id, row in rows.items()} == {
        3003: "leave",
        3004: "absent",
        SECRETARY: "absent",
        DEPUTY: "absent",
    }
    assert rows[3003].studied_at == START + timedelta(hours=2) and rows[3003].reason == "leave"
    # The member who could not be reached fetches the materials through the link.
    emulator.send_message(3004, 3004, f"/start mtg_{meeting.id}_makeup")
    await bot.settle()
    assert "补学" in last(emulator, 3004)["text"]

    # Every planned message went out once.
    async with bot.app.db.transaction() as session:
        keys = list(await session.scalars(select(OutboxMessage.dedupe_key)))
    assert len(keys) == len(set(keys))


async def test_guided_creation_and_bad_input(emulator, bot, clock) -> None:
    emulator.send_message(GROUP, SECRETARY, "/meeting")
    await bot.settle()
    kinds = last(emulator)
    assert "支部委员会" in buttons(kinds)
    await press(emulator, bot, kinds, "支部委员会")
    await reply(emulator, bot, last(emulator), "十一月支委会")
    ask_time = last(emulator)
    assert "会议时间" in ask_time["text"]
    await reply(emulator, bot, ask_time, "昨天下午3点")  # in the past: explained, asked again
    assert "会议时间" in last(emulator)["text"]
    await reply(emulator, bot, last(emulator), "每周三 19:30")  # repeating: explained, asked again
    assert "会议只开一次" in emulator.sent_messages(GROUP)[-2]["text"]
    await reply(emulator, bot, last(emulator), "周五 14:00")
    await reply(emulator, bot, last(emulator), "https://meeting.example.com/123")
    await reply(emulator, bot, last(emulator), "无")
    preview = last(emulator)
    assert "会议预览" in preview["text"] and "周五 14:00" in preview["text"] and "议程" not in preview["text"]
    preview = await press(emulator, bot, preview, "签到方式")
    assert "签到方式：按钮 🔄" in buttons(preview)
    preview = await press(emulator, bot, preview, "⏱ 时长")  # 2 hours → 3 hours
    preview = await press(emulator, bot, preview, "⏰")  # late after 15 → 30 minutes
    assert (
        "⏱ 时长 3小时 🔄" in buttons(preview)
        and "30 分钟后算迟到" in preview["text"]
        and "17:00 截止" in preview["text"]
    )
    await press(emulator, bot, preview, "✅ 发布")
    [meeting] = await in_db(bot, Meeting, Meeting.status == "scheduled")
    assert (meeting.kind, meeting.title, meeting.place, meeting.checkin_mode, meeting.late_minutes) == (
        "committee",
        "十一月支委会",
        "https://meeting.example.com/123",
        "button",
        30,
    )
    assert meeting.ends_at - meeting.starts_at == timedelta(hours=3)

    # Bad one-line input is explained and makes nothing. (A minute later: the flood guard would take a
    # secretary this quick for a script.)
    clock.advance(minutes=1)
    for line, expected in (
        ("党课 | 标题", "用法"),
        ("茶话会 | 标题 | 周五 19:30 | 会议室", "不认识会议类型"),
        ("党课 | 标题 | 明天下午25点 | 会议室", "⚠️"),
        ("党课 |  | 周五 19:30 | 会议室", "标题不能为空"),
        ("党课 | " + "长" * 61 + " | 周五 19:30 | 会议室", "最多 60 字"),
        ("党课 | 标题 | 2020-01-01 09:00 | 会议室", "已经过去"),
    ):
        emulator.send_message(GROUP, SECRETARY, f"/meeting {line}")
        await bot.settle()
        assert expected in last(emulator)["text"], (line, last(emulator)["text"])
    assert len(await in_db(bot, Meeting)) == 1
    # A member may not create one, nor press the committee's buttons.
    emulator.send_message(GROUP, 3001, f"/meeting {LINE}")
    await bot.settle()
    assert "仅限支部委员" in last(emulator)["text"]
    for data in (f"mtd:publish:{meeting.id}", f"mtp:cancel_yes:{meeting.id}:", f"mtx:{meeting.id}:3002:0"):
        emulator.press_button(GROUP, 3001, 1, data, forged=True)
        await bot.settle()
        assert "仅限支部委员" in last_alert(emulator)
    # Forged data from the committee: a stale button, nothing changes.
    for data in ("mtp:explode:999:", "mtr:999:yes", "mtr:1:dance", "mts:999", "mtk:party"):
        emulator.press_button(GROUP, SECRETARY, 1, data, forged=True)
        await bot.settle()
        assert last_alert(emulator), data
    [meeting] = await in_db(bot, Meeting, Meeting.status == "scheduled")
    assert meeting.title == "十一月支委会"


async def test_edit_and_cancel_tell_everyone_who_answered(emulator, bot, clock) -> None:
    post = await publish(emulator, bot)
    await press(emulator, bot, post, "✅ 参加", user=3001)
    await press(emulator, bot, post, "🤔 待定", user=3002)
    emulator.send_message(GROUP, SECRETARY, "/meetings")
    await bot.settle()
    panel = await press(emulator, bot, last(emulator), "1")
    choose = await press(emulator, bot, panel, "✏️ 修改")
    await press(emulator, bot, choose, "时间")
    await reply(emulator, bot, last(emulator), "11月26日 20:00")
    assert any("已修改时间" in text for text in texts(emulator, GROUP))
    assert "会议时间有变" in last(emulator)["text"]  # under the post, for those who did not answer
    for user_id in (3001, 3002):
        assert "2026-11-26 周四 20:00" in last(emulator, user_id)["text"]
    assert "2026-11-26 周四 20:00" in emulator.message(GROUP, post["message_id"])["text"]
    # The reminders moved with it: nothing at the old time, one a day before the new one.
    clock.set(START - timedelta(days=1))
    await bot.settle()
    assert not any("会议提醒" in text for text in texts(emulator, GROUP))
    clock.set(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    await bot.settle()
    assert sum("会议提醒" in text for text in texts(emulator, GROUP)) == 1

    emulator.send_message(GROUP, SECRETARY, "/meetings")
    await bot.settle()
    panel = await press(emulator, bot, last(emulator), "1")
    confirm = await press(emulator, bot, panel, "🚫 取消会议")
    await press(emulator, bot, confirm, "🚫 确认取消")
    assert "会议已取消" in emulator.message(GROUP, post["message_id"])["text"]
    for user_id in (3001, 3002):
        assert "不再召开" in last(emulator, user_id)["text"]
    # Reminders and sign-in stop.
    clock.set(datetime(2026, 11, 26, 14, 0, tzinfo=UTC))
    await bot.settle()
    assert sum("会议提醒" in text for text in texts(emulator, GROUP)) == 1
    assert not any("签到开始" in text for text in texts(emulator, GROUP))
    emulator.press_button(GROUP, 3005, post["message_id"], "mtr:1:yes", forged=True)
    await bot.settle()
    assert "已取消" in last_alert(emulator)


async def test_reminders_survive_a_restart_and_go_out_once(emulator, database_url, clock) -> None:
    async with BotHarness(emulator, database_url, clock=clock, **FAST) as bot:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await bot.settle()
        await publish(emulator, bot)
    clock.set(START - timedelta(days=1) + timedelta(minutes=30))  # down across the 1-day reminder
    for _ in range(2):
        async with BotHarness(emulator, database_url, clock=clock, **FAST) as bot:
            await bot.settle()
    assert sum("会议提醒" in text for text in texts(emulator, GROUP)) == 1


async def test_code_only_meeting_and_wrong_codes_are_limited(emulator, bot, clock) -> None:
    emulator.send_message(GROUP, SECRETARY, f"/meeting {LINE}")
    await bot.settle()
    preview = last(emulator)
    preview = await press(emulator, bot, preview, "签到方式")  # both → button
    preview = await press(emulator, bot, preview, "签到方式")  # button → code
    await press(emulator, bot, preview, "✅ 发布")
    [meeting] = await in_db(bot, Meeting)
    assert meeting.checkin_mode == "code"
    emulator.send_message(3001, 3001, meeting.checkin_code)
    await bot.settle()
    assert "签到还没开始" in last(emulator, 3001)["text"]
    clock.set(START)
    await bot.settle()
    signin = last(emulator)
    assert "签到开始" in signin["text"] and buttons(signin) == {}
    emulator.press_button(GROUP, 3001, signin["message_id"], f"mts:{meeting.id}", forged=True)
    await bot.settle()
    assert "只接受签到码" in last_alert(emulator)
    wrong = "0000" if meeting.checkin_code != "0000" else "0001"
    for _ in range(5):
        emulator.send_message(3002, 3002, wrong)
    await bot.settle()
    emulator.send_message(3002, 3002, meeting.checkin_code)
    await bot.settle()
    assert "输错次数太多" in last(emulator, 3002)["text"]
    assert await in_db(bot, MeetingSignIn, MeetingSignIn.user_id == 3002) == []
    # A member signs themselves in only: the code signs in whoever sends it, once.
    emulator.send_message(3001, 3001, f"签到 {meeting.checkin_code}")
    emulator.send_message(3001, 3001, meeting.checkin_code)
    await bot.settle()
    assert len(await in_db(bot, MeetingSignIn)) == 1
    assert "已于" in last(emulator, 3001)["text"]


async def test_the_real_process_publishes_answers_and_signs_in(emulator, sqlite_url) -> None:
    """`python -m bot` over HTTP with the real clock: publish, answer, open sign-in early from the panel,
    sign in, close with the summary; a restart sends nothing again."""
    from zoneinfo import ZoneInfo

    from tests.harness import BotProcess

    def group_texts() -> list[str]:
        return texts(emulator, GROUP)

    async def until(predicate, timeout: float = 20) -> None:
        await emulator.wait_for(predicate, timeout=timeout)

    async def tap(message_id: int, starts_with: str, user: int = SECRETARY) -> None:
        before = len(emulator.calls_of("answerCallbackQuery"))
        emulator.press_button(GROUP, user, message_id, button_data(emulator.message(GROUP, message_id), starts_with))
        await until(lambda: len(emulator.calls_of("answerCallbackQuery")) > before)

    starts = datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=1)
    process = await BotProcess(emulator, sqlite_url, GROUP_MESSAGES_PER_MINUTE="600").start()
    try:
        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        emulator.send_message(GROUP, 3001, "大家好")
        await until(lambda: any("已获得管理员权限" in text for text in group_texts()), timeout=30)  # admins synced
        await asyncio.sleep(0.5)  # the roles are written just after the welcome goes out
        emulator.send_message(GROUP, SECRETARY, f"/meeting 党课 | 进程测试 | {starts:%Y-%m-%d %H:%M} | 会议室")
        await until(lambda: any("会议预览" in text for text in group_texts()))
        preview = next(m for m in emulator.sent_messages(GROUP) if "会议预览" in (m.get("text") or ""))
        await tap(preview["message_id"], "✅ 发布")
        await until(lambda: any("会议通知" in text for text in group_texts()))
        post = next(m for m in emulator.sent_messages(GROUP) if "会议通知" in (m.get("text") or ""))
        await tap(post["message_id"], "✅ 参加", user=3001)
        await until(lambda: "✅ 参加 · 1" in buttons(emulator.message(GROUP, post["message_id"])))

        emulator.send_message(GROUP, SECRETARY, "/meetings")
        await until(lambda: any("即将召开" in text for text in group_texts()))
        listing = next(m for m in emulator.sent_messages(GROUP) if "即将召开" in (m.get("text") or ""))
        await tap(listing["message_id"], "1")
        await tap(listing["message_id"], "▶️ 开始签到")
        await until(lambda: any("签到开始" in text for text in group_texts()))
        signin = next(m for m in emulator.sent_messages(GROUP) if "签到开始" in (m.get("text") or ""))
        await tap(signin["message_id"], "✅ 签到", user=3001)
        assert "签到成功" in last_alert(emulator)
        await until(lambda: "✅ 签到 · 1" in buttons(emulator.message(GROUP, signin["message_id"])))
        await tap(listing["message_id"], "⏹ 结束签到")
        await until(lambda: any("会议小结" in text for text in group_texts()))
    finally:
        await process.stop()
    summaries = sum("会议小结" in text for text in group_texts())
    again = await BotProcess(emulator, sqlite_url).start()
    await asyncio.sleep(2)
    await again.stop()
    assert summaries == 1 and sum("会议小结" in text for text in group_texts()) == 1


async def test_outsiders_self_approval_and_names_that_look_like_tags(emulator, bot, clock) -> None:
    emulator.add_user(9999, "路人")
    emulator.add_user(3007, "#m1:edittitle")  # a member whose name looks like a prompt's tag
    emulator.send_message(GROUP, 3007, "大家好")
    await bot.settle()
    post = await publish(emulator, bot)
    [meeting] = await in_db(bot, Meeting)

    # The calendar file (title, place, agenda) only for the group's members.
    emulator.send_message(9999, 9999, f"/start mtg_{meeting.id}_ics")
    emulator.press_button(9999, 9999, 1, f"mtc:{meeting.id}", forged=True)
    await bot.settle()
    assert not [call for call in emulator.calls_of("sendDocument") if str(call.params.get("chat_id")) == "9999"]
    assert "不在这个会议所在的群" in last(emulator, 9999)["text"]

    # Nobody decides on their own leave; digits written as its reason are the reason, not a code.
    emulator.press_button(GROUP, SECRETARY, post["message_id"], button_data(post, "🙋 请假"))
    await bot.settle()
    emulator.send_message(SECRETARY, SECRETARY, "2024")
    await bot.settle()
    assert "等待支委审批" in last(emulator, SECRETARY)["text"]
    emulator.press_button(SECRETARY, SECRETARY, 1, f"mtl:{meeting.id}:{SECRETARY}:1", forged=True)
    await bot.settle()
    assert "不能审批自己的请假" in last_alert(emulator)
    [leave] = await in_db(bot, MeetingAnswer, MeetingAnswer.user_id == SECRETARY)
    assert (leave.reason, leave.leave_status) == ("2024", "pending")

    # 代签 for the member whose name looks like a tag: the note is a note, the title stays.
    clock.set(START)
    await bot.settle()
    emulator.send_message(GROUP, SECRETARY, "/meetings")
    await bot.settle()
    panel = await press(emulator, bot, last(emulator), "1")
    choose = await press(emulator, bot, panel, "👤 代签")
    choose = await press(emulator, bot, choose, "›")  # eight names a page
    await press(emulator, bot, choose, "#m1:edittitle")
    await reply(emulator, bot, last(emulator), "电话确认参会")
    [meeting] = await in_db(bot, Meeting)
    assert meeting.title == "学习党章第一章"
    assert [row.user_id for row in await in_db(bot, MeetingSignIn)] == [3007]


async def test_a_withdrawn_leave_and_a_group_the_bot_left(emulator, bot, clock) -> None:
    post = await publish(emulator, bot)
    [meeting] = await in_db(bot, Meeting)
    # Leave, then attend after all: the reason asked for is not wanted any more.
    await press(emulator, bot, post, "🙋 请假", user=3001)
    await press(emulator, bot, post, "✅ 参加", user=3001)
    emulator.send_message(3001, 3001, "明天见")
    await bot.settle()
    assert "等待支委审批" not in last(emulator, 3001)["text"]
    [answer] = await in_db(bot, MeetingAnswer, MeetingAnswer.user_id == 3001)
    assert (answer.answer, answer.reason) == ("yes", None)

    # The bot is removed before the start: nothing more is posted there, but the meeting still closes.
    emulator.bot_removed(GROUP, SECRETARY)
    await bot.settle()
    sent_before = len(emulator.sent_messages(GROUP))
    clock.set(START + timedelta(hours=2))
    await bot.settle()
    [meeting] = await in_db(bot, Meeting)
    assert meeting.status == "closed"
    assert len(emulator.sent_messages(GROUP)) == sent_before
