"""The monthly report on schedule: once per month whatever the schedule does, and to the group's own
secretary, not to every secretary above it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.services.clock import FrozenClock
from storage.models import Chat, Unit, UnitRole
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

SHANGHAI = ZoneInfo("Asia/Shanghai")
GROUP, OTHER_GROUP = -1001234567111, -1001234567122
SECRETARY, OTHER_SECRETARY, PARK_SECRETARY, ALICE = 2001, 2002, 2003, 3001


def local(day: int, hour: int, minute: int = 0, month: int = 11, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记")
        emu.add_user(OTHER_SECRETARY, "王", "书记")
        emu.add_user(PARK_SECRETARY, "园区", "书记")
        emu.add_user(ALICE, "Alice")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.add_chat(OTHER_GROUP, "supergroup", "第二党支部")
        emu.set_admins(GROUP, [], creator_id=SECRETARY)
        emu.set_admins(OTHER_GROUP, [], creator_id=OTHER_SECRETARY)
        yield emu


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(local(10, 9))


def harness(emulator, database_url, clock) -> BotHarness:
    return BotHarness(emulator, database_url, clock=clock, group_messages_per_minute=1200)


def photos(emulator: BotAPIEmulator, user_id: int) -> list[dict]:
    return [m for m in emulator.sent_messages(user_id) if m.get("photo")]


def last(emulator, chat_id) -> dict:
    return emulator.sent_messages(chat_id)[-1]


async def a_group(emulator, bot) -> None:
    emulator.bot_added(GROUP, SECRETARY, status="administrator")
    await bot.settle()
    emulator.send_message(GROUP, ALICE, "到")
    emulator.send_message(SECRETARY, SECRETARY, "/start")
    await bot.settle()


async def test_changing_the_day_after_the_report_went_out_does_not_send_the_month_again(
    emulator, database_url, clock
) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group(emulator, bot)
        clock.set(local(1, 9, 1, month=12))
        await bot.settle()
        assert len(photos(emulator, SECRETARY)) == 1  # November's report, on 1 December
        # Later that morning the secretary moves the report to the 3rd.
        clock.set(local(1, 10, month=12))
        emulator.send_message(GROUP, SECRETARY, "/settings report 3 18:00")
        await bot.settle()
        clock.set(local(3, 18, 1, month=12))
        await bot.settle()
        captions = [m["caption"] for m in photos(emulator, SECRETARY)]
        assert len(captions) == 1, captions


async def test_a_time_zone_change_after_the_report_went_out_does_not_send_it_again(
    emulator, database_url, clock
) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group(emulator, bot)
        clock.set(local(1, 9, 1, month=12))  # 01:01 UTC
        await bot.settle()
        assert len(photos(emulator, SECRETARY)) == 1
        clock.set(local(1, 9, 30, month=12))  # 30 November 17:30 in Los Angeles
        emulator.send_message(GROUP, SECRETARY, "/settings tz America/Los_Angeles")
        await bot.settle()
        clock.set(datetime(2026, 12, 1, 17, 1, tzinfo=UTC))  # 1 December 09:01 in Los Angeles
        await bot.settle()
        captions = [m["caption"] for m in photos(emulator, SECRETARY)]
        assert len(captions) == 1, captions


@pytest.mark.xfail(
    strict=True, reason="known gap: a time-zone change that moves this month's run into the past skips it"
)
async def test_a_time_zone_change_before_the_report_went_out_still_sends_it(emulator, database_url, clock) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group(emulator, bot)
        emulator.send_message(GROUP, SECRETARY, "/settings tz America/Los_Angeles")
        await bot.settle()
        # 1 December 13:00 in Shanghai, 30 November 21:00 in Los Angeles: the report is due in 12 hours.
        clock.set(datetime(2026, 12, 1, 5, 0, tzinfo=UTC))
        emulator.send_message(GROUP, SECRETARY, "/settings tz Asia/Shanghai")
        await bot.settle()
        clock.set(datetime(2026, 12, 2, 1, 1, tzinfo=UTC))  # 2 December 09:01 Shanghai, inside the 3-day grace
        await bot.settle()
        assert len(photos(emulator, SECRETARY)) == 1


async def test_a_park_secretary_does_not_get_every_branchs_report(emulator, database_url, clock) -> None:
    async with harness(emulator, database_url, clock) as bot:
        await a_group(emulator, bot)
        emulator.bot_added(OTHER_GROUP, OTHER_SECRETARY, status="administrator")
        emulator.send_message(OTHER_SECRETARY, OTHER_SECRETARY, "/start")
        emulator.send_message(PARK_SECRETARY, PARK_SECRETARY, "/start")
        await bot.settle()
        async with bot.app.db.transaction() as session:
            park = Unit(name="园区党委", kind="committee")
            session.add(park)
            await session.flush()
            for telegram_id in (GROUP, OTHER_GROUP):
                chat = await session.scalar(select(Chat).where(Chat.telegram_id == telegram_id))
                chat.unit_id = park.id
            session.add(UnitRole(unit_id=park.id, user_id=PARK_SECRETARY, role="secretary"))
        clock.set(local(1, 9, 1, month=12))
        await bot.settle()
        assert len(photos(emulator, SECRETARY)) == 1 and len(photos(emulator, OTHER_SECRETARY)) == 1
        # although each branch's own secretary got theirs.
        assert len(photos(emulator, PARK_SECRETARY)) == 0, [m["caption"][:30] for m in photos(emulator, PARK_SECRETARY)]
