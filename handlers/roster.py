"""/roster for the committee: who declared, who has not (with a one-tap reminder), who left."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import chats as chat_service
from bot.services import identity as identity_service
from bot.services import roster as roster_service
from bot.services.identity import MEMBER_TYPES
from bot.services.roster import SECTIONS, Roster
from handlers.common import (
    IN_GROUP,
    RowId,
    quote,
    refuse_callback,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.identity import declare_keyboard

NAMES_PER_SECTION = 40
MENTIONS_PER_MESSAGE = 30


class RosterFilter(CallbackData, prefix="ros"):
    member_type: str  # "" for everyone, else one of MEMBER_TYPES
    unit_id: RowId = 0  # 0 for every unit, else one of the group's unit and those below it


class RosterNudge(CallbackData, prefix="rosn"):
    pass


def render_roster(
    t: Translator, roster: Roster, member_type: str, units: list | None = None, unit_id: int = 0
) -> tuple[str, InlineKeyboardMarkup]:
    units = units or []
    label = f" · {t(f'identity.type.{member_type}')}" if member_type else ""
    label += "".join(f" · {quote(unit.name)}" for unit in units if unit.id == unit_id)
    lines = [t("roster.title", filter=label), t("roster.counts", **roster.counts())]
    for section in SECTIONS:
        entries = roster.section(section)
        if not entries:
            continue
        names = "、".join(quote(entry.name) for entry in entries[:NAMES_PER_SECTION])
        if len(entries) > NAMES_PER_SECTION:
            names += t("roster.more", count=len(entries))
        lines.append(f"\n<b>{t(f'roster.section_{section}')}</b>\n{names}")
    filters = [("", t("roster.all"))] + [(kind, t(f"identity.type.{kind}")) for kind in MEMBER_TYPES]
    buttons = [
        InlineKeyboardButton(
            text=("· " if kind == member_type else "") + text,
            callback_data=RosterFilter(member_type=kind, unit_id=unit_id).pack(),
        )
        for kind, text in filters
    ]
    rows = [buttons[:3], buttons[3:]]
    if len(units) > 1:  # the group's unit has 党小组 (or other units) below it: filter by them too
        unit_buttons = [
            InlineKeyboardButton(
                text=("· " if unit.id == unit_id else "") + unit.name[:30],
                callback_data=RosterFilter(
                    member_type=member_type, unit_id=0 if unit.id == unit_id else unit.id
                ).pack(),
            )
            for unit in units[:8]
        ]
        rows += [unit_buttons[i : i + 2] for i in range(0, len(unit_buttons), 2)]
    if roster.counts()["undeclared"]:
        rows.append([InlineKeyboardButton(text=t("roster.nudge"), callback_data=RosterNudge().pack())])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


async def roster_command(message: Message, ctx: RequestContext) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    roster = await roster_service.roster_of(ctx.session, ctx.chat.id)
    units = await identity_service.unit_options(ctx.session, ctx.chat.id)
    text, keyboard = render_roster(ctx.t, roster, "", units)
    ctx.replies.add(message.answer(text, reply_markup=keyboard))


async def roster_filter(callback: CallbackQuery, callback_data: RosterFilter, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    member_type, unit_id = callback_data.member_type, callback_data.unit_id
    units = await identity_service.unit_options(ctx.session, ctx.chat.id)
    if (member_type and member_type not in MEMBER_TYPES) or (unit_id and unit_id not in {u.id for u in units}):
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    roster = await roster_service.roster_of(
        ctx.session, ctx.chat.id, member_type=member_type or None, unit_id=unit_id or None
    )
    text, keyboard = render_roster(ctx.t, roster, member_type, units, unit_id)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


async def roster_nudge(callback: CallbackQuery, ctx: RequestContext, bot: Bot) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t, chat, now = ctx.t, ctx.chat, ctx.clock.now()
    targets = await roster_service.undeclared(ctx.session, chat.id)
    if not targets:
        ctx.replies.add(callback.answer(t("roster.nothing_to_nudge"), show_alert=True))
        return
    wait = await roster_service.claim_nudge(ctx.session, chat.id, ctx.person.id, now)
    if wait is not None:
        minutes = max(1, round(wait.total_seconds() / 60))
        ctx.replies.add(callback.answer(t("roster.nudge_too_soon", minutes=minutes), show_alert=True))
        return
    keyboard = await declare_keyboard(bot, t, chat.id)
    for start in range(0, len(targets), MENTIONS_PER_MESSAGE):
        mentions = " ".join(
            f'<a href="tg://user?id={entry.user_id}">{quote(entry.name)}</a>'
            for entry in targets[start : start + MENTIONS_PER_MESSAGE]
        )
        ctx.replies.add(
            SendMessage(
                chat_id=chat.telegram_id, text=t("roster.nudge_group", mentions=mentions), reply_markup=keyboard
            )
        )
    quiet = chat_service.is_quiet_time(ctx.group_settings, now)
    reachable = [] if quiet else [entry for entry in targets if entry.started_bot]
    for entry in reachable:  # in the group's language: the reminder comes from that group
        ctx.replies.add(
            SendMessage(
                chat_id=entry.user_id,
                text=t("roster.nudge_private", group=quote(chat.title or "")),
                reply_markup=keyboard,
            )
        )
    summary = (
        t("roster.nudged_quiet", count=len(targets))
        if quiet
        else t("roster.nudged", count=len(targets), private=len(reachable))
    )
    ctx.replies.add(callback.answer(summary, show_alert=True))


def build_router() -> Router:
    router = Router(name="roster")
    groups = IN_GROUP
    router.message.register(roster_command, Command("roster"), groups)
    router.callback_query.register(roster_filter, RosterFilter.filter())
    router.callback_query.register(roster_nudge, RosterNudge.filter())
    return router
