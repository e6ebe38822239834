"""/mydata and /forgetme: a member's own data, in private chat."""

from __future__ import annotations

import json

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.context import RequestContext
from bot.services import identity as identity_service
from bot.services import privacy as privacy_service
from handlers.common import IN_PRIVATE, quote
from handlers.identity import render_card


class ForgetButton(CallbackData, prefix="fgt"):
    confirm: bool


async def mydata_command(message: Message, ctx: RequestContext) -> None:
    data = await privacy_service.export_user_data(ctx.session, ctx.person.id)
    lines = [ctx.t("privacy.mydata_intro")]
    identity = await identity_service.get_identity(ctx.session, ctx.person.id)
    if identity is not None:
        view = await identity_service.card_for(ctx.session, identity, viewer_is_committee=False, viewer_is_self=True)
        lines.append("\n" + render_card(ctx.t, view))
    groups = [quote(group["group"] or "—") for group in data["groups"]]
    if groups:
        lines.append("\n👥 " + "、".join(groups))
    ctx.replies.add(message.answer("\n".join(lines)))
    document = BufferedInputFile(
        json.dumps(data, ensure_ascii=False, indent=2).encode(), filename=ctx.t("privacy.mydata_file")
    )
    ctx.replies.add(message.answer_document(document))


async def forgetme_command(message: Message, ctx: RequestContext) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=ctx.t("privacy.forget_yes"), callback_data=ForgetButton(confirm=True).pack()),
                InlineKeyboardButton(text=ctx.t("privacy.forget_no"), callback_data=ForgetButton(confirm=False).pack()),
            ]
        ]
    )
    ctx.replies.add(message.answer(ctx.t("privacy.forget_confirm"), reply_markup=keyboard))


async def forget_button(callback: CallbackQuery, callback_data: ForgetButton, ctx: RequestContext) -> None:
    # The button acts on whoever presses it, so a forwarded or forged button cannot erase someone else.
    if callback_data.confirm:
        await privacy_service.forget_user(ctx.session, ctx.person.id, ctx.clock.now())
        text = ctx.t("privacy.forgotten")
    else:
        text = ctx.t("privacy.forget_cancelled")
    if callback.message is not None:
        ctx.replies.add(callback.message.edit_text(text))
    ctx.replies.add(callback.answer())


async def private_only(message: Message, ctx: RequestContext) -> None:
    ctx.replies.add(message.reply(ctx.t("privacy.private_only")))


def build_router() -> Router:
    router = Router(name="privacy")
    private = IN_PRIVATE
    router.message.register(mydata_command, Command("mydata"), private)
    router.message.register(forgetme_command, Command("forgetme"), private)
    router.message.register(private_only, Command("mydata", "forgetme"))
    router.callback_query.register(forget_button, ForgetButton.filter())
    return router
