"""/report: a month's report (台账) for the committee, in private: a chart with a short summary, then the
Excel ledger; buttons for another month, the unit's groups one row each, and the CSV files. The
secretary also gets last month's report on the 1st (``reports.MONTHLY``). Reports name members, so they
never go to the group."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendDocument, SendMessage, SendPhoto, TelegramMethod
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import charts, ledger
from bot.services import chats as chat_service
from bot.services import organisation as org_service
from bot.services import people as people_service
from bot.services import reports as report_service
from bot.services import roles as role_service
from bot.services.errors import DomainError
from bot.services.report_model import GroupReport, UnitReport
from handlers.common import IN_GROUP, RowId, explain, parse_row_id, quote, refuse_callback, require_committee_message
from handlers.compliance import kind_name
from handlers.start import deep_link

if TYPE_CHECKING:
    from bot.outbox import Envelope
    from storage.models import Chat

CAPTION_LIMIT = 1024  # Telegram's limit for a photo's caption
GROUP_LINES = 15  # groups listed in a unit summary


class ReportButton(CallbackData, prefix="rpt"):
    chat: RowId  # the group's key
    month: int  # yyyymm
    scope: str  # g: the group | u: its unit's groups
    fmt: str  # x: chart and Excel | c: CSV files


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def month_label(t: Translator, month: date) -> str:
    return t("reports.month_label", year=month.year, month=month.month)


def group_summary(t: Translator, report: GroupReport) -> str:
    required = " · ".join(
        t("reports.required_item", kind=kind_name(t, row.kind), held=row.held, mark="✅" if row.met else "⚠️")
        for row in report.required
    )
    lines = [
        t("reports.summary_title", group=quote(report.title), month=month_label(t, report.month)),
        t("reports.summary_meetings", count=len(report.meetings), rate=percent(report.attendance_rate)),
    ]
    if required:
        lines.append(t("reports.summary_required", items=required))
    lines += [
        t("reports.summary_notices", count=len(report.notices), rate=percent(report.ack_rate)),
        t("reports.summary_learning", count=len(report.lessons), rate=percent(report.learning_participation)),
        t("reports.summary_undeclared", count=len(report.undeclared), members=len(report.members)),
    ]
    if report.top_learners:
        learners = " · ".join(f"{row.rank}. {quote(row.name)} {row.points}" for row in report.top_learners)
        lines.append(t("reports.summary_learners", learners=learners))
    return "\n".join(lines)


def unit_summary(t: Translator, report: UnitReport) -> str:
    lines = [
        t(
            "reports.unit_title",
            unit=quote(report.unit_name),
            month=month_label(t, report.month),
            groups=len(report.groups),
        ),
        t(
            "reports.unit_rates",
            attendance=percent(report.attendance_rate),
            acks=percent(report.ack_rate),
            learning=percent(report.learning_participation),
        ),
    ]
    for group in report.groups[:GROUP_LINES]:
        lines.append(
            t(
                "reports.unit_line",
                group=quote(group.title),
                meetings=len(group.meetings),
                attendance=percent(group.attendance_rate),
                acks=percent(group.ack_rate),
            )
        )
    if len(report.groups) > GROUP_LINES:
        lines.append(t("reports.unit_more", count=len(report.groups) - GROUP_LINES))
    return "\n".join(lines)


def caption_of(text: str) -> str:
    """Whole lines up to Telegram's caption limit: a cut inside a line could split an escaped "&amp;"."""
    lines, size = [], 0
    for line in text.split("\n"):
        if size + len(line) + 1 > CAPTION_LIMIT:
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def keyboard(
    t: Translator, chat_pk: int, month: date, scope: str, *, has_unit: bool, latest: date
) -> InlineKeyboardMarkup:
    def button(label: str, target: date, target_scope: str, fmt: str = "x") -> InlineKeyboardButton:
        data = ReportButton(chat=chat_pk, month=target.year * 100 + target.month, scope=target_scope, fmt=fmt)
        return InlineKeyboardButton(text=label, callback_data=data.pack())

    previous = (month - timedelta(days=1)).replace(day=1)
    row = [button(t("reports.previous_button"), previous, scope)]
    if month < latest:
        row.append(button(t("reports.next_button"), report_service.next_month(month), scope))
    rows = [row]
    other = "g" if scope == "u" else "u"
    extra = [button(t("reports.csv_button"), month, scope, "c")]
    if has_unit:
        extra.insert(0, button(t(f"reports.scope_button_{other}"), month, other))
    rows.append(extra)
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def _report(
    session: AsyncSession, chat: Chat, month: date, scope: str, t: Translator, now: datetime, default_timezone: str
) -> GroupReport | UnitReport:
    hidden = t("points.hidden_name")
    if scope == "u":
        return await report_service.unit_report(
            session, chat, month, now, default_timezone=default_timezone, hidden_name=hidden
        )
    zone = chat_service.zone_or_default(chat.timezone, default_timezone)
    return await report_service.group_report(session, chat, month, zone, now, hidden_name=hidden)


