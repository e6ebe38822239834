"""Notices through the emulator: draft → publish → "✅ 收到" with a live count → who confirmed → nudge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.services.clock import FrozenClock
from storage.models import NoticeAck, OutboxMessage
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

GROUP = -1001234567001
SECRETARY, DEPUTY = 2001, 2002
MEMBERS = list(range(3001, 3011))  # ten members
# 2026-11-23 10:00 in Shanghai: outside quiet hours
DAYTIME = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


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
    return FrozenClock(DAYTIME)


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> AsyncIterator[BotHarness]:
    async with BotHarness(emulator, database_url, clock=clock) as harness:
        yield harness


async def group_with_members(emulator: BotAPIEmulator, bot: BotHarness) -> None:
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    await emulator.wait_for_call("getChatAdministrators")
    for user_id in MEMBERS:
        emulator.member_joined(GROUP, user_id)
    await bot.settle()


def buttons(message: dict) -> dict[str, str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return {button["text"]: button.get("callback_data") or button.get("url") for row in rows for button in row}


def button_data(message: dict, starts_with: str) -> str:
    return next(data for text, data in buttons(message).items() if text.startswith(starts_with))


def last(emulator: BotAPIEmulator, chat_id: int) -> dict:
    return emulator.sent_messages(chat_id)[-1]


def alerts(emulator: BotAPIEmulator) -> list[str]:
    return [call.params.get("text", "") for call in emulator.calls_of("answerCallbackQuery")]


async def publish(emulator: BotAPIEmulator, bot: BotHarness, text: str, *, pin: bool = False) -> dict:
    """The committee drafts and publishes a notice; returns the notice as posted in the group."""
    emulator.send_message(GROUP, SECRETARY, f"/notice {text}")
    await bot.settle()
    draft = last(emulator, GROUP)
    assert "通知预览" in draft["text"]
    emulator.press_button(GROUP, SECRETARY, draft["message_id"], button_data(draft, "📌" if pin else "📤"))
    await bot.settle()
    posts = [m for m in emulator.sent_messages(GROUP) if "📢" in m.get("text", "") and "预览" not in m["text"]]
    return posts[-1]


async def test_notice_is_published_confirmed_once_and_counted_live(emulator, bot) -> None:
    await group_with_members(emulator, bot)
    post = await publish(emulator, bot, "周五晚7点召开支部党员大会，请准时参加。", pin=True)
    assert "支部党员大会" in post["text"]
    assert "已确认 0/12" in next(iter(buttons(post)))  # ten members, the secretary and the deputy
    assert emulator.calls_of("pinChatMessage", message_id=post["message_id"])
    ack = button_data(post, "✅")

    for user_id in MEMBERS[:4]:
        emulator.press_button(GROUP, user_id, post["message_id"], ack)
    emulator.press_button(GROUP, MEMBERS[0], post["message_id"], ack)  # a second tap
    await bot.settle()
    assert sum("已确认，谢谢" in text for text in alerts(emulator)) == 4
    assert sum("已经确认过" in text for text in alerts(emulator)) == 1
    current = emulator.message(GROUP, post["message_id"])
    assert "已确认 4/12" in next(iter(buttons(current)))


async def test_member_is_refused_committee_buttons_and_commands(emulator, bot) -> None:
    await group_with_members(emulator, bot)
    post = await publish(emulator, bot, "学习材料已上传")
    member = MEMBERS[0]
    emulator.press_button(GROUP, member, post["message_id"], button_data(post, "🔔"))
    emulator.press_button(GROUP, member, post["message_id"], button_data(post, "📋"))
    await bot.settle()
    assert sum("仅限支部委员" in text for text in alerts(emulator)) == 2
    emulator.send_message(GROUP, member, "/notice 我也想发通知")
    await bot.settle()
    assert "仅限支部委员" in last(emulator, GROUP)["text"]
    async with bot.app.db.transaction() as session:
        nudges = await session.scalar(select(func.count()).where(OutboxMessage.kind.like("nudge%")))
    assert nudges == 0


async def test_nudge_reaches_exactly_the_unconfirmed(emulator, bot, clock) -> None:
    await group_with_members(emulator, bot)
    started = MEMBERS[5:8]
    for user_id in started:  # these three opened a private chat with the bot
        emulator.send_message(user_id, user_id, "/start")
    await bot.settle()
    post = await publish(emulator, bot, "请于本周内完成党费缴纳")
    for user_id in MEMBERS[:6]:  # MEMBERS[5] confirmed, so gets no private nudge
        emulator.press_button(GROUP, user_id, post["message_id"], button_data(post, "✅"))
    await bot.settle()

    before = {user_id: len(emulator.sent_messages(user_id)) for user_id in MEMBERS}
    emulator.press_button(GROUP, DEPUTY, post["message_id"], button_data(post, "🔔"))
    await bot.settle()
    assert any("已提醒 6 位" in text and "2 位" in text for text in alerts(emulator)), alerts(emulator)
    mention = last(emulator, GROUP)
    mentioned = {entity["user"]["id"] for entity in mention.get("entities", []) if entity.get("user")}
    assert mentioned == {*MEMBERS[6:], SECRETARY, DEPUTY}
    assert mention.get("reply_to_message", {}).get("message_id") == post["message_id"]
    privately = {user_id for user_id in MEMBERS if len(emulator.sent_messages(user_id)) > before[user_id]}
    assert privately == set(MEMBERS[6:8])
    reminder = last(emulator, MEMBERS[6])
    assert "还未确认" in reminder["text"]

    # The reminder's own button confirms from the private chat.
    emulator.press_button(MEMBERS[6], MEMBERS[6], reminder["message_id"], button_data(reminder, "✅"))
    await bot.settle()
    async with bot.app.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(NoticeAck)) == 7

    # A second nudge straight away is refused: at most one per 30 minutes per notice.
    emulator.press_button(GROUP, DEPUTY, post["message_id"], button_data(post, "🔔"))
    await bot.settle()
    assert "分钟后再试" in alerts(emulator)[-1]
    clock.advance(minutes=31)
    emulator.press_button(GROUP, DEPUTY, post["message_id"], button_data(post, "🔔"))
    await bot.settle()
    assert "已提醒 5 位" in alerts(emulator)[-1]


async def test_nudge_in_quiet_hours_waits_for_their_end(emulator, bot, clock) -> None:
    await group_with_members(emulator, bot)
    emulator.send_message(MEMBERS[0], MEMBERS[0], "/start")
    await bot.settle()
    post = await publish(emulator, bot, "明早8点集合")
    clock.set(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))  # 23:00 in Shanghai
    sent_before = len(emulator.sent_messages(GROUP))
    emulator.press_button(GROUP, SECRETARY, post["message_id"], button_data(post, "🔔"))
    await bot.settle()
    assert "07:00" in alerts(emulator)[-1]
    assert len(emulator.sent_messages(GROUP)) == sent_before and len(emulator.sent_messages(MEMBERS[0])) == 1

    clock.set(datetime(2026, 11, 23, 23, 1, tzinfo=UTC))  # 07:01 the next morning
    bot.app.outbox.wake()
    await bot.settle()
    assert "请以下同志" in last(emulator, GROUP)["text"]
    assert "还未确认" in last(emulator, MEMBERS[0])["text"]


async def test_scheduled_notice_goes_out_at_its_time_and_can_be_listed(emulator, bot, clock) -> None:
    await group_with_members(emulator, bot)
    emulator.send_message(GROUP, SECRETARY, "/notice 今晚11点 | 夜间通知")  # in quiet hours: said so
    await bot.settle()
    assert "免打扰时段（22:00–07:00）" in last(emulator, GROUP)["text"]
    emulator.send_message(GROUP, SECRETARY, "/notice 今晚七点半 | 今晚主题党日活动")
    await bot.settle()
    draft = last(emulator, GROUP)
    assert "免打扰" not in draft["text"]
    assert "2026-11-23 19:30" in draft["text"]
    emulator.press_button(GROUP, SECRETARY, draft["message_id"], button_data(draft, "⏰"))
    await bot.settle()
    assert "已安排在 2026-11-23 19:30" in last(emulator, GROUP)["text"]
    assert not [m for m in emulator.sent_messages(GROUP) if m.get("text", "").startswith("📢")]

    emulator.send_message(GROUP, DEPUTY, "/notices")
    await bot.settle()
    assert "待发布" in last(emulator, GROUP)["text"]

    clock.set(datetime(2026, 11, 23, 11, 30, tzinfo=UTC))  # 19:30 in Shanghai
    bot.app.outbox.wake()
    await bot.settle()
    [post] = [m for m in emulator.sent_messages(GROUP) if m.get("text", "").startswith("📢")]
    assert "主题党日" in post["text"]
    emulator.press_button(GROUP, MEMBERS[0], post["message_id"], button_data(post, "✅"))
    await bot.settle()
    emulator.send_message(GROUP, DEPUTY, "/notices")
    await bot.settle()
    assert "1/12（8%）" in last(emulator, GROUP)["text"]


async def test_bad_input_gets_a_clear_answer_and_changes_nothing(emulator, bot) -> None:
    await group_with_members(emulator, bot)
    for command, expected in (
        ("/notice", "用法"),
        ("/notice 2026-13-40 25:00 | 内容", "没有「2026-13-40」这一天"),
        ("/notice 每周三 19:30 | 内容", "/schedule"),
        ("/notice 2020-01-01 08:00 | 内容", "已经过去"),
        ("/notice " + "长" * 4001, "太长"),
    ):
        emulator.send_message(GROUP, SECRETARY, command)
        await bot.settle()
        assert expected in last(emulator, GROUP)["text"], command
    # Forged buttons: a post id that does not exist, another group's notice, garbage.
    message_id = last(emulator, GROUP)["message_id"]
    for data in ("ack:999999", "ntn:999999", "ntd:send:999999", "ack:abc", "nts:-1"):
        emulator.press_button(GROUP, MEMBERS[0], message_id, data, forged=True)
    await bot.settle()
    answered = alerts(emulator)
    assert len(answered) >= 4 and all(text for text in answered)
    async with bot.app.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_five_hundred_concurrent_taps_are_each_counted_once(emulator, database_url) -> None:
    members = list(range(50_001, 50_501))
    for user_id in members:
        emulator.add_user(user_id, f"成员{user_id}")
    async with BotHarness(emulator, database_url, clock=FrozenClock(DAYTIME)) as bot:
        await group_with_members(emulator, bot)
        post = await publish(emulator, bot, "全体党员请确认")
        ack = button_data(post, "✅")
        for user_id in members:
            emulator.press_button(GROUP, user_id, post["message_id"], ack)
        for user_id in members[:50]:  # some tap twice, at once
            emulator.press_button(GROUP, user_id, post["message_id"], ack)
        await bot.settle(timeout=60)
        async with bot.app.db.transaction() as session:
            assert await session.scalar(select(func.count()).select_from(NoticeAck)) == 500
        assert sum("已确认，谢谢" in text for text in alerts(emulator)) == 500
        assert sum("已经确认过" in text for text in alerts(emulator)) == 50
        assert "已确认 500/" in next(iter(buttons(emulator.message(GROUP, post["message_id"]))))
        # The live count was edited a few times, not 500 times.
        assert len(emulator.calls_of("editMessageReplyMarkup")) < 20
        await asyncio.sleep(0)


async def test_outbox_plans_once_and_marks_interrupted_sends_unknown(db) -> None:
    from bot.services import outbox as outbox_service
    from bot.services.outbox import Planned

    message = Planned(key="notice:1:chat:1", kind="notice_post", args={"post_id": 1}, user_id=42)
    async with db.transaction() as session:
        assert await outbox_service.plan(session, [message], DAYTIME) == 1
        assert await outbox_service.plan(session, [message, message], DAYTIME) == 0
        [(row_id, _, _)] = await outbox_service.due(session, DAYTIME, 10)
        assert await outbox_service.claim(session, row_id)
        assert not await outbox_service.claim(session, row_id)  # never twice
    async with db.transaction() as session:  # the process died here; on the next start:
        assert await outbox_service.recover_interrupted(session) == 1
        assert (await outbox_service.load(session, row_id)).status == "unknown"
        assert await outbox_service.due(session, DAYTIME, 10) == []
        # A send that could not get through is tried again later, then given up.
        await outbox_service.plan(session, [Planned(key="x", kind="nudge_private", user_id=42)], DAYTIME)
        [(other, _, _)] = await outbox_service.due(session, DAYTIME, 10)
        retry_at = await outbox_service.record_failure(session, other, 1, "gave_up", DAYTIME, retry=True)
        assert retry_at is not None and await outbox_service.due(session, DAYTIME, 10) == []
        assert await outbox_service.record_failure(session, other, 5, "gave_up", DAYTIME, retry=True) is None
        assert (await outbox_service.load(session, other)).status == "failed"


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        ("明天下午3点 | 学习通知", "明天下午3点"),
        ("2026-13-40 25:00 | 内容", "2026-13-40 25:00"),  # meant as a time: refused, not published as text
        ("明天下午三点半呀 | 内容", "明天下午三点半呀"),  # a clock time was read: meant as a time
        ("第一党支部 | 通知", None),
        ("关于开展三会一课的通知 | 各位党员", None),
        ("周五前交材料 | 请按时提交", None),
        ("Next steps | please read", None),
        ("没有竖线的通知", None),
    ],
)
def test_a_bar_splits_off_a_time_only_when_one_was_meant(args: str, phrase: str | None) -> None:
    from zoneinfo import ZoneInfo

    from bot.services.notices import split_schedule

    head, text = split_schedule(args, ZoneInfo("Asia/Shanghai"), DAYTIME)
    assert head == phrase
    assert text == (args.partition("|")[2].strip() if phrase else args)
