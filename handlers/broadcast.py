"""/broadcast: a unit's deputy sends one notice to every active group below the unit, after a preview of
the groups; progress is shown live and a summary with per-group confirmations follows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator, language_for_user
from bot.services import chats as chat_service
from bot.services import notices as notice_service
from bot.services import organisation as org_service
from bot.services import people as people_service
from bot.services.errors import DomainError
from bot.services.outbox import Progress
from handlers.common import RowId, quote, refuse_callback, refuse_callback_error, refuse_message
from handlers.notices import draft_from_command, local_time, post_text
from storage.models import Notice

if TYPE_CHECKING:
    from bot.outbox import Envelope

GROUPS_LISTED = 30


class UnitChoice(CallbackData, prefix="bcu"):
    notice_id: RowId
    unit_id: RowId


class SendButton(CallbackData, prefix="bcs"):
    notice_id: RowId
    unit_id: RowId


class DropButton(CallbackData, prefix="bcd"):
    notice_id: RowId


class ReportButton(CallbackData, prefix="bcr"):
    notice_id: RowId


def progress_text(t: Translator, notice: Notice, progress: Progress) -> str:
    title = quote(notice_service.title_of(notice.text))
    key = "broadcast.progress_done" if progress.total and not progress.remaining else "broadcast.progress"
    return t(
        key,
        title=title,
        sent=progress.sent,
        failed=progress.failed,
        remaining=progress.remaining,
        total=progress.total,
    )


def report_text(t: Translator, notice: Notice, reports: list[notice_service.GroupReport]) -> str:
    lines = [t("broadcast.report_title", title=quote(notice_service.title_of(notice.text)))]
    for report in reports:
        name = quote(report.chat.title or str(report.chat.telegram_id))
        if report.delivered:
            lines.append(t("broadcast.report_line", group=name, acked=report.acked, audience=report.audience))
        else:
            lines.append(t("broadcast.report_undelivered", group=name))
    acked = sum(report.acked for report in reports)
    audience = sum(report.audience for report in reports)
    delivered = sum(1 for report in reports if report.delivered)
    lines.append(t("broadcast.report_total", groups=delivered, total=len(reports), acked=acked, audience=audience))
    return "\n".join(lines)


async def render_summary(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    notice_id = envelope.args["notice_id"]
    notice = await notice_service.get_notice(session, notice_id)
    if notice is None:
        return None
    progress = await notice_service.broadcast_progress(session, notice_id)
    reports = await notice_service.broadcast_report(session, notice_id)
    t = envelope.t
    text = t(
        "broadcast.summary",
        title=quote(notice_service.title_of(notice.text)),
        sent=progress.sent,
        failed=progress.failed,
        total=progress.total,
        acked=sum(report.acked for report in reports),
        audience=sum(report.audience for report in reports),
    )
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("broadcast.report_button"), callback_data=ReportButton(notice_id=notice_id).pack()
                )
            ]
        ]
    )
    return SendMessage(chat_id=envelope.recipient, text=text, reply_markup=keyboard)


async def _preview(ctx: RequestContext, notice: Notice, unit_id: int) -> tuple[str, InlineKeyboardMarkup]:
    t = ctx.t
    unit = await org_service.get_unit(ctx.session, unit_id)
    groups = await notice_service.broadcast_groups(ctx.session, unit_id)
    names = "、".join(quote(chat.title or str(chat.telegram_id)) for chat in groups[:GROUPS_LISTED])
    if len(groups) > GROUPS_LISTED:
        names += t("roster.more", count=len(groups))
    when = (
        t("notices.preview_at", time=local_time(notice.send_at, ctx.group_settings))
        if notice.send_at
        else t("notices.preview_now")
    )
    text = (
        t(
            "broadcast.preview",
            unit=quote(unit.name if unit else "?"),
            count=len(groups),
            groups=names or "—",
            when=when,
        )
        + "\n\n"
        + post_text(t, notice, unit.name if unit else None)
    )
    rows = []
    if groups:
        rows.append(
            [
                InlineKeyboardButton(
                    text=t("broadcast.confirm", count=len(groups)),
                    callback_data=SendButton(notice_id=notice.id, unit_id=unit_id).pack(),
                )
            ]
        )
    rows.append([InlineKeyboardButton(text=t("notices.drop"), callback_data=DropButton(notice_id=notice.id).pack())])
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


async def broadcast_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if ctx.person is None:
        return
    units = await notice_service.broadcast_units(ctx.session, ctx.person.id, ctx.superusers)
    if not units:
        refuse_message(ctx, message, "broadcast.no_units")
        return
    notice = await draft_from_command(ctx, message, command, "broadcast.usage")
    if notice is None:
        return
    if len(units) == 1:
        text, keyboard = await _preview(ctx, notice, units[0])
    else:
        names = {unit.id: unit.name for unit in await org_service.tree(ctx.session, units) if unit.id in units}
        buttons = [
            [
                InlineKeyboardButton(
                    text=names.get(unit_id, str(unit_id))[:40],
                    callback_data=UnitChoice(notice_id=notice.id, unit_id=unit_id).pack(),
                )
            ]
            for unit_id in units[:20]
        ]
        buttons.append(
            [InlineKeyboardButton(text=ctx.t("notices.drop"), callback_data=DropButton(notice_id=notice.id).pack())]
        )
        text, keyboard = ctx.t("broadcast.choose_unit"), InlineKeyboardMarkup(inline_keyboard=buttons)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def _own_draft(ctx: RequestContext, callback: CallbackQuery, notice_id: int) -> Notice | None:
    notice = await notice_service.get_notice(ctx.session, notice_id)
    if notice is None or ctx.person is None or notice.author_id != ctx.person.id or callback.message is None:
        refuse_callback(ctx, callback, "notices.not_yours")
        return None
    if notice.status != "draft":
        refuse_callback(ctx, callback, notice_service.NOT_A_DRAFT.get(notice.status, "errors.button_expired"))
        return None
    return notice


async def unit_chosen(callback: CallbackQuery, callback_data: UnitChoice, ctx: RequestContext) -> None:
    notice = await _own_draft(ctx, callback, callback_data.notice_id)
    if notice is None:
        return
    units = await notice_service.broadcast_units(ctx.session, ctx.person.id, ctx.superusers)
    if callback_data.unit_id not in units:
        refuse_callback(ctx, callback, "broadcast.not_your_unit")
        return
    text, keyboard = await _preview(ctx, notice, callback_data.unit_id)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


async def send_confirmed(callback: CallbackQuery, callback_data: SendButton, ctx: RequestContext) -> None:
    notice = await _own_draft(ctx, callback, callback_data.notice_id)
    if notice is None:
        return
    panel = (callback.message.chat.id, callback.message.message_id)
    try:
        notice, count = await notice_service.broadcast(
            ctx.session, notice.id, ctx.person.id, callback_data.unit_id, ctx.superusers, panel, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    if notice.send_at:
        text = ctx.t("broadcast.scheduled", count=count, time=local_time(notice.send_at, ctx.group_settings))
    else:
        text = progress_text(ctx.t, notice, Progress({"pending": count}))
    ctx.replies.add(callback.message.edit_text(text))
    ctx.replies.add(callback.answer())


async def drop_draft(callback: CallbackQuery, callback_data: DropButton, ctx: RequestContext) -> None:
    notice = await _own_draft(ctx, callback, callback_data.notice_id)
    if notice is None:
        return
    await notice_service.discard(ctx.session, notice.id, ctx.person.id)
    ctx.replies.add(callback.message.edit_text(ctx.t("notices.dropped")))
    ctx.replies.add(callback.answer())


async def report_button(callback: CallbackQuery, callback_data: ReportButton, ctx: RequestContext) -> None:
    notice = await notice_service.get_notice(ctx.session, callback_data.notice_id)
    if notice is None or ctx.person is None or callback.message is None:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    if notice.author_id != ctx.person.id and ctx.person.id not in ctx.superusers:
        refuse_callback(ctx, callback, "notices.not_yours")
        return
    reports = await notice_service.broadcast_report(ctx.session, notice.id)
    ctx.replies.add(callback.message.answer(report_text(ctx.t, notice, reports)))
    ctx.replies.add(callback.answer())


async def panel_language(session: AsyncSession, notice: Notice, default_language: str) -> Translator:
    """The progress panel speaks its reader's language: the group's, or the author's in private."""
    if notice.panel_chat_id is not None and notice.panel_chat_id < 0 and notice.origin_chat_id is not None:
        chat = await chat_service.get_chat_by_pk(session, notice.origin_chat_id)
        return Translator((chat.language if chat else None) or default_language)
    user = await people_service.get_user(session, notice.author_id) if notice.author_id else None
    return Translator(language_for_user(user.language_code if user else None, default_language))


def build_router() -> Router:
    router = Router(name="broadcast")
    router.message.register(broadcast_command, Command("broadcast"))
    router.callback_query.register(unit_chosen, UnitChoice.filter())
    router.callback_query.register(send_confirmed, SendButton.filter())
    router.callback_query.register(drop_draft, DropButton.filter())
    router.callback_query.register(report_button, ReportButton.filter())
    return router