async def _files(report: GroupReport | UnitReport, t: Translator, fmt: str) -> tuple[bytes | None, bytes]:
    """Drawn in a worker thread: a chart takes the better part of a second of CPU, which the bot's other
    chats should not wait for."""
    if fmt == "c":
        return None, await asyncio.to_thread(ledger.csv_zip, report, t)
    chart = await asyncio.to_thread(charts.report_chart, report, t)
    return chart, await asyncio.to_thread(ledger.workbook, report, t)


def _name(report: GroupReport | UnitReport) -> str:
    title = report.unit_name if isinstance(report, UnitReport) else report.title
    safe = "".join(ch for ch in title if ch.isalnum() or ch in "-_") or "report"
    return f"{safe[:40]}-{report.month:%Y-%m}"


async def _send(ctx: RequestContext, user_id: int, chat: Chat, month: date, scope: str, fmt: str) -> None:
    """The report privately to ``user_id``: chart with summary and buttons, then the ledger (or the CSVs)."""
    t, now = ctx.t, ctx.clock.now()
    report = await _report(ctx.session, chat, month, scope, t, now, ctx.defaults[1])
    chart, data = await _files(report, t, fmt)
    name = _name(report)
    if fmt == "c":
        ctx.replies.add(
            SendDocument(
                chat_id=user_id, document=BufferedInputFile(data, f"{name}-csv.zip"), caption=t("reports.csv_caption")
            )
        )
        return
    summary = unit_summary(t, report) if isinstance(report, UnitReport) else group_summary(t, report)
    zone = chat_service.zone_or_default(chat.timezone, ctx.defaults[1])
    latest = report_service.month_of(now, zone)
    markup = keyboard(t, chat.id, month, scope, has_unit=chat.unit_id is not None, latest=latest)
    ctx.replies.add(
        SendPhoto(
            chat_id=user_id,
            photo=BufferedInputFile(chart, f"{name}.png"),
            caption=caption_of(summary),
            reply_markup=markup,
        )
    )
    ctx.replies.add(SendDocument(chat_id=user_id, document=BufferedInputFile(data, f"{name}.xlsx")))


async def _may_see(ctx: RequestContext, chat: Chat, scope: str) -> str | None:
    """None when allowed; else the refusal's key. The unit's figures name other groups' members: only
    those with a role on the unit (or above) see them."""
    role = await role_service.role_in_chat(ctx.session, chat.id, ctx.person.id, ctx.superusers)
    if not role.is_committee:
        return "errors.committee_only"
    if scope == "u":
        if chat.unit_id is None:
            return "reports.not_bound"
        if not await org_service.may_oversee(ctx.session, chat.unit_id, ctx.person.id, ctx.superusers):
            return "reports.unit_only"
    return None


async def report_command(message: Message, ctx: RequestContext, command: CommandObject, bot: Bot) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    try:
        month = report_service.parse_month(command.args or "", ctx.clock.now(), ctx.group_settings.zone)
    except DomainError as error:
        ctx.replies.add(message.reply(explain(ctx.t, error)))
        return
    chat = await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id)
    label = month_label(ctx.t, month)
    if not await people_service.reachable_users(ctx.session, [ctx.person.id]):
        me = await bot.me()
        link = f"https://t.me/{me.username}?start=rpt_{chat.id}_{month:%Y%m}"
        button = InlineKeyboardButton(text=ctx.t("reports.open_private"), url=link)
        ctx.replies.add(
            message.reply(
                ctx.t("reports.start_bot", month=label), reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]])
            )
        )
        return
    await _send(ctx, ctx.person.id, chat, month, "g", "x")
    ctx.replies.add(message.reply(ctx.t("reports.sent_private", month=label)))


