"""The production Dispatcher, polling the emulator over HTTP: groups, roles, help, settings, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.services import chats as chat_service
from storage.models import Chat, User
from tests.emulator import BotAPIEmulator
from tests.harness import BotHarness

GROUP = -1001234567890
SECRETARY, DEPUTY, MEMBER, ENGLISH = 1001, 1002, 1003, 1004


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "李", "书记", username="li_shuji")
        emu.add_user(DEPUTY, "王", "委员")
        emu.add_user(MEMBER, "张三")
        emu.add_user(ENGLISH, "Tom", language_code="en")
        emu.add_chat(GROUP, "supergroup", "第一党支部")
        emu.set_admins(GROUP, [DEPUTY], creator_id=SECRETARY)
        yield emu


@pytest.fixture
async def bot(emulator: BotAPIEmulator, database_url: str) -> AsyncIterator[BotHarness]:
    async with BotHarness(emulator, database_url) as harness:
        yield harness


async def joined_group(emulator: BotAPIEmulator, bot: BotHarness, status: str = "administrator") -> None:
    emulator.bot_added(GROUP, SECRETARY, status=status)
    await bot.settle()
    await emulator.wait_for_call("getChatAdministrators")
    await bot.settle()


def texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [message.get("text", "") for message in emulator.sent_messages(chat_id)]


async def chat_row(bot: BotHarness, telegram_id: int) -> Chat | None:
    async with bot.app.db.transaction() as session:
        return await chat_service.get_chat(session, telegram_id)


async def test_added_to_group_welcomes_and_asks_for_admin(emulator, bot) -> None:
    await joined_group(emulator, bot, status="member")
    [welcome] = texts(emulator, GROUP)
    assert "支部群助手" in welcome and "第一党支部" in welcome and "管理员" in welcome
    chat = await chat_row(bot, GROUP)
    assert chat.is_active and not chat.bot_is_admin

    emulator.bot_promoted(GROUP, SECRETARY)
    await bot.settle()
    assert "已获得管理员权限" in texts(emulator, GROUP)[-1]
    assert (await chat_row(bot, GROUP)).bot_is_admin


async def test_help_shows_each_role_its_own_commands(emulator, bot) -> None:
    await joined_group(emulator, bot)
    emulator.send_message(GROUP, SECRETARY, "/help")
    emulator.send_message(GROUP, DEPUTY, "/help@branch_test_bot")
    emulator.send_message(GROUP, MEMBER, "/help")
    await bot.settle()
    helps = texts(emulator, GROUP)[1:]  # read-only updates run side by side, so in any order
    committee_helps = [text for text in helps if "/settings" in text]
    [member_help] = [text for text in helps if "/settings" not in text]
    assert len(committee_helps) == 2
    assert "/help" in member_help and "支部委员" in member_help

    emulator.send_message(ENGLISH, ENGLISH, "/help")
    await bot.settle()
    [private_help] = texts(emulator, ENGLISH)
    assert "Commands" in private_help and "/start" in private_help


async def test_redelivered_update_changes_nothing_and_is_answered_once(emulator, bot) -> None:
    await joined_group(emulator, bot)
    update = emulator.send_message(GROUP, SECRETARY, "/settings lang en")
    await bot.settle()
    emulator.redeliver(update)
    emulator.redeliver(update)
    await bot.settle()
    replies = [m for m in emulator.sent_messages(GROUP) if "Saved" in m.get("text", "")]
    assert len(replies) == 1
    assert (await chat_row(bot, GROUP)).language == "en"


async def test_member_cannot_change_settings_by_command_or_button(emulator, bot) -> None:
    await joined_group(emulator, bot)
    emulator.send_message(GROUP, MEMBER, "/settings")
    emulator.send_message(GROUP, MEMBER, "/settings lang en")
    await bot.settle()
    refusals = texts(emulator, GROUP)[1:]
    assert len(refusals) == 2 and all("仅限支部委员" in text for text in refusals)

    emulator.send_message(GROUP, DEPUTY, "/settings")
    await bot.settle()
    panel = emulator.sent_messages(GROUP)[-1]
    emulator.press_button(GROUP, MEMBER, panel["message_id"], "st:lang:en")
    await bot.settle()
    [answer] = emulator.calls_of("answerCallbackQuery")
    assert "仅限支部委员" in answer.params["text"] and answer.params.get("show_alert") in (True, "true")
    assert (await chat_row(bot, GROUP)).language is None


async def test_committee_changes_language_timezone_and_quiet_hours_with_buttons(emulator, bot) -> None:
    await joined_group(emulator, bot)
    emulator.send_message(GROUP, DEPUTY, "/settings")
    await bot.settle()
    panel = emulator.sent_messages(GROUP)[-1]
    assert "Asia/Shanghai" in panel["text"] and "22:00–07:00" in panel["text"]
    message_id = panel["message_id"]

    emulator.press_button(GROUP, DEPUTY, message_id, "st:lang:en")
    await bot.settle()
    assert "Group settings" in emulator.message(GROUP, message_id)["text"]
    emulator.press_button(GROUP, DEPUTY, message_id, "st:tzmenu:")
    await bot.settle()
    emulator.press_button(GROUP, DEPUTY, message_id, "st:tz:5")  # Europe/London
    await bot.settle()
    emulator.press_button(GROUP, DEPUTY, message_id, "st:quietmenu:")
    await bot.settle()
    emulator.press_button(GROUP, DEPUTY, message_id, "st:quiet:3")  # off
    await bot.settle()

    chat = await chat_row(bot, GROUP)
    assert (chat.language, chat.timezone, chat.quiet_start) == ("en", "Europe/London", "")
    final = emulator.message(GROUP, message_id)["text"]
    assert "Europe/London" in final and "off" in final
    assert all(call.ok for call in emulator.calls_of("answerCallbackQuery"))


@pytest.mark.parametrize(
    "data",
    ["st:tz:99", "st:tz:-1", "st:quiet:x", "st:bogus:1", "st:lang:fr", "st", "zz:1:2", "st:tz:1:extra"],
)
async def test_forged_settings_buttons_are_refused_and_change_nothing(emulator, bot, data) -> None:
    await joined_group(emulator, bot)
    emulator.send_message(GROUP, DEPUTY, "/settings")
    await bot.settle()
    panel = emulator.sent_messages(GROUP)[-1]
    emulator.press_button(GROUP, DEPUTY, panel["message_id"], data, forged=True)
    await bot.settle()
    [answer] = emulator.calls_of("answerCallbackQuery")
    assert answer.ok and answer.params["text"]
    chat = await chat_row(bot, GROUP)
    assert (chat.language, chat.timezone, chat.quiet_start) == (None, None, None)


async def test_bad_setting_values_get_a_clear_answer(emulator, bot) -> None:
    await joined_group(emulator, bot)
    emulator.send_message(GROUP, DEPUTY, "/settings tz Mars/<b>Olympus</b>")
    emulator.send_message(GROUP, DEPUTY, "/settings quiet 25:00-07:00")
    emulator.send_message(GROUP, DEPUTY, "/settings colour red")
    await bot.settle()
    answers = texts(emulator, GROUP)[1:]  # updates that change nothing run side by side: any order
    [bad_zone] = [text for text in answers if "无法识别时区" in text]
    assert "<b>Olympus</b>" in bad_zone  # echoed as text, not as markup
    assert any("22:00-07:00" in text and "格式" in text for text in answers)
    assert any("/settings tz" in text for text in answers)
    chat = await chat_row(bot, GROUP)
    assert (chat.timezone, chat.quiet_start) == (None, None)


async def test_group_title_with_html_is_shown_escaped(emulator, bot) -> None:
    emulator.add_chat(-1009, "supergroup", "<script>alert(1)</script> & 支部")
    emulator.bot_added(-1009, SECRETARY)
    await bot.settle()
    [welcome] = texts(emulator, -1009)
    assert "<script>alert(1)</script> & 支部" in welcome


async def test_removed_bot_marks_group_inactive_and_return_reactivates(emulator, bot) -> None:
    await joined_group(emulator, bot)
    emulator.bot_removed(GROUP, SECRETARY)
    await bot.settle()
    assert not (await chat_row(bot, GROUP)).is_active
    emulator.bot_added(GROUP, SECRETARY)
    await bot.settle()
    assert (await chat_row(bot, GROUP)).is_active
    assert len([t for t in texts(emulator, GROUP) if "支部群助手" in t]) == 2


async def test_migrated_group_keeps_committee_and_settings(emulator, bot) -> None:
    old, new = -4242, -1004242
    emulator.add_chat(old, "group", "党小组")
    emulator.set_admins(old, [DEPUTY], creator_id=SECRETARY)
    emulator.bot_added(old, SECRETARY, status="administrator")
    await bot.settle()
    await emulator.wait_for_call("getChatAdministrators", lambda c: str(c.params["chat_id"]) == str(old))
    await bot.settle()
    emulator.send_message(old, DEPUTY, "/settings lang en")
    await bot.settle()
    emulator.migrate_chat(old, new)
    await bot.settle()
    emulator.send_message(new, DEPUTY, "/settings tz Asia/Tokyo")
    await bot.settle()
    assert "Saved" in texts(emulator, new)[-1]
    chat = await chat_row(bot, new)
    assert (chat.language, chat.timezone, chat.previous_telegram_id) == ("en", "Asia/Tokyo", old)
    assert await chat_row(bot, old) is None


async def test_reply_to_a_chat_that_migrated_meanwhile_follows_it(emulator, bot) -> None:
    old, new = -5151, -1005151
    emulator.add_chat(old, "group", "老群")
    emulator.bot_added(old, SECRETARY)
    await bot.settle()
    emulator.fail_next("sendMessage", "migrate", chat_id=old, migrate_to=new)
    emulator.add_chat(new, "supergroup", "老群")
    emulator.send_message(old, MEMBER, "/help")
    await bot.settle()
    assert any("/help" in t for t in texts(emulator, new))
    assert (await chat_row(bot, new)).previous_telegram_id == old


async def test_replies_survive_429_and_server_errors(emulator, bot) -> None:
    emulator.fail_next("sendMessage", "429", retry_after=1)
    emulator.fail_next("sendMessage", "5xx", count=2)
    emulator.fail_next("sendMessage", "429_bare")
    emulator.send_message(MEMBER, MEMBER, "/help")
    await bot.settle(timeout=20)
    assert len(texts(emulator, MEMBER)) == 1
    statuses = [call.status for call in emulator.calls_of("sendMessage")]
    assert statuses == [429, 502, 502, 429, 200]


async def test_private_start_introduces_the_bot_and_records_that_the_user_started_it(emulator, bot) -> None:
    emulator.send_message(MEMBER, MEMBER, "/start")
    emulator.send_message(ENGLISH, ENGLISH, "/start somethingunknown")
    emulator.send_message(ENGLISH, ENGLISH, "/nosuchcommand")
    await bot.settle()
    [intro] = emulator.sent_messages(MEMBER)
    assert "支部群助手" in intro["text"]
    button = intro["reply_markup"]["inline_keyboard"][0][0]
    assert button["url"] == "https://t.me/branch_test_bot?startgroup=1"
    english = texts(emulator, ENGLISH)  # the two updates change nothing, so they may be answered in any order
    assert any("Branch Assistant" in text for text in english) and any("no such command" in text for text in english)
    async with bot.app.db.transaction() as session:
        users = {u.id: u for u in (await session.execute(select(User))).scalars()}
    assert users[MEMBER].started_bot and users[ENGLISH].started_bot


async def test_members_are_observed_from_messages_joins_and_leaves(emulator, bot) -> None:
    from bot.services.people import roster_size

    await joined_group(emulator, bot)
    emulator.send_message(GROUP, MEMBER, "大家好")
    emulator.member_joined(GROUP, 2001)
    emulator.member_joined(GROUP, 2002)
    emulator.member_left(GROUP, 2002)
    await bot.settle()
    chat = await chat_row(bot, GROUP)
    async with bot.app.db.transaction() as session:
        # secretary and deputy (admins), the member who spoke, and the one who joined and stayed
        assert await roster_size(session, chat.id) == 4


async def test_a_failing_handler_rolls_back_apologises_and_can_be_retried(emulator, bot, monkeypatch) -> None:
    await joined_group(emulator, bot)
    real_change = chat_service.change_settings

    async def broken(session, chat, actor_id, **changes):
        await real_change(session, chat, actor_id, **changes)  # the change is made, then the handler fails
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(chat_service, "change_settings", broken)
    update = emulator.send_message(GROUP, DEPUTY, "/settings lang en")
    await bot.settle()
    assert "出了点问题" in texts(emulator, GROUP)[-1]
    assert (await chat_row(bot, GROUP)).language is None  # rolled back

    monkeypatch.setattr(chat_service, "change_settings", real_change)
    emulator.redeliver(update)  # the update was not recorded as handled, so a redelivery is processed
    await bot.settle()
    assert (await chat_row(bot, GROUP)).language == "en"
