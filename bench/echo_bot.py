"""Baseline for bench.throughput: a bare aiogram echo bot (no database, no middlewares).

Env: BOT_TOKEN, BOT_API_URL, LOG_LEVEL. Run: ``python -m bench.echo_bot``.
"""

from __future__ import annotations

import asyncio
import logging
import os

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, Message

dp = Dispatcher()


@dp.message(F.text)
async def echo(message: Message) -> None:
    await message.answer(message.text)


@dp.callback_query()
async def ack(callback: CallbackQuery) -> None:
    await callback.answer()


async def main() -> None:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["BOT_API_URL"]))
    await dp.start_polling(Bot(os.environ["BOT_TOKEN"], session=session))


if __name__ == "__main__":
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main())
