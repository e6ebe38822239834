"""End to end: `python -m bot` as a real process against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.emulator import BotAPIEmulator
from tests.harness import ROOT, BotProcess

GROUP = -1002000000001
SECRETARY, MEMBER = 3001, 3002


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as emu:
        emu.add_user(SECRETARY, "陈", "书记")
        emu.add_user(MEMBER, "刘", "党员")
        emu.add_chat(GROUP, "supergroup", "园区联合支部")
        emu.set_admins(GROUP, [], creator_id=SECRETARY)
        yield emu


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'data' / 'bot.db'}"


def committee_synced(database_url: str) -> bool:
    """Whether the process has stored the group's admins (read straight from its SQLite file)."""
    path = database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT count(*) FROM chat_roles").fetchone()[0] > 0


def group_texts(emulator: BotAPIEmulator) -> list[str]:
    return [m.get("text", "") for m in emulator.sent_messages(GROUP)]


async def test_the_process_serves_a_group_and_restarts_without_repeating_itself(emulator, database_url) -> None:
    bot = await BotProcess(emulator, database_url).start()
    try:
        # Commands published for both languages and for members and admins.
        scopes = {
            (c.params.get("scope", {}).get("type"), c.params.get("language_code"))
            for c in emulator.calls_of("setMyCommands")
        }
        assert {("all_private_chats", "zh"), ("all_group_chats", "en"), ("all_chat_administrators", "zh")} <= scopes

        emulator.bot_added(GROUP, SECRETARY, status="administrator")
        await emulator.wait_for(lambda: len(group_texts(emulator)) == 1, timeout=20)
        await emulator.wait_for_call("getChatAdministrators", timeout=20)
        await emulator.wait_for(lambda: committee_synced(database_url), timeout=20)
        emulator.send_message(GROUP, SECRETARY, "/help")
        emulator.send_message(GROUP, MEMBER, "/help")
        await emulator.wait_for(lambda: len(group_texts(emulator)) == 3, timeout=20)
        welcome, *helps = group_texts(emulator)
        assert "支部群助手" in welcome
        assert sorted("/settings" in text for text in helps) == [False, True]  # committee's and member's
        await emulator.wait_until_consumed(timeout=20)
    finally:
        code = await bot.stop()
    assert code == 0, bot.text()

    # The last update comes again (as after a crash before Telegram saw the confirmation).
    last = emulator.send_message(GROUP, MEMBER, "/help")
    restarted = await BotProcess(emulator, database_url).start()
    try:
        await emulator.wait_for(lambda: len(group_texts(emulator)) == 4, timeout=20)
        emulator.redeliver(last)
        emulator.send_message(GROUP, SECRETARY, "/settings")
        await emulator.wait_for(lambda: len(group_texts(emulator)) == 5, timeout=20)
        await emulator.wait_until_consumed(timeout=20)
        await asyncio.sleep(0.5)
        assert len(group_texts(emulator)) == 5, group_texts(emulator)
        assert "本群设置" in group_texts(emulator)[-1]
    finally:
        assert await restarted.stop() == 0, restarted.text()


async def run_cli(*args: str, **env: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, (out + err).decode()


async def test_check_reports_who_the_bot_is(emulator, database_url) -> None:
    code, output = await run_cli(
        "check", BOT_TOKEN=emulator.token, BOT_API_URL=emulator.base_url, DATABASE_URL=database_url
    )
    assert code == 0, output
    assert "@branch_test_bot" in output and "123456" in output


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "BOT_TOKEN is not set"),
        ({"BOT_TOKEN": "nonsense"}, "BOT_TOKEN is malformed"),
        ({"BOT_TOKEN": "123456:ABCDEFGH", "BOT_API_URL": "http://127.0.0.1:{closed}"}, "cannot reach the Bot API"),
        ({"BOT_TOKEN": "123456:ABCDEFGH", "DATABASE_URL": "mysql://nobody@localhost/x"}, "DATABASE_URL"),
        ({"BOT_TOKEN": "123456:ABCDEFGH", "DATABASE_URL": "sqlite:////proc/forbidden/x.db"}, "database"),
        ({"BOT_TOKEN": "123456:ABCDEFGH", "TIMEZONE": "Nowhere/City"}, "TIMEZONE"),
        ({"BOT_TOKEN": "999:WRONGTOKEN"}, "rejected BOT_TOKEN"),
    ],
)
async def test_bad_configuration_is_one_line_and_nonzero(emulator, tmp_path, env, message) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    env = {key: value.format(closed=closed) for key, value in env.items()}
    env.setdefault("BOT_API_URL", emulator.base_url)
    env.setdefault("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    # `run` shares the start-up path; one case shows it fails the same way.
    for command in ("check", "run") if "BOT_API_URL" in env and "{closed}" in str(env) or not env else ("check",):
        code, output = await run_cli(command, **env)
        assert code == 2, output
        assert message in output, output
        assert "Traceback" not in output
        assert len(output.strip().splitlines()) == 1, output


async def test_webhook_mode_refuses_requests_without_the_secret(emulator, database_url) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bot = BotProcess(
        emulator,
        database_url,
        WEBHOOK_URL=f"http://127.0.0.1:{port}",
        WEBHOOK_SECRET="s3cret-token",
        WEBHOOK_HOST="127.0.0.1",
        WEBHOOK_PORT=str(port),
    )
    await bot.start(wait_for_polling=False)
    try:
        [set_webhook] = await emulator.wait_for_call("setWebhook", timeout=60)
        assert set_webhook.params["url"] == f"http://127.0.0.1:{port}/telegram/webhook"
        assert set_webhook.params["secret_token"] == "s3cret-token"
        update = {
            "update_id": 777,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": MEMBER, "type": "private", "first_name": "刘"},
                "from": emulator.user(MEMBER),
                "text": "/help",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        url = f"http://127.0.0.1:{port}/telegram/webhook"
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with http.post(url, data=json.dumps(update), headers=headers) as response:
                    assert response.status == 401
            await asyncio.sleep(0.5)
            assert emulator.sent_messages(MEMBER) == []
        # The emulator delivers with the right secret, as Telegram does.
        emulator.send_message(MEMBER, MEMBER, "/help")
        await emulator.wait_for(lambda: len(emulator.sent_messages(MEMBER)) == 1, timeout=20)
        assert "/start" in emulator.sent_messages(MEMBER)[0]["text"]
    finally:
        assert await bot.stop() == 0, bot.text()
