"""/vanguard: the 先锋指数 for the committee. The group sees only its averages; the figures per member go
to the committee member in private (or through a link when they have not started the bot); 🏢 shows
the groups of the group's unit and the units below it. This month or the last, by button."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import chats as chat_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services import vanguard as vanguard_service
from bot.services.errors import DomainError
from bot.services.vanguard import COMPONENTS, GroupIndex, Period, UnitIndex, round_half_up
from handlers.common import (
    IN_GROUP,
    RowId,
    parse_row_id,
    quote,
    refuse_callback,
    refuse_callback_error,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.start import committee_chat, deep_link
from storage.models import Chat

MEMBERS_PER_PAGE = 20  # two short lines each: a page stays far below Telegram's 4096 characters
GROUPS_PER_PAGE = 30
NAME_LENGTH = 16
TITLE_LENGTH = 30
VIEWS = ("g", "m", "u")  # the group's averages · the names (never shown in a group) · the unit's groups


class VanguardButton(CallbackData, prefix="vg"):
    view: str
    chat: RowId  # the group's key: a private list's buttons must say which group they are about
    period: int = 0  # months back
    page: int = 0


# ------------------------------------------------------------------------------------------ rendering


def weights_label(t: Translator, weights: dict[str, int]) -> str:
    return t("vanguard.separator").join(
        t("vanguard.weight_item", name=t(f"vanguard.component.{component}"), weight=weights[component])
        for component in COMPONENTS
    )


def _rate(t: Translator, rate: float | None) -> str:
    return t("vanguard.none") if rate is None else t("vanguard.percent", value=round_half_up(100 * rate))


def _figure(t: Translator, score: float | None) -> str:
    return t("vanguard.none") if score is None else str(round_half_up(score))


def period_text(t: Translator, period: Period) -> str:
    first = period.first_day
    if period.under_way:
        return t("vanguard.period_so_far", year=first.year, month=first.month, day=period.last_day.day)
    return t("vanguard.period_month", year=first.year, month=first.month)


def _short(text: str | None, length: int) -> str:
    text = " ".join((text or "").split())
    return quote(text if len(text) <= length else text[: length - 1] + "…")


def _button(text: str, view: str, chat_pk: int, period: int, page: int = 0) -> InlineKeyboardButton:
    data = VanguardButton(view=view, chat=chat_pk, period=period, page=page).pack()
    return InlineKeyboardButton(text=text, callback_data=data)


def _period_row(t: Translator, view: str, chat_pk: int, period: int) -> list[InlineKeyboardButton]:
    return [
        _button(("✅ " if months_back == period else "") + t(key), view, chat_pk, months_back)
        for months_back, key in ((0, "vanguard.this_month"), (1, "vanguard.last_month"))
    ]


def _page_row(view: str, chat_pk: int, period: int, page: int, pages: int) -> list[InlineKeyboardButton]:
    row = []
    if page > 0:
        row.append(_button("‹", view, chat_pk, period, page - 1))
    if page < pages - 1:
        row.append(_button("›", view, chat_pk, period, page + 1))
    return row


def _components(t: Translator, rates: dict[str, float | None]) -> dict[str, str]:
    return {component: _rate(t, rates[component]) for component in COMPONENTS}


def group_view(t: Translator, report: GroupIndex) -> tuple[str, InlineKeyboardMarkup]:
    """The group's averages: no names, so it may be shown in the group."""
    lines = [
        t("vanguard.title", group=_short(report.chat.title, TITLE_LENGTH)),
        t(
            "vanguard.summary",
            period=period_text(t, report.period),
            count=len(report.members),
            average=_figure(t, report.average),
        ),
    ]
    if report.members:
        averages = {component: report.component_average(component) for component in COMPONENTS}
        lines.append(t("vanguard.components", **_components(t, averages)))
    else:
        lines.append(t("vanguard.nobody"))
    if report.left_out and report.members:
        names = t("vanguard.list_separator").join(t(f"vanguard.component.{c}") for c in report.left_out)
        lines.append(t("vanguard.left_out", components=names))
    lines.append(t("vanguard.weights", weights=weights_label(t, report.weights)))
    chat_pk, period = report.chat.id, report.period.months_back
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            _period_row(t, "g", chat_pk, period),
            [
                _button(t("vanguard.unit_button"), "u", chat_pk, period),
                _button(t("vanguard.list_button"), "m", chat_pk, period),
            ],
        ]
    )
    return "\n".join(lines), keyboard


