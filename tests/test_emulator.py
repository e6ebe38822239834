"""Tests of the loopback Bot API emulator itself, driven by a real aiogram Bot over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    ChatMemberAdministrator,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from tests.emulator import BotAPIEmulator, parse_text

TOKEN = "123456:TEST-TOKEN"
GROUP = -1001234567890
ALICE, BOB = 1001, 1002
ROOT = Path(__file__).resolve().parent.parent


class _FastCloseSession(AiohttpSession):
    """AiohttpSession.close() sleeps 250 ms (for SSL shutdown); pointless on loopback HTTP."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def _make_bot(emu: BotAPIEmulator, token: str = TOKEN) -> Bot:
    return Bot(token, session=_FastCloseSession(api=TelegramAPIServer.from_base(emu.base_url)))


@pytest.fixture
async def emu() -> AsyncIterator[BotAPIEmulator]:
    emulator = BotAPIEmulator(token=TOKEN, bot_id=123456, bot_username="branch_test_bot", bot_name="支部群助手")
    await emulator.start()
    emulator.add_user(ALICE, "Alice", username="alice")
    emulator.add_user(BOB, "Bob")
    emulator.add_chat(GROUP, "supergroup", "第一支部")
    emulator.set_admins(GROUP, [ALICE], creator_id=ALICE)
    yield emulator
    await emulator.stop()
    assert emulator.errors == []


@pytest.fixture
async def bot(emu: BotAPIEmulator) -> AsyncIterator[Bot]:
    b = _make_bot(emu)
    yield b
    await b.session.close()


def _kb(*datas: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=d, callback_data=d) for d in datas]])


# --------------------------------------------------------------------------------------- protocol


async def test_get_me_tokens_methods_and_wire_formats(emu: BotAPIEmulator, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.first_name, me.is_bot) == (123456, "branch_test_bot", "支部群助手", True)

    wrong = _make_bot(emu, "999:WRONG")
    with pytest.raises(TelegramUnauthorizedError):
        await wrong.get_me()
    await wrong.session.close()

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emu.base_url}/bot{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        # GET with query parameters, method names are case-insensitive
        async with http.get(f"{emu.base_url}/bot{TOKEN}/getchatmember?chat_id={GROUP}&user_id={ALICE}") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["result"]["status"] == "creator"
        # JSON bodies work too
        async with http.post(
            f"{emu.base_url}/bot{TOKEN}/sendMessage",
            json={
                "chat_id": GROUP,
                "text": "hi",
                "reply_markup": {"inline_keyboard": [[{"text": "a", "url": "https://x.org"}]]},
            },
        ) as resp:
            assert resp.status == 200
    assert emu.calls_of("sendMessage")[-1].content_type == "application/json"

    await bot.send_message(GROUP, "123")  # a numeric-looking text must stay a string
    call = emu.calls_of("sendMessage")[-1]
    assert call.params == {"chat_id": GROUP, "text": "123"}
    assert call.content_type == "application/x-www-form-urlencoded"  # aiogram: urlencoded unless files
    assert [c.status for c in emu.calls_of("getMe")] == [200, 401]


# ----------------------------------------------------------------------------------- long polling


async def test_long_poll_returns_as_soon_as_update_injected(emu: BotAPIEmulator, bot: Bot) -> None:
    started = time.perf_counter()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.05)
    assert not poll.done()
    update = emu.send_message(GROUP, BOB, "/start@branch_test_bot hello")
    updates = await asyncio.wait_for(poll, 2)
    assert time.perf_counter() - started < 1.0
    assert [u.update_id for u in updates] == [update["update_id"]] == [1]
    msg = updates[0].message
    assert msg is not None and msg.text == "/start@branch_test_bot hello"
    assert msg.entities is not None and (msg.entities[0].type, msg.entities[0].length) == ("bot_command", 22)
    assert emu.pending_updates == 1  # delivered but not confirmed

    # an unconfirmed update is delivered again; offset confirms it
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [1]
    assert await bot.get_updates(offset=2, timeout=0) == []
    await emu.wait_until_consumed(timeout=1)
    assert emu.stats()["confirmed_updates"] == 1

    # limit + timeout expiry
    for i in range(5):
        emu.send_message(ALICE, ALICE, f"m{i}")
    assert [u.update_id for u in await bot.get_updates(offset=2, limit=2)] == [2, 3]
    t = time.perf_counter()
    assert len(await bot.get_updates(offset=7, timeout=1)) == 0
    assert 0.9 < time.perf_counter() - t < 2.0

    # redelivery of an already-confirmed update (idempotency tests)
    emu.redeliver(update)
    again = await bot.get_updates(offset=7, timeout=1)
    assert [u.update_id for u in again] == [1]
    await bot.get_updates(offset=2, timeout=0)
    assert emu.pending_updates == 0


