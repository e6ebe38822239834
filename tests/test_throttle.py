"""The per-user flood guard, through the emulator: a flood of commands or button presses from one user is
cut to the limit with one warning, costs no database work beyond recording the update ids, and touches
neither other users, nor superusers, nor ordinary group chatter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from bot.config import Settings
from bot.services.clock import FrozenClock
from bot.throttle import FloodGuard, Verdict
from storage.models import Base, ChatMember, NoticeAck
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

GROUP = -1001234567093
SECRETARY, MEMBER, OTHER, SUPERUSER, CHATTY, STARTED = 9001, 9002, 9003, 9004, 9005, 9006
DAYTIME = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: outside quiet hours
BURST = Settings.model_fields["throttle_burst"].default
PER_MINUTE = Settings.model_fields["throttle_per_minute"].default
FLOOD = 1000
WARNING = "操作太频繁"
HELP = "/help"  # the help text lists the commands, /help among them


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        for user_id in (MEMBER, OTHER, SUPERUSER, CHATTY, STARTED):
            emu.add_user(user_id, f"党员{user_id}")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.set_admins(GROUP, [], creator_id=SECRETARY)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(DAYTIME)


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str, clock: FrozenClock) -> AsyncIterator[BotHarness]:
    # Outbound limits lifted: the replies to a flood would otherwise take minutes to leave.
    lifted = {
        "group_messages_per_minute": 1200,
        "private_messages_per_second": 1000.0,
        "global_messages_per_second": 1000.0,
    }
    async with BotHarness(
        emulator, database_url, clock=clock, superuser_ids=frozenset({SUPERUSER}), **lifted
    ) as harness:
        yield harness


def texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [message.get("text", "") for message in emulator.sent_messages(chat_id)]


def count(emulator: BotAPIEmulator, chat_id: int, mark: str) -> int:
    return sum(mark in text for text in texts(emulator, chat_id))


async def row_counts(bot: BotHarness) -> dict[str, int]:
    async with bot.app.db.transaction() as session:
        return {
            table.name: await session.scalar(select(func.count()).select_from(table))
            for table in Base.metadata.sorted_tables
        }


def grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


async def joined_group(emulator: BotAPIEmulator, bot: BotHarness) -> None:
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    await emulator.wait_for_call("getChatAdministrators")
    await bot.settle()


async def test_a_flood_of_commands_in_private_is_cut_to_the_limit_with_one_warning(emulator, bot, clock) -> None:
    for user_id in (MEMBER, OTHER):  # seen and started before: the flood itself has nothing to record
        emulator.send_message(user_id, user_id, "/start")
    await bot.settle()
    clock.advance(minutes=5)
    before = await row_counts(bot)

    updates = []
    for i in range(FLOOD):
        updates.append(emulator.send_message(MEMBER, MEMBER, HELP))
        if i % 100 == 0:  # someone else at the same time
            emulator.send_message(OTHER, OTHER, HELP)
    await bot.settle(timeout=60)
    assert count(emulator, MEMBER, HELP) == BURST
    assert count(emulator, MEMBER, WARNING) == 1
    assert count(emulator, OTHER, HELP) == FLOOD // 100 and count(emulator, OTHER, WARNING) == 0
    # Dropped or not, every update's id is recorded, and nothing else was written.
    assert grown(before, await row_counts(bot)) == {"processed_updates": FLOOD + FLOOD // 100}

    # Still within the episode: the sustained rate lets a few through, and there is no second warning.
    handled = BURST
    clock.advance(seconds=10)
    for _ in range(50):
        emulator.send_message(MEMBER, MEMBER, HELP)
    await bot.settle()
    handled += int(10 * PER_MINUTE / 60)
    assert count(emulator, MEMBER, HELP) == handled
    assert count(emulator, MEMBER, WARNING) == 1

    # Quiet for a while: the episode is over, commands work again, without a warning.
    clock.advance(minutes=2)
    for _ in range(5):
        emulator.send_message(MEMBER, MEMBER, HELP)
    await bot.settle()
    handled += 5
    assert count(emulator, MEMBER, HELP) == handled
    assert count(emulator, MEMBER, WARNING) == 1

    # The next flood is a new episode, with its own warning.
    for _ in range(100):
        emulator.send_message(MEMBER, MEMBER, HELP)
    await bot.settle()
    handled += BURST - 5
    assert count(emulator, MEMBER, HELP) == handled
    assert count(emulator, MEMBER, WARNING) == 2

    # A dropped update that Telegram delivers again (after a restart, say) is not handled then.
    clock.advance(minutes=5)
    emulator.redeliver(updates[-1])
    await bot.settle()
    assert count(emulator, MEMBER, HELP) == handled


async def test_a_flood_of_button_presses_is_answered_but_does_nothing_beyond_the_limit(emulator, bot, clock) -> None:
    await joined_group(emulator, bot)
    emulator.send_message(GROUP, SECRETARY, "/notice 周五晚7点召开支部党员大会")
    await bot.settle()
    draft = emulator.sent_messages(GROUP)[-1]
    publish = next(
        b["callback_data"]
        for row in draft["reply_markup"]["inline_keyboard"]
        for b in row
        if b["text"].startswith("📤")
    )
    emulator.press_button(GROUP, SECRETARY, draft["message_id"], publish)
    emulator.send_message(GROUP, MEMBER, "大家好")
    emulator.send_message(GROUP, OTHER, "大家好")
    await bot.settle()
    post = next(m for m in reversed(emulator.sent_messages(GROUP)) if "📢" in m.get("text", ""))
    ack = post["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    clock.advance(minutes=5)
    before = await row_counts(bot)

    presses = [emulator.press_button(GROUP, MEMBER, post["message_id"], ack) for _ in range(FLOOD)]
    emulator.press_button(GROUP, OTHER, post["message_id"], ack)
    await bot.settle(timeout=60)

    ids = [press["callback_query"]["id"] for press in presses]
    calls = [call for call in emulator.calls_of("answerCallbackQuery") if call.params["callback_query_id"] in ids]
    answers = {call.params["callback_query_id"]: call for call in calls}
    assert len(calls) == len(answers) == FLOOD  # every press answered, once
    said = [answers[query_id].params.get("text") or "" for query_id in ids]
    assert sum("已确认" in text or "确认过" in text for text in said) == BURST  # confirmed, then "already"
    [warning] = [answers[query_id] for query_id, text in zip(ids, said, strict=True) if WARNING in text]
    assert warning.params.get("show_alert") in (True, "true")
    assert said.count("") == FLOOD - BURST - 1  # the rest stop the spinner and say nothing
    assert count(emulator, GROUP, WARNING) == 0  # nothing in the group
    assert grown(before, await row_counts(bot)) == {"processed_updates": FLOOD + 1, "notice_acks": 2}
    async with bot.app.db.transaction() as session:
        acks = (await session.execute(select(NoticeAck.user_id))).scalars().all()
    assert sorted(acks) == [MEMBER, OTHER]


async def test_a_command_flood_in_a_group_is_warned_once_privately_or_else_in_the_group(emulator, bot, clock) -> None:
    await joined_group(emulator, bot)
    emulator.send_message(STARTED, STARTED, "/start")
    await bot.settle()
    clock.advance(minutes=5)
    before = count(emulator, GROUP, HELP)
    for _ in range(3 * BURST):
        emulator.send_message(GROUP, MEMBER, HELP)  # has never written to the bot
        emulator.send_message(GROUP, STARTED, HELP)
    await bot.settle(timeout=30)
    assert count(emulator, GROUP, HELP) - before == 2 * BURST
    [in_group] = [m for m in emulator.sent_messages(GROUP) if WARNING in m.get("text", "")]
    assert in_group["reply_to_message"]["from"]["id"] == MEMBER
    assert count(emulator, STARTED, WARNING) == 1


async def test_group_chatter_is_not_throttled_and_keeps_the_roster(emulator, bot) -> None:
    await joined_group(emulator, bot)
    before = count(emulator, GROUP, HELP)
    for i in range(FLOOD):
        emulator.send_message(GROUP, CHATTY, f"收到 {i}")
    await bot.settle(timeout=60)
    async with bot.app.db.transaction() as session:
        on_roster = await session.scalar(select(func.count()).where(ChatMember.user_id == CHATTY))
    assert on_roster == 1
    # The chatter counted for nothing: a full burst of commands still goes through.
    for _ in range(BURST):
        emulator.send_message(GROUP, CHATTY, HELP)
    await bot.settle()
    assert count(emulator, GROUP, HELP) - before == BURST
    assert count(emulator, GROUP, WARNING) == 0


async def test_superusers_are_not_throttled(emulator, bot) -> None:
    for _ in range(3 * BURST):
        emulator.send_message(SUPERUSER, SUPERUSER, HELP)
    await bot.settle(timeout=30)
    assert count(emulator, SUPERUSER, HELP) == 3 * BURST
    assert count(emulator, SUPERUSER, WARNING) == 0


def test_the_guard_forgets_idle_senders_and_keeps_the_throttled() -> None:
    clock = FrozenClock(DAYTIME)
    guard = FloodGuard(clock, burst=2, per_minute=60)
    assert [guard.check(1) for _ in range(4)] == [Verdict.PASS, Verdict.PASS, Verdict.WARN, Verdict.DROP]
    for sender in range(1000, 1000 + FloodGuard.PRUNE_AT - 1):  # the guard is full
        guard.check(sender)
    clock.advance(seconds=1)  # one token back for everyone: sender 1 is still throttled, the rest are full
    assert guard.check(1) is Verdict.PASS
    guard.check(-1)  # a new sender when the guard is full: the idle ones are forgotten
    assert len(guard) == 2
    assert guard.check(1) is Verdict.DROP  # same episode: no second warning
    clock.advance(seconds=2)
    assert [guard.check(1) for _ in range(3)] == [Verdict.PASS, Verdict.PASS, Verdict.WARN]