def list_view(t: Translator, report: GroupIndex, page: int = 0) -> tuple[str, InlineKeyboardMarkup]:
    """The figures per member, a page at a time: for the committee member's private chat only."""
    pages = max(1, -(-len(report.members) // MEMBERS_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    first = page * MEMBERS_PER_PAGE
    lines = [
        t(
            "vanguard.list_title",
            group=_short(report.chat.title, TITLE_LENGTH),
            period=period_text(t, report.period),
            count=len(report.members),
            average=_figure(t, report.average),
        )
    ]
    for n, member in enumerate(report.members[first : first + MEMBERS_PER_PAGE], first + 1):
        lines.append(
            t(
                "vanguard.member_line",
                n=n,
                name=_short(member.entry.name, NAME_LENGTH),
                index=_figure(t, member.score),
                **_components(t, member.rates),
            )
        )
    if not report.members:
        lines.append(t("vanguard.nobody"))
    if pages > 1:
        lines.append(t("vanguard.page", page=page + 1, pages=pages))
    if report.left_out and report.members:
        names = t("vanguard.list_separator").join(t(f"vanguard.component.{c}") for c in report.left_out)
        lines.append(t("vanguard.left_out", components=names))
    lines.append(t("vanguard.footnote", late=round_half_up(100 * vanguard_service.LATE_CREDIT)))
    lines.append(t("vanguard.weights", weights=weights_label(t, report.weights)))
    chat_pk, period = report.chat.id, report.period.months_back
    rows = [row for row in (_page_row("m", chat_pk, period, page, pages),) if row]
    rows.append(_period_row(t, "m", chat_pk, period))
    rows.append([_button(t("vanguard.unit_button"), "u", chat_pk, period)])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def unit_view(
    t: Translator, report: UnitIndex, chat_pk: int, page: int = 0, *, in_group: bool
) -> tuple[str, InlineKeyboardMarkup]:
    """One line per group bound to the unit or below it, and the unit's average (no names)."""
    pages = max(1, -(-len(report.rows) // GROUPS_PER_PAGE))
    page = min(max(page, 0), pages - 1)
    members = sum(len(row.index.members) for row in report.rows)
    lines = [
        t("vanguard.unit_title", unit=_short(report.unit.name, TITLE_LENGTH), period=period_text(t, report.period)),
        t("vanguard.unit_average", average=_figure(t, report.average), groups=len(report.rows), members=members),
    ]
    for row in report.rows[page * GROUPS_PER_PAGE : (page + 1) * GROUPS_PER_PAGE]:
        lines.append(
            t(
                "vanguard.unit_row",
                unit=_short(row.unit.name, NAME_LENGTH),
                group=_short(row.index.chat.title, TITLE_LENGTH),
                index=_figure(t, row.index.average),
                members=len(row.index.members),
            )
        )
    if not report.rows:
        lines.append(t("vanguard.unit_empty"))
    if pages > 1:
        lines.append(t("vanguard.page", page=page + 1, pages=pages))
    period = report.period.months_back
    rows = [row for row in (_page_row("u", chat_pk, period, page, pages),) if row]
    rows.append(_period_row(t, "u", chat_pk, period))
    back = [_button(t("vanguard.list_button"), "m", chat_pk, period)]
    if in_group:
        back.insert(0, _button(t("vanguard.group_button"), "g", chat_pk, period))
    rows.append(back)
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


# ------------------------------------------------------------------------------------------ handlers


async def _group_index(ctx: RequestContext, chat: Chat, months_back: int) -> GroupIndex:
    zone = ctx.settings_of(chat).zone
    return await vanguard_service.group_index(ctx.session, chat, ctx.clock.now(), zone, months_back)


async def _unit_index(ctx: RequestContext, chat: Chat, months_back: int) -> UnitIndex:
    return await vanguard_service.unit_index(
        ctx.session, chat, ctx.clock.now(), default_timezone=ctx.defaults[1], months_back=months_back
    )


def _link(bot_username: str, chat_pk: int, months_back: int) -> str:
    return f"https://t.me/{bot_username}?start=vg_{chat_pk}_{months_back}"


async def vanguard_command(message: Message, ctx: RequestContext, bot: Bot) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    t = ctx.t
    chat = await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id)
    if chat is None:
        ctx.replies.add(message.reply(t("errors.chat_gone")))
        return
    report = await _group_index(ctx, chat, 0)
    text, keyboard = group_view(t, report)
    if await people_service.reachable_users(ctx.session, [ctx.person.id]):
        names, names_keyboard = list_view(t, report)
        ctx.replies.add(SendMessage(chat_id=ctx.person.id, text=names, reply_markup=names_keyboard))
        text += "\n" + t("vanguard.sent_private")
    else:
        me = await bot.me()
        text += "\n" + t("vanguard.start_bot")
        link = InlineKeyboardButton(text=t("vanguard.open_private"), url=_link(me.username, chat.id, 0))
        keyboard.inline_keyboard.append([link])
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def vanguard_button(
    callback: CallbackQuery, callback_data: VanguardButton, ctx: RequestContext, bot: Bot
) -> None:
    data = callback_data
    if ctx.chat is not None:
        if not await require_group_committee_callback(ctx, callback):
            return
        chat = await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id) if data.chat == ctx.chat.id else None
    else:
        if ctx.person is None or callback.message is None:
            refuse_callback(ctx, callback, "errors.button_expired")
            return
        chat = await chat_service.get_chat_by_pk(ctx.session, data.chat)
        if chat is not None:
            role = await role_service.role_in_chat(ctx.session, chat.id, ctx.person.id, ctx.superusers)
            if not role.is_committee:
                refuse_callback(ctx, callback, "errors.committee_only")
                return
    # Callback data is untrusted: another group's key, an unknown view or period is a forged button.
    in_group = ctx.chat is not None
    valid_view = data.view in VIEWS and (in_group or data.view != "g")
    if chat is None or not valid_view or data.period not in vanguard_service.PERIODS or data.page < 0:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    t = ctx.t
    try:
        if data.view == "u":
            text, keyboard = unit_view(
                t, await _unit_index(ctx, chat, data.period), chat.id, data.page, in_group=in_group
            )
        elif data.view == "g":
            text, keyboard = group_view(t, await _group_index(ctx, chat, data.period))
        elif in_group:
            await _names_from_group(callback, ctx, bot, chat, data.period)
            return
        else:
            text, keyboard = list_view(t, await _group_index(ctx, chat, data.period), data.page)
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


async def _names_from_group(callback: CallbackQuery, ctx: RequestContext, bot: Bot, chat: Chat, period: int) -> None:
    """Names never go to the group: privately, or through the link that opens the private chat."""
    if not await people_service.reachable_users(ctx.session, [ctx.person.id]):
        me = await bot.me()
        ctx.replies.add(callback.answer(url=_link(me.username, chat.id, period)))
        return
    text, keyboard = list_view(ctx.t, await _group_index(ctx, chat, period))
    ctx.replies.add(SendMessage(chat_id=ctx.person.id, text=text, reply_markup=keyboard))
    ctx.replies.add(callback.answer(ctx.t("vanguard.list_sent"), show_alert=True))


@deep_link("vg")
async def names_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    """``vg_<group key>_<months back>``: the figures per member, for a committee member of that group."""
    parts = payload.split("_")
    chat_pk = parse_row_id(parts[1]) if len(parts) == 3 else None
    if chat_pk is None or not (parts[2].isascii() and parts[2].isdigit()):
        return False
    months_back = int(parts[2])
    if months_back not in vanguard_service.PERIODS:
        ctx.replies.add(message.answer(ctx.t("errors.button_expired")))
        return True
    chat, refusal = await committee_chat(ctx, chat_pk)
    if chat is None:
        ctx.replies.add(message.answer(ctx.t(refusal)))
        return True
    text, keyboard = list_view(ctx.t, await _group_index(ctx, chat, months_back))
    ctx.replies.add(message.answer(text, reply_markup=keyboard))
    return True


def build_router() -> Router:
    router = Router(name="vanguard")
    router.message.register(vanguard_command, Command("vanguard"), IN_GROUP)
    router.callback_query.register(vanguard_button, VanguardButton.filter())
    return router
