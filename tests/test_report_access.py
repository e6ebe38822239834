"""Reports name every member: someone kicked from the group (and so from its committee) gets none, by link
or on the 1st."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.services.clock import FrozenClock
from storage.models import Chat
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP = -1001234567111
SECRETARY, ALICE, BOB = 2001, 3001, 3002


def local(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        emu.add_user(ALICE, "Alice")
        emu.add_user(BOB, "Bob")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.set_admins(GROUP, [ALICE], creator_id=SECRETARY)  # Alice: a 委员 (Telegram admin)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(local(10, 9))


def photos(emulator, user_id) -> list[dict]:
    return [m for m in emulator.sent_messages(user_id) if m.get("photo")]


async def setup(emulator, bot) -> int:
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    for user_id in (SECRETARY, ALICE, BOB):
        emulator.send_message(GROUP, user_id, "到")
    emulator.send_message(ALICE, ALICE, "/start")
    await bot.settle()
    async with bot.app.db.transaction() as session:
        return (await session.scalar(select(Chat).where(Chat.telegram_id == GROUP))).id


async def kick_alice(emulator, bot) -> None:
    emulator.set_admins(GROUP, [], creator_id=SECRETARY)  # Telegram drops her admin rights with her
    emulator.member_left(GROUP, ALICE, by_user_id=SECRETARY)
    await bot.settle()


async def test_a_committee_member_kicked_from_the_group_gets_no_report(emulator, database_url, clock) -> None:
    async with BotHarness(emulator, database_url, clock=clock) as bot:
        chat_pk = await setup(emulator, bot)
        await kick_alice(emulator, bot)
        emulator.send_message(ALICE, ALICE, f"/start rpt_{chat_pk}_202611")
        await bot.settle()
        assert not photos(emulator, ALICE)
        assert not emulator.calls_of("sendDocument", chat_id=ALICE)


async def test_a_kicked_committee_member_gets_no_monthly_report(emulator, database_url, clock) -> None:
    async with BotHarness(emulator, database_url, clock=clock) as bot:
        await setup(emulator, bot)  # the secretary never started the bot: the committee gets it
        await kick_alice(emulator, bot)
        clock.set(local(1, 9, 1, month=12))
        await bot.settle()
        assert not photos(emulator, ALICE)