async def test_second_poller_conflict_webhook_and_allowed_updates(emu: BotAPIEmulator, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 2)
    assert await second == []

    with pytest.raises(TelegramBadRequest, match="HTTPS URL must be provided"):
        await bot.set_webhook("http://example.org/hook")
    assert await bot.set_webhook("https://example.org/hook")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates()
    assert (await bot.get_webhook_info()).url == "https://example.org/hook"
    assert await bot.delete_webhook()

    # chat_member updates are only delivered when asked for, like Telegram
    join_msg, join_member = emu.member_joined(GROUP, BOB)
    got = await bot.get_updates(timeout=0, allowed_updates=[])
    assert [u.update_id for u in got] == [join_msg["update_id"]]
    assert got[0].message is not None and got[0].message.new_chat_members[0].id == BOB
    emu.member_left(GROUP, BOB)
    got = await bot.get_updates(offset=join_msg["update_id"] + 1, allowed_updates=["chat_member"])
    assert [u.chat_member.new_chat_member.status for u in got if u.chat_member] == ["left"]
    assert join_member["update_id"] not in [u.update_id for u in got]  # filtered earlier, gone for good


# ------------------------------------------------------------------------------------- validation


async def test_send_message_validation(emu: BotAPIEmulator, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(GROUP, "")
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(GROUP, "<b> </b>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(GROUP, "字" * 4097)
    ok = await bot.send_message(GROUP, "<b>" + "&lt;" * 4096 + "</b>", parse_mode="HTML")
    assert ok.text == "<" * 4096
    with pytest.raises(TelegramBadRequest, match="can't parse entities: Can't find end tag"):
        await bot.send_message(GROUP, "<b>bold", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "div"'):
        await bot.send_message(GROUP, "<div>x</div>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="Unmatched end tag"):
        await bot.send_message(GROUP, "<b><i>x</b></i>", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(GROUP, "x", reply_markup=_kb("确" * 22))  # 66 UTF-8 bytes
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-100999, "x")

    sent = await bot.send_message(
        GROUP, '<a href="https://a.b">链接</a> <tg-spoiler>🙂x</tg-spoiler>', parse_mode="HTML", reply_markup=_kb("ok")
    )
    assert sent.text == "链接 🙂x"
    assert [(e.type, e.offset, e.length) for e in sent.entities or []] == [("text_link", 0, 2), ("spoiler", 3, 3)]
    stored = emu.message(GROUP, sent.message_id)
    assert stored is not None and stored["from"]["id"] == 123456
    assert stored["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "ok"
    assert emu.sent_messages(GROUP)[-1]["message_id"] == sent.message_id

    with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
        await bot.send_message(GROUP, "r", reply_to_message_id=99999)
    reply = await bot.send_message(GROUP, "r", reply_to_message_id=sent.message_id)
    assert reply.reply_to_message is not None and reply.reply_to_message.message_id == sent.message_id


async def test_private_chat_rules(emu: BotAPIEmulator, bot: Bot) -> None:
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(ALICE, "hi")
    emu.send_message(ALICE, ALICE, "/start")
    assert (await bot.send_message(ALICE, "hi")).chat.type == "private"
    emu.user_blocked(ALICE)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(ALICE, "hi")
    emu.user_started(BOB)
    await bot.send_chat_action(BOB, "typing")


async def test_callbacks_and_edits(emu: BotAPIEmulator, bot: Bot) -> None:
    sent = await bot.send_message(GROUP, "投票?", reply_markup=_kb("yes", "no"))
    with pytest.raises(ValueError, match="no button"):
        emu.press_button(GROUP, BOB, sent.message_id, "maybe")
    pressed = emu.press_button(GROUP, BOB, sent.message_id, "yes")
    (update,) = await bot.get_updates(timeout=1)
    cq = update.callback_query
    assert cq is not None and cq.id == pressed["callback_query"]["id"] and cq.data == "yes"
    assert isinstance(cq.message, Message) and cq.message.message_id == sent.message_id
    assert await bot.answer_callback_query(cq.id, text="已记录")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(cq.id)
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query("12345")
    forged = emu.press_button(GROUP, BOB, 777, "x", forged=True)
    with pytest.raises(TelegramBadRequest, match="MESSAGE_TOO_LONG"):
        await bot.answer_callback_query(forged["callback_query"]["id"], text="x" * 201)

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("投票?", chat_id=GROUP, message_id=sent.message_id, reply_markup=_kb("yes", "no"))
    edited = await bot.edit_message_text("结束", chat_id=GROUP, message_id=sent.message_id)
    assert isinstance(edited, Message) and edited.text == "结束" and edited.reply_markup is None
    assert edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=GROUP, message_id=4242)
    user_msg = emu.send_message(GROUP, BOB, "hello")["message"]
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text("x", chat_id=GROUP, message_id=user_msg["message_id"])
    await bot.edit_message_reply_markup(chat_id=GROUP, message_id=sent.message_id, reply_markup=_kb("again"))
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(chat_id=GROUP, message_id=sent.message_id, reply_markup=_kb("again"))
    assert emu.sent_messages(GROUP)[0]["reply_markup"] == {
        "inline_keyboard": [[{"text": "again", "callback_data": "again"}]]
    }
    with pytest.raises(TelegramBadRequest, match="message can't be deleted"):
        await bot.delete_message(GROUP, user_msg["message_id"])
    emu.set_bot_admin(GROUP, True)
    assert await bot.delete_message(GROUP, user_msg["message_id"])
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(GROUP, user_msg["message_id"])
    assert await bot.pin_chat_message(GROUP, sent.message_id)
    assert emu.pinned_messages(GROUP) == [sent.message_id]


# ------------------------------------------------------------------------------------------ faults


async def test_faults_map_to_aiogram_exceptions(emu: BotAPIEmulator, bot: Bot) -> None:
    emu.fail_next("sendMessage", "429", retry_after=7)
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(GROUP, "x")
    assert retry.value.retry_after == 7

    emu.fail_next("sendMessage", "403")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(GROUP, "x")

    emu.fail_next("sendMessage", "migrate", migrate_to=-1009)
    with pytest.raises(TelegramMigrateToChat) as migrate:
        await bot.send_message(GROUP, "x")
    assert migrate.value.migrate_to_chat_id == -1009

    emu.fail_next("sendMessage", "5xx", status=503)
    with pytest.raises(TelegramServerError):
        await bot.send_message(GROUP, "x")

    emu.fail_next("sendMessage", "429_bare")
    with pytest.raises(TelegramAPIError) as bare:  # no parameters → aiogram can't map a bare 429
        await bot.send_message(GROUP, "x")
    assert type(bare.value) is TelegramAPIError

    emu.fail_next("sendMessage", "down")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(GROUP, "x")

    before = len(emu.sent_messages(GROUP))
    emu.fail_next("sendMessage", "lost")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(GROUP, "delivered but unanswered")
    assert len(emu.sent_messages(GROUP)) == before + 1

    # chat-scoped fault with count: only requests for that chat fail
    emu.user_started(ALICE)
    emu.fail_next("sendMessage", "403", count=2, chat_id=ALICE)
    await bot.send_message(GROUP, "fine")
    for _ in range(2):
        with pytest.raises(TelegramForbiddenError):
            await bot.send_message(ALICE, "x")
    await bot.send_message(ALICE, "fine again")

    emu.fail_next("sendMessage", "slow", delay=0.3)
    t = time.perf_counter()
    await bot.send_message(GROUP, "slow")
    assert time.perf_counter() - t >= 0.3

    emu.set_down(True)
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_me()
    emu.set_down(False)
    await bot.get_me()
    assert [c.status for c in emu.calls_of("sendMessage")][:7] == [429, 403, 400, 503, 429, 0, 200]


async def test_world_events_kicked_and_migrated(emu: BotAPIEmulator, bot: Bot) -> None:
    old = -4001
    emu.add_chat(old, "group", "老群")
    added = emu.bot_added(old, ALICE, status="administrator")
    emu.set_admins(old, [], creator_id=ALICE)
    updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [u["update_id"] for u in added]
    mcm = updates[0].my_chat_member
    assert mcm is not None and mcm.new_chat_member.status == "administrator" and mcm.from_user.id == ALICE
    assert updates[1].message is not None and updates[1].message.new_chat_members[0].id == 123456

    admins = await bot.get_chat_administrators(old)
    assert isinstance(admins[0], ChatMemberOwner) and isinstance(admins[-1], ChatMemberAdministrator)
    assert admins[-1].user.id == 123456
    assert (await bot.get_chat_member(old, BOB)).status == "left"
    assert await bot.get_chat_member_count(old) == 2
    assert (await bot.get_chat(old)).title == "老群"

    new = -1004001
    m_old, m_new = emu.migrate_chat(old, new)
    assert m_old["message"]["migrate_to_chat_id"] == new
    assert m_new["message"]["migrate_from_chat_id"] == old and m_new["message"]["chat"]["type"] == "supergroup"
    with pytest.raises(TelegramMigrateToChat) as exc:
        await bot.send_message(old, "x")
    assert exc.value.migrate_to_chat_id == new
    await bot.send_message(new, "in the supergroup")

    emu.bot_removed(new, ALICE)
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the supergroup chat"):
        await bot.send_message(new, "x")
    assert await bot.leave_chat(GROUP)
    with pytest.raises(TelegramForbiddenError, match="not a member"):
        await bot.send_message(GROUP, "x")


async def test_rate_limits(emu: BotAPIEmulator, bot: Bot) -> None:
    emu.configure(enforce_limits=True, per_group_per_minute=3, global_rate_per_sec=5)
    emu.user_started(ALICE)
    await bot.send_message(ALICE, "1")
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(ALICE, "2")
    assert exc.value.retry_after == 1
    for i in range(3):
        await bot.send_message(GROUP, str(i))
    with pytest.raises(TelegramRetryAfter) as exc:
        await bot.send_message(GROUP, "4th in a minute")
    assert 55 <= exc.value.retry_after <= 60
    with pytest.raises(TelegramRetryAfter):  # edits count against the group limit too
        await bot.edit_message_text("e", chat_id=GROUP, message_id=emu.sent_messages(GROUP)[0]["message_id"])
    emu.add_chat(-1005001)
    emu.add_chat(-1005002)
    await bot.send_message(-1005001, "5th successful send within a second")
    with pytest.raises(TelegramRetryAfter):  # → the global limit (5/s here) is reached
        await bot.send_message(-1005002, "x")
    assert emu.rate_limited_count == 4
    assert emu.stats()["rate_limited_count"] == 4
    await asyncio.sleep(1.0)
    await bot.send_message(ALICE, "after a second")


# ------------------------------------------------------------------------------- files, polls, cmds


async def test_multipart_document_photo_and_download(emu: BotAPIEmulator, bot: Bot) -> None:
    payload = "姓名,党费\n张三,10\n".encode()
    msg = await bot.send_document(
        GROUP, BufferedInputFile(payload, filename="党费.csv"), caption="<b>月报</b>", parse_mode="HTML"
    )
    call = emu.calls_of("sendDocument")[-1]
    assert call.content_type == "multipart/form-data"
    assert call.files == {"document": ("党费.csv", payload)}
    assert call.params["document"].startswith("attach://")
    assert msg.document is not None and msg.document.file_name == "党费.csv" and msg.caption == "月报"
    assert msg.document.file_size == len(payload)

    file = await bot.get_file(msg.document.file_id)
    assert file.file_path is not None
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == payload

    again = await bot.send_document(GROUP, msg.document.file_id)  # re-send by file_id
    assert again.document is not None and again.document.file_id == msg.document.file_id
    with pytest.raises(TelegramBadRequest, match="wrong file identifier"):
        await bot.send_document(GROUP, "nonsense")
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_photo(GROUP, BufferedInputFile(b"\x89PNG", filename="p.png"), caption="x" * 1025)
    photo = await bot.send_photo(GROUP, BufferedInputFile(b"\x89PNG", filename="p.png"))
    assert photo.photo is not None and emu.calls_of("sendPhoto")[-1].files["photo"] == ("p.png", b"\x89PNG")
    assert [m["message_id"] for m in emu.sent_messages(GROUP)] == [
        msg.message_id,
        again.message_id,
        photo.message_id,
    ]


async def test_polls_and_commands(emu: BotAPIEmulator, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="at least 2"):
        await bot.send_poll(GROUP, "q?", options=["only"])
    with pytest.raises(TelegramBadRequest, match="more than 10"):
        await bot.send_poll(GROUP, "q?", options=[str(i) for i in range(11)])
    with pytest.raises(TelegramBadRequest, match="question"):
        await bot.send_poll(GROUP, "q" * 301, options=["a", "b"])
    msg = await bot.send_poll(GROUP, "参加吗?", options=["是", "否"], is_anonymous=False)
    assert msg.poll is not None
    emu.poll_answer(msg.poll.id, BOB, [0])
    (update,) = await bot.get_updates(timeout=0)
    assert update.poll_answer is not None and update.poll_answer.option_ids == [0]
    stopped = await bot.stop_poll(GROUP, msg.message_id)
    assert stopped.is_closed and [o.voter_count for o in stopped.options] == [1, 0]
    with pytest.raises(TelegramBadRequest, match="already been closed"):
        await bot.stop_poll(GROUP, msg.message_id)

    cmds = [BotCommand(command="start", description="开始"), BotCommand(command="help", description="帮助")]
    assert await bot.set_my_commands(cmds)
    assert await bot.set_my_commands(cmds[:1], scope=BotCommandScopeChat(chat_id=GROUP), language_code="zh")
    assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
    assert [
        c.command for c in await bot.get_my_commands(scope=BotCommandScopeChat(chat_id=GROUP), language_code="zh")
    ] == ["start"]
    assert emu.bot_commands({"type": "chat", "chat_id": GROUP}, "zh") == [{"command": "start", "description": "开始"}]
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Bad-Cmd", description="x")])
    assert await bot.delete_my_commands()
    assert await bot.get_my_commands() == []
    assert await bot.set_my_description("支部群助手")
    assert await bot.set_my_short_description("短")


# ------------------------------------------------------------------------------ integration + ctl


async def test_dispatcher_polling_end_to_end(emu: BotAPIEmulator, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(f"你好 {message.from_user.first_name}")  # type: ignore[union-attr]

    @dp.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.reply("<b>帮助</b>", parse_mode="HTML")  # sends reply_parameters with chat_id

    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, close_bot_session=False))
    try:
        for uid in (ALICE, BOB):
            emu.send_message(uid, uid, "/start")
        calls = await emu.wait_for_call("sendMessage", count=2, timeout=5)
        assert sorted(c.params["text"] for c in calls) == ["你好 Alice", "你好 Bob"]
        await emu.wait_until_consumed(timeout=2)
        get_updates = emu.calls_of("getUpdates")
        assert get_updates[-1].params["allowed_updates"] == ["message"]  # resolved from the handlers

        mark = emu.last_seq
        asked = emu.send_message(GROUP, BOB, "/help@branch_test_bot")
        (reply,) = await emu.wait_for_call("sendMessage", since=mark)
        assert reply.params["reply_parameters"] == {"message_id": asked["message"]["message_id"], "chat_id": GROUP}
        assert reply.result["reply_to_message"]["text"] == "/help@branch_test_bot"
        assert reply.result["text"] == "帮助" and reply.result["entities"][0]["type"] == "bold"
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)
    with pytest.raises(AssertionError, match="1× editMessageText"):
        await emu.wait_for_call("editMessageText", timeout=0.05)


async def test_webhook_delivery_and_reply_in_response(emu: BotAPIEmulator, bot: Bot) -> None:
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def start(message: Message) -> object:
        return message.answer("webhook reply")  # a returned method travels back in the webhook response

    app = web.Application()
    SimpleRequestHandler(dp, bot, secret_token="s3cret", handle_in_background=False).register(app, path="/hook")
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        await bot.set_webhook(url, secret_token="wrong")
        emu.send_message(ALICE, ALICE, "/start")
        await emu.wait_for(lambda: emu._webhook_last_error is not None, timeout=2)
        assert "401" in ((await bot.get_webhook_info()).last_error_message or "")
        assert emu.pending_updates == 1  # not confirmed, retried

        await bot.set_webhook(url, secret_token="s3cret")
        (call,) = await emu.wait_for_call("sendMessage", timeout=3)
        assert call.content_type == "webhook-reply" and call.ok
        assert call.params == {"chat_id": ALICE, "text": "webhook reply"}
        await emu.wait_until_consumed(timeout=2)
        assert emu.webhook_deliveries == 1
    finally:
        await bot.delete_webhook()
        await runner.cleanup()


async def test_control_api(emu: BotAPIEmulator, bot: Bot) -> None:
    async with aiohttp.ClientSession(base_url=emu.base_url) as http:
        raw = {
            "message": {
                "message_id": 50,
                "date": 0,
                "chat": {"id": BOB, "type": "private"},
                "text": "raw",
                "from": {"id": BOB, "is_bot": False, "first_name": "Bob"},
            }
        }
        async with http.post("/_emulator/updates", json=[raw, {"update_id": 100, **raw}]) as resp:
            assert (await resp.json())["result"] == [1, 100]
        async with http.post(
            "/_emulator/world",
            json=[
                {"op": "send_message", "chat_id": GROUP, "user_id": ALICE, "text": "/help"},
                {"op": "fail_next", "method": "sendMessage", "kind": "429", "retry_after": 3},
            ],
        ) as resp:
            result = (await resp.json())["result"]
            assert result[0]["update_id"] == 101 and result[1]["kind"] == "429"
        async with http.post("/_emulator/fault", json={"method": "getMe", "kind": "5xx", "status": 500}) as resp:
            assert resp.status == 200

        updates = await bot.get_updates(timeout=0)
        assert [u.update_id for u in updates] == [1, 100, 101]
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(BOB, "x")
        with pytest.raises(TelegramServerError):
            await bot.get_me()
        await bot.send_message(BOB, "ok", reply_to_message_id=50)  # the raw message was remembered
        await bot.get_updates(offset=102, timeout=0)

        async with http.get("/_emulator/stats") as resp:
            stats = (await resp.json())["result"]
        assert stats["methods"]["sendMessage"] == 2 and stats["pending_updates"] == 0
        assert stats["confirmed_updates"] == 3
        async with http.get("/_emulator/calls", params={"method": "sendMessage", "since": "0"}) as resp:
            calls = (await resp.json())["result"]["calls"]
        assert [c["status"] for c in calls] == [429, 200]
        since = calls[-1]["seq"]
        async with http.get("/_emulator/calls", params={"since": str(since)}) as resp:
            assert [c["method"] for c in (await resp.json())["result"]["calls"]] == ["sendMessage", "getUpdates"]
        async with http.post("/_emulator/reset_calls") as resp:
            assert resp.status == 200
        assert emu.calls == []


async def test_standalone_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.emulator",
        "--port",
        "0",
        "--token",
        TOKEN,
        "--enforce-limits",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line.startswith("EMULATOR_URL=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        remote = BotAPIEmulator(token=TOKEN)
        remote.base_url = url
        bot = _make_bot(remote)
        try:
            assert (await bot.get_me()).username == "branch_test_bot"
            async with aiohttp.ClientSession(base_url=url) as http:
                await http.post(
                    "/_emulator/world",
                    json={"op": "send_message", "chat_id": ALICE, "user_id": ALICE, "text": "/start"},
                )
                (update,) = await bot.get_updates(timeout=5)
                assert update.message is not None and update.message.text == "/start"
                await bot.send_message(ALICE, "hi")
                with pytest.raises(TelegramRetryAfter):  # --enforce-limits: 1 msg/s per private chat
                    await bot.send_message(ALICE, "again")
        finally:
            await bot.session.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


def test_markup_parsers() -> None:
    text, entities = parse_text('  <b>粗体 😀</b>\n<pre><code class="language-python">x</code></pre> ', "HTML")
    assert text == "粗体 😀\nx"
    assert entities == [
        {"type": "bold", "offset": 0, "length": 5},
        {"type": "pre", "offset": 6, "length": 1, "language": "python"},
    ]
    assert parse_text("a &amp; b &#x4e2d; &unknown;", "HTML")[0] == "a & b 中 &unknown;"
    assert parse_text("*bold* \\. _it_ ||sp||", "MarkdownV2")[0] == "bold . it sp"
    with pytest.raises(ValueError, match="Character '.' is reserved"):
        parse_text("1. item", "MarkdownV2")
    with pytest.raises(ValueError, match="byte offset 3"):
        parse_text("党<x>", "HTML")
