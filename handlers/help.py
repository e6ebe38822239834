from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.commands import commands_for
from bot.context import RequestContext
from handlers.common import where_of


async def show_help(message: Message, ctx: RequestContext) -> None:
    role = await ctx.role()
    where = where_of(message.chat.type)
    lines = [ctx.t(f"help.title_{where}")]
    lines += [f"/{spec.name} — {ctx.t(f'commands.{spec.name}')}" for spec in commands_for(where, role)]
    if not role.is_committee and where == "group":
        lines.append(ctx.t("help.committee_hint"))
    ctx.replies.add(message.answer("\n".join(lines)))


def build_router() -> Router:
    router = Router(name="help")
    router.message.register(show_help, Command("help"))
    return router
