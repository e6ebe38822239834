"""Points and the 学习达人榜: /rank in a group (this week or month, the group or its unit, by buttons),
/me (my points, place and streak, in the group or for each of my groups in private, with the choice to
be left unnamed on the boards), and the boards the group gets on schedule."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING

from aiogram import Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import chats as chat_service
from bot.services import points as points_service
from bot.services import roster as roster_service
from bot.services import schedules as schedule_service
from bot.services.errors import DomainError
from bot.services.points import Board, Mine, Standing, UnitScope
from handlers.common import (
    IN_GROUP,
    UserId,
    quote,
    refuse_callback,
    refuse_callback_error,
    require_group_committee_callback,
)
from handlers.timephrases import describe

if TYPE_CHECKING:
    from bot.outbox import Envelope

MEDALS = {1: "🥇", 2: "🥈", 3: "🥉"}
BOARD_MARK = "🏆"  # how boards and the posting menu begin
CARD_MARK = "📊"  # how /me cards begin
SCOPES = ("g", "u")  # the group, or the unit it is bound to
GROUPS_SHOWN = 5  # /me in private: the member's groups, at most


class RankButton(CallbackData, prefix="rnk"):
    scope: str  # g: this group | u: its unit
    period: str  # week | month


class PostingButton(CallbackData, prefix="rnp"):
    value: str = ""  # "": the menu | a choice such as "6-2000" | "off" | "back"


class NamingButton(CallbackData, prefix="rnh"):
    user_id: UserId  # only they may press it
    hide: int  # 1: leave my name off the boards


def place_line(t: Translator, row: Standing) -> str:
    name = t("points.hidden_name") if row.hidden else quote(row.name)
    mark = MEDALS.get(row.rank, f"{row.rank}.")
    return t("points.board_line", mark=mark, name=name, points=row.points)


def posting_text(t: Translator, schedule) -> str:
    if schedule is None:
        return t("points.posting_off")
    return t("points.posting_on", rule=describe(schedule_service.rule_of(schedule.rule), t))


def shown(board: Board, places: int) -> list[Standing]:
    """The first places; members tied at the last place shown are all shown."""
    return [row for row in board.standings if row.rank <= places]


def board_text(t: Translator, board: Board, scope_name: str | None = None, *, posted: bool = False) -> str:
    span = {"first": f"{board.first_day:%m-%d}", "last": f"{board.last_day:%m-%d}"}
    if posted:  # it may go out after its period (quiet hours): named by the period, not as "this week"
        lines = [t(f"points.posted_{board.period}", **span)]
    else:
        lines = [t("points.board_title", period=t(f"points.period_{board.period}"), **span)]
    if scope_name:
        lines.append(t("points.unit_scope", unit=quote(scope_name)))
    if not board.standings:
        lines.append(t("points.board_empty"))
    lines += [place_line(t, row) for row in shown(board, points_service.BOARD_SIZE)]
    count_key = "points.board_count_unit" if scope_name else "points.board_count"
    lines.append(t(count_key, scored=len(board.standings), members=board.members))
    lines.append(t("points.rules", **rules_params()))
    lines.append(t("points.me_hint"))
    return "\n".join(lines)


def rules_params() -> dict[str, int]:
    return {f"{kind}_points": award.points for kind, award in points_service.AWARDS.items()}


def board_keyboard(t: Translator, scope: str, period: str, has_unit: bool) -> InlineKeyboardMarkup:
    def button(this_scope: str, this_period: str) -> InlineKeyboardButton:
        label = t(f"points.button_{this_scope}_{this_period}")
        if (this_scope, this_period) == (scope, period):
            label = f"· {label} ·"
        return InlineKeyboardButton(text=label, callback_data=RankButton(scope=this_scope, period=this_period).pack())

    rows = [[button("g", "week"), button("g", "month")]]
    if has_unit:
        rows.append([button("u", "week"), button("u", "month")])
    rows.append([InlineKeyboardButton(text=t("points.posting_button"), callback_data=PostingButton().pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def posting_menu(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    def label(choice: str) -> str:
        return describe(points_service.posting_rule(choice), t)

    rows = [
        [InlineKeyboardButton(text=label(choice), callback_data=PostingButton(value=choice).pack())]
        for choice in points_service.POSTING_CHOICES
    ]
    rows.append(
        [
            InlineKeyboardButton(text=t("points.posting_stop"), callback_data=PostingButton(value="off").pack()),
            InlineKeyboardButton(text=t("points.back"), callback_data=PostingButton(value="back").pack()),
        ]
    )
    return t("points.posting_choose"), InlineKeyboardMarkup(inline_keyboard=rows)


async def _board_view(
    ctx: RequestContext, scope: str, period: str, unit: UnitScope | None
) -> tuple[str, InlineKeyboardMarkup]:
    now, zone = ctx.clock.now(), ctx.group_settings.zone
    if scope == "u" and unit is not None:
        board = await points_service.board(ctx.session, unit.chat_pks, period, zone, now)
        text = board_text(ctx.t, board, unit.name)
    else:
        scope = "g"
        text = board_text(ctx.t, await points_service.board(ctx.session, [ctx.chat.id], period, zone, now))
    text += "\n" + posting_text(ctx.t, await points_service.posting_of(ctx.session, ctx.chat.id))
    return text, board_keyboard(ctx.t, scope, period, unit is not None)


async def rank_command(message: Message, ctx: RequestContext) -> None:
    if ctx.chat is None:
        return
    unit = await points_service.unit_of(ctx.session, ctx.chat)
    text, keyboard = await _board_view(ctx, "g", "week", unit)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def rank_button(callback: CallbackQuery, callback_data: RankButton, ctx: RequestContext) -> None:
    scope, period = callback_data.scope, callback_data.period
    if not _is_board(callback) or ctx.chat is None or scope not in SCOPES or period not in points_service.PERIODS:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    unit = await points_service.unit_of(ctx.session, ctx.chat)
    if scope == "u" and unit is None:
        refuse_callback(ctx, callback, "points.no_unit")
        return
    text, keyboard = await _board_view(ctx, scope, period, unit)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


def _is_board(callback: CallbackQuery) -> bool:
    """Board buttons repaint the message they are on: never another of the bot's messages (a notice, a
    lesson) that forged data would name."""
    message = callback.message
    return message is not None and (getattr(message, "text", None) or "").startswith(BOARD_MARK)


async def posting_button(callback: CallbackQuery, callback_data: PostingButton, ctx: RequestContext) -> None:
    if not _is_board(callback):
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    if not await require_group_committee_callback(ctx, callback):
        return
    value = callback_data.value
    if not value:
        text, keyboard = posting_menu(ctx.t)
        ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
        ctx.replies.add(callback.answer())
        return
    if value != "back":
        try:
            choice = None if value == "off" else value
            now = ctx.clock.now()
            await points_service.set_posting(ctx.session, ctx.chat.id, ctx.person.id, choice, ctx.group_settings, now)
        except DomainError as error:
            refuse_callback_error(ctx, callback, error)
            return
    unit = await points_service.unit_of(ctx.session, ctx.chat)
    text, keyboard = await _board_view(ctx, "g", "week", unit)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer(ctx.t("points.posting_saved") if value != "back" else None))


# ------------------------------------------------------------------------------------------ /me


def standing_line(t: Translator, period: str, row: Standing | None) -> str:
    label = t(f"points.period_{period}")
    if row is None:
        return t("points.me_unranked", period=label)
    return t("points.me_ranked", period=label, points=row.points, rank=row.rank)


def today_line(t: Translator, today: dict[str, int]) -> str:
    parts = [
        t(f"points.kind_{kind}", count=today.get(kind, 0), cap=award.daily_cap)
        for kind, award in points_service.AWARDS.items()
    ]
    return t("points.me_today", parts=" · ".join(parts))


def mine_text(t: Translator, group: str, mine: Mine) -> str:
    lines = [
        t("points.me_title", group=quote(group)),
        standing_line(t, "week", mine.week),
        standing_line(t, "month", mine.month),
        t("points.me_streak", streak=mine.streak, best=mine.best_streak),
        today_line(t, mine.today),
    ]
    return "\n".join(lines)


def naming_footer(t: Translator, hidden: bool) -> str:
    return t("points.me_hidden" if hidden else "points.me_named")


def naming_keyboard(t: Translator, user_id: int, hidden: bool) -> InlineKeyboardMarkup:
    label = t("points.show_name_button" if hidden else "points.hide_name_button")
    button = InlineKeyboardButton(text=label, callback_data=NamingButton(user_id=user_id, hide=int(not hidden)).pack())
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


async def _me_view(ctx: RequestContext, user_id: int) -> tuple[str, InlineKeyboardMarkup]:
    now = ctx.clock.now()
    if ctx.chat is not None:
        mine = await points_service.mine(ctx.session, ctx.chat.id, user_id, ctx.group_settings.zone, now)
        sections, hidden = [mine_text(ctx.t, ctx.chat.title or "", mine)], mine.hidden
    else:
        sections, hidden = [], False
        chats = [
            await chat_service.get_chat_by_pk(ctx.session, pk)
            for pk in await roster_service.groups_of(ctx.session, user_id)
        ]
        active = sorted((chat for chat in chats if chat is not None and chat.is_active), key=lambda chat: chat.id)
        for chat in active[:GROUPS_SHOWN]:
            settings = ctx.settings_of(chat)
            mine = await points_service.mine(ctx.session, chat.id, user_id, settings.zone, now)
            sections.append(mine_text(ctx.t, chat.title or "", mine))
            hidden = mine.hidden
        if not sections:
            sections = [ctx.t("points.me_no_groups")]
    text = "\n\n".join([*sections, naming_footer(ctx.t, hidden)])
    return text, naming_keyboard(ctx.t, user_id, hidden)


async def me_command(message: Message, ctx: RequestContext) -> None:
    if ctx.person is None:
        return
    text, keyboard = await _me_view(ctx, ctx.person.id)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def naming_button(callback: CallbackQuery, callback_data: NamingButton, ctx: RequestContext) -> None:
    if ctx.person is None or callback.message is None:
        return
    if not (getattr(callback.message, "text", None) or "").startswith(CARD_MARK):
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    if callback_data.user_id != ctx.person.id:  # someone else's /me
        refuse_callback(ctx, callback, "points.not_yours")
        return
    await points_service.set_hidden(ctx.session, ctx.person.id, bool(callback_data.hide))
    text, keyboard = await _me_view(ctx, ctx.person.id)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer(ctx.t("points.hidden_saved" if callback_data.hide else "points.named_saved")))


# ------------------------------------------------------------------------------------------ posted boards


async def render_board(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    """The board of the period it closes, as it stood at its time: the group's, and its unit's when the
    unit has other groups; nothing when nobody earned a point."""
    if envelope.chat is None:
        return None
    period, zone, t = envelope.args["period"], envelope.settings.zone, envelope.t
    until = datetime.fromisoformat(envelope.args["until"])
    within = points_service.midnight(date.fromisoformat(envelope.args["first"]), zone)
    board = await points_service.board(session, [envelope.chat.id], period, zone, until, within=within)
    if not board.standings:
        return None
    parts = [board_text(t, board, posted=True)]
    unit = await points_service.unit_of(session, envelope.chat)
    if unit is not None and len(unit.chat_pks) > 1:
        unit_board = await points_service.posted_unit_board(session, unit.chat_pks, period, zone, until, within)
        lines = [t("points.unit_scope", unit=quote(unit.name))]
        lines += [place_line(t, row) for row in shown(unit_board, points_service.UNIT_POSTED)]
        parts.append("\n".join(lines))
    return SendMessage(chat_id=envelope.recipient, text="\n\n".join(parts))


def build_router() -> Router:
    router = Router(name="ranking")
    router.message.register(rank_command, Command("rank"), IN_GROUP)
    router.message.register(me_command, Command("me"))
    router.callback_query.register(rank_button, RankButton.filter())
    router.callback_query.register(posting_button, PostingButton.filter())
    router.callback_query.register(naming_button, NamingButton.filter())
    return router
