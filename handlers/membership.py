"""The bot joining, leaving and being promoted in groups; members joining and leaving; migrations."""

from __future__ import annotations

import logging

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.methods import SendMessage
from aiogram.types import ChatMemberUpdated, Message

from bot.context import RequestContext
from bot.delivery import Delivery
from bot.services import chats as chat_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services import schedules as schedule_service
from bot.services.clock import Clock
from bot.services.people import Person
from handlers.common import IN_GROUP, IN_PRIVATE, OnLoop, quote
from handlers.identity import declare_keyboard
from storage.db import Database

log = logging.getLogger(__name__)

PRESENT = ("member", "administrator", "creator", "restricted")
GONE = ("left", "kicked")


def _person(user) -> Person:
    return Person(user.id, user.first_name, user.last_name, user.username, user.language_code)


async def sync_admins(bot: Bot, db: Database, clock: Clock, chat_telegram_id: int) -> int | None:
    """Read the group's admin list from Telegram (outside any transaction) and make it the committee."""
    try:
        members = await bot.get_chat_administrators(chat_telegram_id)
    except TelegramAPIError as error:
        log.warning("cannot read admins of %s: %s", chat_telegram_id, error)
        return None
    admins = [
        role_service.Admin(_person(member.user), is_creator=member.status == "creator", is_bot=member.user.is_bot)
        for member in members
    ]
    async with db.transaction() as session:
        chat = await chat_service.get_chat(session, chat_telegram_id)
        if chat is None:
            return None
        return await role_service.sync_admins(session, chat.id, admins, clock.now())


async def bot_membership_changed(
    event: ChatMemberUpdated, ctx: RequestContext, bot: Bot, db: Database, clock: Clock
) -> None:
    old, new = event.old_chat_member.status, event.new_chat_member.status
    chat_id = event.chat.id
    if new in GONE:
        await chat_service.deactivate_chat(ctx.session, chat_id)
        return
    is_admin = new == "administrator"
    result = await chat_service.register_chat(
        ctx.session, chat_id, event.chat.type, event.chat.title, bot_is_admin=is_admin
    )
    t = ctx.t
    if old in GONE or result.is_new or result.was_inactive:
        # Its routines from the start rather than at the next housekeeping (made once; kept if turned off).
        settings = ctx.settings_of(result.chat)
        await schedule_service.ensure_routines(ctx.session, result.chat.id, settings, ctx.clock.now())
        text = t("welcome.group", title=quote(event.chat.title))
        text += "\n\n" + (t("welcome.thanks_admin") if is_admin else t("welcome.ask_admin"))
        text += "\n\n" + t("identity.invite")
        keyboard = await declare_keyboard(bot, t, result.chat.id)
        ctx.replies.add(SendMessage(chat_id=chat_id, text=text, reply_markup=keyboard))
    elif is_admin and old != "administrator":
        ctx.replies.add(SendMessage(chat_id=chat_id, text=t("welcome.thanks_admin")))

    async def sync() -> None:
        await sync_admins(bot, db, clock, chat_id)

    ctx.replies.after_commit(sync)


async def private_chat_changed(event: ChatMemberUpdated, ctx: RequestContext) -> None:
    if event.new_chat_member.status in GONE:
        await people_service.mark_blocked(ctx.session, event.from_user.id)
    else:
        await people_service.mark_started(ctx.session, event.from_user.id)


async def group_migrated_away(message: Message, ctx: RequestContext) -> None:
    await chat_service.migrate_chat(ctx.session, message.chat.id, message.migrate_to_chat_id)


async def group_migrated_here(message: Message, ctx: RequestContext) -> None:
    chat = await chat_service.migrate_chat(ctx.session, message.migrate_from_chat_id, message.chat.id)
    if chat is None:
        await chat_service.register_chat(ctx.session, message.chat.id, message.chat.type, message.chat.title)


async def members_joined(message: Message, ctx: RequestContext, bot: Bot) -> None:
    if ctx.chat is None:
        return
    now = ctx.clock.now()
    newcomers = [user for user in message.new_chat_members if not user.is_bot]
    for user in newcomers:
        await people_service.remember_person(ctx.session, _person(user), now)
        await people_service.observe_in_chat(ctx.session, ctx.chat.id, user.id, now)
    if newcomers and ctx.chat.is_active:
        names = "、".join(quote(_person(user).display_name) for user in newcomers)
        keyboard = await declare_keyboard(bot, ctx.t, ctx.chat.id)
        ctx.replies.add(message.answer(ctx.t("identity.welcome_new", names=names), reply_markup=keyboard))


async def member_left(message: Message, ctx: RequestContext) -> None:
    user = message.left_chat_member
    if ctx.chat is None or user.is_bot:
        return
    await people_service.remember_person(ctx.session, _person(user), ctx.clock.now())
    await people_service.mark_left(ctx.session, ctx.chat.id, user.id, ctx.clock.now())


async def sync_command(
    message: Message, ctx: RequestContext, bot: Bot, db: Database, clock: Clock, delivery: Delivery
) -> None:
    chat_id = message.chat.id
    t = ctx.t

    async def sync_and_report() -> None:
        count = await sync_admins(bot, db, clock, chat_id)
        text = t("sync.failed") if count is None else t("sync.done", count=count)
        await delivery.send(message.reply(text))

    ctx.replies.after_commit(sync_and_report)


def build_router() -> Router:
    router = Router(name="membership")
    router.my_chat_member.register(bot_membership_changed, IN_GROUP)
    router.my_chat_member.register(private_chat_changed, IN_PRIVATE)
    router.message.register(group_migrated_away, OnLoop(F.migrate_to_chat_id))
    router.message.register(group_migrated_here, OnLoop(F.migrate_from_chat_id))
    router.message.register(members_joined, OnLoop(F.new_chat_members))
    router.message.register(member_left, OnLoop(F.left_chat_member))
    router.message.register(sync_command, Command("sync"), IN_GROUP)
    return router
