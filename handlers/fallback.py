"""What nothing else handled: unknown commands in private, and stale or forged buttons."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot.context import RequestContext
from handlers.common import IN_PRIVATE, OnLoop


async def unknown_button(callback: CallbackQuery, ctx: RequestContext) -> None:
    ctx.replies.add(callback.answer(ctx.t("errors.button_expired"), show_alert=True))


async def unknown_command(message: Message, ctx: RequestContext) -> None:
    ctx.replies.add(message.answer(ctx.t("errors.unknown_command")))


def build_router() -> Router:
    router = Router(name="fallback")
    router.callback_query.register(unknown_button)
    router.message.register(unknown_command, IN_PRIVATE, OnLoop(F.text.startswith("/")))
    return router