@deep_link("rpt")
async def report_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    """``rpt_<group key>_<yyyymm>``: the report, for a committee member of that group."""
    parts = payload.split("_")
    chat_pk = parse_row_id(parts[1]) if len(parts) == 3 else None
    if chat_pk is None or not (parts[2].isascii() and parts[2].isdigit()) or len(parts[2]) != 6:
        return False
    found = await _resolve(ctx, chat_pk, int(parts[2]), "g", "x")
    if isinstance(found, str):
        ctx.replies.add(message.answer(ctx.t(found)))
        return True
    await _send(ctx, ctx.person.id, *found, "g", "x")
    return True


async def _resolve(ctx: RequestContext, chat_pk: int, yyyymm: int, scope: str, fmt: str) -> tuple[Chat, date] | str:
    """The group and month a private request names, or the key of the refusal. Everything in it is
    untrusted (a link or a button's data): the group, the month and the asker's right to see it."""
    chat = await chat_service.get_chat_by_pk(ctx.session, chat_pk)
    if chat is None or scope not in ("g", "u") or fmt not in ("x", "c"):
        return "errors.button_expired"
    zone = chat_service.zone_or_default(chat.timezone, ctx.defaults[1])
    try:
        month = report_service.parse_month(f"{yyyymm // 100}-{yyyymm % 100}", ctx.clock.now(), zone)
    except DomainError:
        return "errors.button_expired"
    return await _may_see(ctx, chat, scope) or (chat, month)


async def report_button(callback: CallbackQuery, callback_data: ReportButton, ctx: RequestContext) -> None:
    if ctx.person is None or ctx.chat is not None:  # the buttons live in private only
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    data = callback_data
    found = await _resolve(ctx, data.chat, data.month, data.scope, data.fmt)
    if isinstance(found, str):
        refuse_callback(ctx, callback, found)
        return
    ctx.replies.add(callback.answer(ctx.t("reports.preparing")))  # before the uploads, which take a while
    try:
        await _send(ctx, ctx.person.id, *found, data.scope, data.fmt)
    except DomainError as error:
        ctx.replies.add(SendMessage(chat_id=ctx.person.id, text=explain(ctx.t, error)))


# ------------------------------------------------------------------------------------------ the monthly post


async def render_monthly(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    """Last month's report for the secretary: the chart with its summary, or the ledger."""
    if envelope.chat is None or envelope.user_id is None:
        return None
    chat = await chat_service.get_chat_by_pk(session, envelope.chat.id)
    # Checked again when it goes out: someone who left the committee since it was planned gets nothing.
    if chat is None or envelope.user_id not in await report_service.recipients_of(session, chat.id):
        return None
    t, zone = envelope.t, envelope.settings.zone
    month = date.fromisoformat(envelope.args["month"])
    # The month asked for is over: all of it counts.
    until = report_service.month_end(month, zone)
    report = await report_service.group_report(session, chat, month, zone, until, hidden_name=t("points.hidden_name"))
    name = _name(report)
    if envelope.args.get("part") == "ledger":
        data = await asyncio.to_thread(ledger.workbook, report, t)
        return SendDocument(chat_id=envelope.user_id, document=BufferedInputFile(data, f"{name}.xlsx"))
    chart = await asyncio.to_thread(charts.report_chart, report, t)
    caption = caption_of(t("reports.monthly_intro") + "\n" + group_summary(t, report))
    return SendPhoto(chat_id=envelope.user_id, photo=BufferedInputFile(chart, f"{name}.png"), caption=caption)


def build_router() -> Router:
    router = Router(name="reports")
    router.message.register(report_command, Command("report"), IN_GROUP)
    router.callback_query.register(report_button, ReportButton.filter())
    return router
