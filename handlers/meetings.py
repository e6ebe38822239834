"""Meetings: /meeting (one line, or guided with buttons and replies), the preview, the group post with
参加 / 请假 / 待定 and live counts, leave reasons in private and the committee's decision, "添加到日历"
(.ics), /meetings with each meeting's panel (names, edit, cancel, sign-in, minutes), and how each
meeting message is rendered when the outbox sends it. Sign-in itself is in ``handlers.attendance``.

Details the bot asks for in the group are replies to its prompts, which name the meeting and the
detail as "#m<id>:<step>"; each reply is checked like any request.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import EditMessageReplyMarkup, EditMessageText, SendDocument, SendMessage, TelegramMethod
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import meetings as meeting_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services.calendar import meeting_ics
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from handlers.common import (
    IN_GROUP,
    OnLoop,
    RowId,
    UserId,
    explain,
    parse_row_id,
    quote,
    refuse_callback,
    refuse_callback_error,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.start import awaited_input, deep_link
from handlers.timephrases import when_text
from storage.models import Meeting

if TYPE_CHECKING:
    from bot.outbox import Envelope

# The tag of a prompt ("#m12:title") ends its first line; the greedy prefix takes the last tag there, so
# a member's name shown earlier in the line (a 代签 prompt) cannot pose as one.
PROMPT = re.compile(r"^[^\n]*#m(\d+):([a-z]+)(?:-(\d+))?(?=\n|$)")
ANSWER_ICONS = {"yes": "✅", "leave": "🙋", "maybe": "🤔"}
NAMES_SHOWN = 80
AGENDA_SHOWN = 600


class KindButton(CallbackData, prefix="mtk"):
    kind: str


class DraftButton(CallbackData, prefix="mtd"):
    action: str  # publish | mode | drop
    meeting_id: RowId


class RsvpButton(CallbackData, prefix="mtr"):
    meeting_id: RowId
    answer: str


class CalendarButton(CallbackData, prefix="mtc"):
    meeting_id: RowId


class PanelButton(CallbackData, prefix="mtp"):
    action: str
    meeting_id: RowId = 0
    value: str = ""


class LeaveButton(CallbackData, prefix="mtl"):
    meeting_id: RowId
    user_id: UserId
    approve: bool


# ------------------------------------------------------------------------------------------ rendering


def kind_name(t: Translator, kind: str) -> str:
    return t(f"meetings.kind_{kind}")


def details_text(t: Translator, meeting: Meeting, settings: GroupSettings) -> str:
    lines = [
        t("meetings.title_line", kind=kind_name(t, meeting.kind), title=quote(meeting.title)),
        t("meetings.time_line", time=when_text(t, meeting.starts_at, settings), zone=settings.timezone),
        t("meetings.place_line", place=quote(meeting.place)),
    ]
    if meeting.agenda:
        agenda = meeting.agenda if len(meeting.agenda) <= AGENDA_SHOWN else meeting.agenda[:AGENDA_SHOWN] + "…"
        lines.append(t("meetings.agenda_line") + "\n" + quote(agenda))
    return "\n".join(lines)


def offsets_text(t: Translator, minutes: tuple[int, ...]) -> str:
    if not minutes:
        return t("meetings.reminders_off")
    return "、".join(offset_text(t, value) for value in minutes)


def offset_text(t: Translator, minutes: int) -> str:
    if minutes % 1440 == 0:
        return t("meetings.offset_days", n=minutes // 1440)
    if minutes % 60 == 0:
        return t("meetings.offset_hours", n=minutes // 60)
    return t("meetings.offset_minutes", n=minutes)


def mode_text(t: Translator, mode: str) -> str:
    return t(f"meetings.mode_{mode}")


def preview_view(t: Translator, meeting: Meeting, settings: GroupSettings, reminders: tuple[int, ...]):
    end = meeting.ends_at.astimezone(settings.zone).strftime("%H:%M")
    duration = int((meeting.ends_at - meeting.starts_at).total_seconds() // 60)
    text = "\n".join(
        [
            t("meetings.preview_title"),
            details_text(t, meeting, settings),
            "",
            t("meetings.preview_reminders", offsets=offsets_text(t, reminders)),
            t("meetings.preview_checkin", mode=mode_text(t, meeting.checkin_mode), late=meeting.late_minutes, end=end),
        ]
    )
    mid = meeting.id
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("meetings.publish"), callback_data=DraftButton(action="publish", meeting_id=mid).pack()
                ),
                InlineKeyboardButton(
                    text=t("meetings.mode_toggle", mode=mode_text(t, meeting.checkin_mode)),
                    callback_data=DraftButton(action="mode", meeting_id=mid).pack(),
                ),
            ],
            [
                InlineKeyboardButton(
                    text=t("meetings.duration_toggle", duration=offset_text(t, duration)),
                    callback_data=DraftButton(action="duration", meeting_id=mid).pack(),
                ),
                InlineKeyboardButton(
                    text=t("meetings.late_toggle", late=meeting.late_minutes),
                    callback_data=DraftButton(action="late", meeting_id=mid).pack(),
                ),
            ],
            [
                InlineKeyboardButton(
                    text=t("meetings.drop"), callback_data=DraftButton(action="drop", meeting_id=mid).pack()
                )
            ],
        ]
    )
    return text, keyboard


def post_text(t: Translator, meeting: Meeting, settings: GroupSettings) -> str:
    if meeting.status == "cancelled":
        return t("meetings.post_cancelled") + "\n\n" + details_text(t, meeting, settings)
    return t("meetings.post_header") + "\n\n" + details_text(t, meeting, settings) + "\n\n" + t("meetings.post_hint")


def rsvp_rows(
    t: Translator, meeting_id: int, counts: meeting_service.Counts | None
) -> list[list[InlineKeyboardButton]]:
    figures = {"yes": counts.yes, "leave": counts.leave, "maybe": counts.maybe} if counts else {}
    return [
        [
            InlineKeyboardButton(
                text=t(f"meetings.answer_{answer}") + (f" · {figures[answer]}" if counts else ""),
                callback_data=RsvpButton(meeting_id=meeting_id, answer=answer).pack(),
            )
            for answer in meeting_service.ANSWERS
        ]
    ]


def post_keyboard(t: Translator, meeting: Meeting, counts: meeting_service.Counts) -> InlineKeyboardMarkup | None:
    if meeting.status == "cancelled":
        return None
    calendar = [
        InlineKeyboardButton(text=t("meetings.calendar"), callback_data=CalendarButton(meeting_id=meeting.id).pack())
    ]
    if meeting.status == "closed":
        return InlineKeyboardMarkup(inline_keyboard=[calendar])
    return InlineKeyboardMarkup(inline_keyboard=[*rsvp_rows(t, meeting.id, counts), calendar])


def _names(t: Translator, entries) -> str:
    shown = "、".join(quote(entry.name) for entry in entries[:NAMES_SHOWN])
    return shown + (t("roster.more", count=len(entries)) if len(entries) > NAMES_SHOWN else "")


def names_view(t: Translator, state: meeting_service.Answers, presence, settings: GroupSettings) -> str:
    """Who answered what, and after sign-in opened who came: for the committee."""
    meeting = state.meeting
    lines = [t("meetings.names_title", title=quote(meeting.title), time=when_text(t, meeting.starts_at, settings))]
    sections = [("answer_yes", state.yes), ("answer_maybe", state.maybe), ("silent", state.silent)]
    for key, people in sections:
        if people:
            lines.append(f"{t('meetings.' + key)}（{len(people)}）：{_names(t, people)}")
    for person, row in state.leave:
        verdict = t(f"meetings.leave_{row.leave_status or 'awaiting'}")
        reason = quote(row.reason) if row.reason else "—"
        lines.append(t("meetings.names_leave", name=quote(person.name), reason=reason, verdict=verdict))
    if presence is not None:
        lines.append("")
        lines.append(t("meetings.summary_counts", **summary_figures(presence)))
        if presence.on_time:
            lines.append(
                t("meetings.names_present", count=len(presence.on_time)) + _names(t, [p for p, _ in presence.on_time])
            )
        if presence.late:
            late = "、".join(
                f"{quote(p.name)}（{row.signed_at.astimezone(settings.zone):%H:%M}）"
                for p, row in presence.late[:NAMES_SHOWN]
            )
            lines.append(t("meetings.names_late", count=len(presence.late)) + late)
        if presence.absent:
            lines.append(t("meetings.names_absent", count=len(presence.absent)) + _names(t, presence.absent))
        if presence.guests:
            guests = [person for person, _ in presence.guests]
            lines.append(t("meetings.names_guests", count=len(guests)) + _names(t, guests))
        proxies = [(p, row) for p, row in presence.on_time + presence.late if row.method == "proxy"]
        for person, row in proxies[:NAMES_SHOWN]:
            lines.append(t("meetings.names_proxy", name=quote(person.name), note=quote(row.note or "")))
    return "\n".join(lines)


def summary_figures(presence: attendance_service.Attendance) -> dict:
    rate = round(100 * presence.present / presence.expected) if presence.expected else 0
    return {
        "expected": presence.expected,
        "present": presence.present,
        "late": len(presence.late),
        "leave": len(presence.leave),
        "absent": len(presence.absent),
        "rate": rate,
    }


def status_text(t: Translator, meeting: Meeting) -> str:
    if meeting.status == "scheduled" and meeting.checkin_opened_at is not None:
        return t("meetings.status_checkin")
    return t(f"meetings.status_{meeting.status}")


def list_view(t: Translator, upcoming: list[Meeting], recent: list[Meeting], settings: GroupSettings):
    if not upcoming and not recent:
        return t("meetings.none_yet"), None
    lines, buttons = [], []
    for title_key, meetings in (("meetings.list_upcoming", upcoming), ("meetings.list_recent", recent)):
        if not meetings:
            continue
        lines.append(t(title_key))
        for meeting in meetings:
            n = len(buttons) + 1
            lines.append(
                t(
                    "meetings.list_item",
                    n=n,
                    kind=kind_name(t, meeting.kind),
                    title=quote(meeting.title),
                    time=when_text(t, meeting.starts_at, settings),
                    status=status_text(t, meeting),
                )
            )
            buttons.append(
                InlineKeyboardButton(
                    text=str(n), callback_data=PanelButton(action="open", meeting_id=meeting.id).pack()
                )
            )
    lines.append(t("meetings.list_hint"))
    rows = [buttons[i : i + 5] for i in range(0, len(buttons), 5)]
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def _panel_button(t: Translator, key: str, action: str, meeting_id: int, value: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=t(key), callback_data=PanelButton(action=action, meeting_id=meeting_id, value=value).pack()
    )


def panel_view(t: Translator, meeting: Meeting, counts, signed: int, settings: GroupSettings):
    mid = meeting.id
    lines = [
        details_text(t, meeting, settings),
        "",
        t("meetings.panel_status", status=status_text(t, meeting)),
        t("meetings.panel_counts", yes=counts.yes, leave=counts.leave, maybe=counts.maybe, signed=signed),
        t("meetings.panel_mode", mode=mode_text(t, meeting.checkin_mode)),
    ]
    if meeting.minutes_kind:
        lines.append(t("meetings.panel_minutes"))
    rows = [
        [_panel_button(t, "meetings.names_button", "names", mid), _panel_button(t, "meetings.calendar", "ics", mid)]
    ]
    if meeting.status == "scheduled" and meeting.checkin_opened_at is None:
        rows.append(
            [
                _panel_button(t, "meetings.open_checkin", "checkin_open", mid),
                InlineKeyboardButton(
                    text=t("meetings.mode_toggle", mode=mode_text(t, meeting.checkin_mode)),
                    callback_data=PanelButton(action="mode", meeting_id=mid).pack(),
                ),
            ]
        )
        rows.append(
            [_panel_button(t, "meetings.edit", "edit", mid), _panel_button(t, "meetings.cancel", "cancel", mid)]
        )
    elif meeting.status == "scheduled":
        rows.append(
            [
                _panel_button(t, "meetings.close_checkin", "checkin_close", mid),
                _panel_button(t, "meetings.proxy", "proxy", mid),
            ]
        )
        rows.append(
            [_panel_button(t, "meetings.show_code", "code", mid), _panel_button(t, "meetings.minutes", "minutes", mid)]
        )
    elif meeting.status == "closed":
        rows.append(
            [_panel_button(t, "meetings.minutes", "minutes", mid), _panel_button(t, "meetings.proxy", "proxy", mid)]
        )
    rows.append([_panel_button(t, "meetings.back", "list", mid)])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def edit_view(t: Translator, meeting: Meeting):
    mid = meeting.id
    fields = [
        _panel_button(t, f"meetings.field_{field}", "edit_field", mid, field) for field in meeting_service.EDITABLE
    ]
    rows = [fields[:2], fields[2:], [_panel_button(t, "meetings.back", "open", mid)]]
    return t("meetings.edit_choose", title=quote(meeting.title)), InlineKeyboardMarkup(inline_keyboard=rows)


def kind_view(t: Translator):
    kinds = meeting_service.KINDS
    buttons = [
        InlineKeyboardButton(text=kind_name(t, kind), callback_data=KindButton(kind=kind).pack()) for kind in kinds
    ]
    return t("meetings.guide_kind"), InlineKeyboardMarkup(inline_keyboard=[buttons[:3], buttons[3:6], buttons[6:]])


def prompt(ctx: RequestContext, user, thread_id: int | None, text: str, placeholder: str) -> SendMessage:
    """A question whose reply the bot waits for; it mentions whom it asks, so that the reply field opens
    for them only (a selective ForceReply)."""
    mention = f'<a href="tg://user?id={user.id}">{quote(user.full_name)}</a>'
    return SendMessage(
        chat_id=ctx.chat.telegram_id,
        message_thread_id=thread_id,
        text=f"{text}\n{mention}",
        reply_markup=ForceReply(selective=True, input_field_placeholder=placeholder[:64]),
    )


def step_prompt(ctx: RequestContext, user, thread_id: int | None, meeting_id: int, step: str) -> SendMessage:
    t = ctx.t
    text = t(f"meetings.ask_{step}") + f" #m{meeting_id}:{step}"
    return prompt(ctx, user, thread_id, text, t(f"meetings.placeholder_{step}"))


async def deep_link_url(bot: Bot, payload: str) -> str:
    me = await bot.me()
    return f"https://t.me/{me.username}?start={payload}"


# ------------------------------------------------------------------------------------------ outbox kinds


async def _settled_meeting(session: AsyncSession, envelope: Envelope) -> Meeting | None:
    return await meeting_service.get(session, envelope.args["meeting_id"])


async def render_post(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await _settled_meeting(session, envelope)
    if meeting is None or meeting.status != "scheduled" or meeting.message_id is not None:
        return None
    t, settings = envelope.t, envelope.settings
    counts = await meeting_service.counts(session, meeting.id)
    return SendMessage(
        chat_id=envelope.recipient, text=post_text(t, meeting, settings), reply_markup=post_keyboard(t, meeting, counts)
    )


async def posted(session: AsyncSession, envelope: Envelope, message) -> list[TelegramMethod]:
    await meeting_service.record_posted(session, envelope.args["meeting_id"], message.message_id)
    return []


def _under_post(meeting: Meeting) -> ReplyParameters | None:
    if meeting.message_id is None:
        return None
    return ReplyParameters(message_id=meeting.message_id, allow_sending_without_reply=True)


async def render_reminder(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await _settled_meeting(session, envelope)
    if meeting is None or meeting.status != "scheduled" or meeting.checkin_opened_at is not None:
        return None
    t, settings = envelope.t, envelope.settings
    state = await meeting_service.answers(session, meeting.id)
    text = t(
        "meetings.reminder_group",
        title=quote(meeting.title),
        time=when_text(t, meeting.starts_at, settings),
        place=quote(meeting.place),
        yes=len(state.yes),
        leave=len(state.leave),
        maybe=len(state.maybe),
        silent=len(state.silent),
    )
    return SendMessage(chat_id=envelope.recipient, text=text, reply_parameters=_under_post(meeting))


async def render_reminder_private(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await _settled_meeting(session, envelope)
    if meeting is None or meeting.status != "scheduled" or meeting.checkin_opened_at is not None:
        return None
    if await meeting_service.answer_of(session, meeting.id, envelope.user_id) is not None:
        return None  # answered meanwhile
    t, settings = envelope.t, envelope.settings
    text = t(
        "meetings.reminder_private",
        group=quote(envelope.chat.title if envelope.chat else ""),
        title=quote(meeting.title),
        time=when_text(t, meeting.starts_at, settings),
        place=quote(meeting.place),
    )
    return SendMessage(
        chat_id=envelope.user_id,
        text=text,
        reply_markup=InlineKeyboardMarkup(inline_keyboard=rsvp_rows(t, meeting.id, None)),
    )


async def render_leave_review(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await _settled_meeting(session, envelope)
    member_id = envelope.args["user_id"]
    row = await meeting_service.answer_of(session, meeting.id, member_id) if meeting else None
    if meeting is None or meeting.status != "scheduled" or row is None or row.leave_status != "pending":
        return None
    t, settings = envelope.t, envelope.settings
    people = await meeting_service.names_of(session, meeting.chat_id)
    name = people[member_id].name if member_id in people else str(member_id)
    text = t(
        "meetings.leave_review",
        name=quote(name),
        title=quote(meeting.title),
        time=when_text(t, meeting.starts_at, settings),
        group=quote(envelope.chat.title if envelope.chat else ""),
        reason=quote(row.reason or ""),
    )
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("meetings.approve"),
                    callback_data=LeaveButton(meeting_id=meeting.id, user_id=member_id, approve=True).pack(),
                ),
                InlineKeyboardButton(
                    text=t("meetings.reject"),
                    callback_data=LeaveButton(meeting_id=meeting.id, user_id=member_id, approve=False).pack(),
                ),
            ]
        ]
    )
    return SendMessage(chat_id=envelope.user_id, text=text, reply_markup=keyboard)


async def render_leave_verdict(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await _settled_meeting(session, envelope)
    if meeting is None or meeting.status == "cancelled":
        return None
    t = envelope.t
    key = "meetings.verdict_approved" if envelope.args["approved"] else "meetings.verdict_rejected"
    text = t(key, title=quote(meeting.title), time=when_text(t, meeting.starts_at, envelope.settings))
    return SendMessage(chat_id=envelope.user_id, text=text)


async def render_changed(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await _settled_meeting(session, envelope)
    if meeting is None or meeting.status != "scheduled":
        return None
    t, settings = envelope.t, envelope.settings
    field = t(f"meetings.field_{envelope.args['field']}")
    if envelope.args.get("private"):
        text = t("meetings.changed_private", group=quote(envelope.chat.title if envelope.chat else ""), field=field)
        return SendMessage(chat_id=envelope.user_id, text=text + "\n\n" + details_text(t, meeting, settings))
    text = t("meetings.changed_group", field=field) + "\n\n" + details_text(t, meeting, settings)
    return SendMessage(chat_id=envelope.recipient, text=text, reply_parameters=_under_post(meeting))


async def render_cancelled(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await _settled_meeting(session, envelope)
    if meeting is None:
        return None
    t, settings = envelope.t, envelope.settings
    text = t(
        "meetings.cancelled_notice",
        kind=kind_name(t, meeting.kind),
        title=quote(meeting.title),
        time=when_text(t, meeting.starts_at, settings),
    )
    if envelope.args.get("private"):
        return SendMessage(
            chat_id=envelope.user_id, text=t("meetings.from_group", group=quote(envelope.chat.title or "")) + text
        )
    return SendMessage(chat_id=envelope.recipient, text=text, reply_parameters=_under_post(meeting))


# ------------------------------------------------------------------------------------------ creating


async def meeting_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    args = (command.args or "").strip()
    if not args:
        text, keyboard = kind_view(t)
        ctx.replies.add(message.reply(text, reply_markup=keyboard))
        return
    try:
        details = meeting_service.parse_one_line(args, settings.zone, now)
        meeting = await meeting_service.create_draft(ctx.session, ctx.chat.id, ctx.person.id, details, now)
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    await _reply_preview(ctx, message, meeting)


async def _reply_preview(ctx: RequestContext, message: Message, meeting: Meeting) -> None:
    chat = await ctx_chat_row(ctx)
    text, keyboard = preview_view(ctx.t, meeting, ctx.group_settings, meeting_service.reminders_of(chat))
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def ctx_chat_row(ctx: RequestContext):
    return await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id)


async def kind_button(callback: CallbackQuery, callback_data: KindButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    try:
        meeting = await meeting_service.start_guided(
            ctx.session, ctx.chat.id, ctx.person.id, callback_data.kind, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback(ctx, callback, error.key)
        return
    t = ctx.t
    ctx.replies.add(callback.message.edit_text(t("meetings.guide_chosen", kind=kind_name(t, meeting.kind))))
    ctx.replies.add(step_prompt(ctx, callback.from_user, callback.message.message_thread_id, meeting.id, "title"))
    ctx.replies.add(callback.answer())


async def draft_button(
    callback: CallbackQuery, callback_data: DraftButton, ctx: RequestContext, meeting_updates
) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    mid, action = callback_data.meeting_id, callback_data.action
    try:
        if action == "drop":
            await meeting_service.discard(ctx.session, mid, ctx.chat.id)
            ctx.replies.add(callback.message.edit_text(t("meetings.dropped")))
            ctx.replies.add(callback.answer())
            return
        if action == "mode":
            meeting = await meeting_service.get_in_chat(ctx.session, mid, ctx.chat.id)
            if meeting.status != "draft":
                raise DomainError("meetings.already_published")
            meeting = await meeting_service.next_checkin_mode(ctx.session, mid, ctx.chat.id)
            text, keyboard = preview_view(t, meeting, settings, meeting_service.reminders_of(await ctx_chat_row(ctx)))
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer(mode_text(t, meeting.checkin_mode)))
            return
        if action in ("duration", "late"):
            meeting = await meeting_service.cycle_timing(ctx.session, mid, ctx.chat.id, action)
            text, keyboard = preview_view(t, meeting, settings, meeting_service.reminders_of(await ctx_chat_row(ctx)))
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer())
            return
        if action != "publish":
            raise DomainError("errors.button_expired")
        meeting = await meeting_service.publish(ctx.session, mid, ctx.chat.id, ctx.person.id, settings, now)
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(callback.message.edit_text(t("meetings.published", title=quote(meeting.title))))
    ctx.replies.add(callback.answer())


async def prompt_reply(message: Message, ctx: RequestContext, meeting_updates) -> None:
    """The reply to one of the bot's questions: a guided draft's detail, an edit, a proxy note, minutes."""
    found = PROMPT.match(message.reply_to_message.text or "")
    if ctx.chat is None or found is None or message.reply_to_message.from_user.id != message.bot.id:
        return
    if not await require_committee_message(ctx, message):
        return
    from handlers import attendance as attendance_view

    meeting_id, step, extra = int(found.group(1)), found.group(2), found.group(3)
    if step == "minutes":
        await attendance_view.minutes_reply(message, ctx, meeting_id)
        return
    if step == "proxy" and extra:
        await attendance_view.proxy_reply(message, ctx, meeting_id, int(extra), meeting_updates)
        return
    if step.startswith("edit") and step[4:] in meeting_service.EDITABLE:
        await edit_reply(message, ctx, meeting_id, step[4:])
        return
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    try:
        if step not in meeting_service.GUIDED_STEPS:
            raise DomainError("errors.button_expired")
        meeting = await meeting_service.fill_guided(
            ctx.session, meeting_id, ctx.chat.id, step, message.text or "", settings.zone, now
        )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        if step in meeting_service.GUIDED_STEPS and error.key not in ("meetings.step_done", "errors.button_expired"):
            ctx.replies.add(step_prompt(ctx, message.from_user, message.message_thread_id, meeting_id, step))
        return
    if meeting.step is not None:
        ctx.replies.add(step_prompt(ctx, message.from_user, message.message_thread_id, meeting.id, meeting.step))
        return
    await _reply_preview(ctx, message, meeting)


async def edit_reply(message: Message, ctx: RequestContext, meeting_id: int, field: str) -> None:
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    try:
        meeting = await meeting_service.edit(
            ctx.session, meeting_id, ctx.chat.id, ctx.person.id, field, message.text or "", settings, now
        )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    if meeting.message_id is not None:
        counts = await meeting_service.counts(ctx.session, meeting.id)
        ctx.replies.add(
            EditMessageText(
                chat_id=ctx.chat.telegram_id,
                message_id=meeting.message_id,
                text=post_text(t, meeting, settings),
                reply_markup=post_keyboard(t, meeting, counts),
            )
        )
    ctx.replies.add(message.reply(t("meetings.edited", field=t(f"meetings.field_{field}"))))


# ------------------------------------------------------------------------------------------ answering


async def rsvp_button(
    callback: CallbackQuery, callback_data: RsvpButton, ctx: RequestContext, bot: Bot, meeting_updates
) -> None:
    if ctx.person is None:
        return
    t, now = ctx.t, ctx.clock.now()
    chat_pk = ctx.chat.id if ctx.chat is not None else None
    mid = callback_data.meeting_id
    try:
        result = await meeting_service.answer(ctx.session, mid, ctx.person.id, callback_data.answer, chat_pk, now)
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    if result.changed:

        async def refresh() -> None:
            meeting_updates.counts.mark(mid)

        ctx.replies.after_commit(refresh)
    if chat_pk is None and callback.message is not None:  # a private reminder: its buttons have done their job
        ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
    if result.answer != "leave" or not await meeting_service.awaiting_reason(ctx.session, mid, ctx.person.id):
        key = f"meetings.answered_{result.answer}" if result.changed else "meetings.answer_unchanged"
        ctx.replies.add(callback.answer(t(key)))
        return
    # A leave needs its reason, asked in private: there at once if the member has started the bot,
    # else Telegram opens the bot with a link that asks for it.
    if await people_service.reachable_users(ctx.session, [ctx.person.id]):
        await _ask_leave_reason(ctx, mid, ctx.person.id)
        ctx.replies.add(callback.answer(t("meetings.leave_check_private"), show_alert=True))
    else:
        ctx.replies.add(callback.answer(url=await deep_link_url(bot, f"mtg_{mid}_leave")))


async def _ask_leave_reason(ctx: RequestContext, meeting_id: int, user_id: int) -> None:
    meeting = await meeting_service.get(ctx.session, meeting_id)
    await people_service.expect_input(ctx.session, user_id, "meeting_leave", str(meeting_id))
    ctx.replies.add(SendMessage(chat_id=user_id, text=ctx.t("meetings.ask_reason", title=quote(meeting.title))))


@awaited_input("meeting_leave")
async def leave_reason(message: Message, ctx: RequestContext, ref: str) -> None:
    t = ctx.t
    try:
        meeting = await meeting_service.give_leave_reason(
            ctx.session, int(ref), ctx.person.id, message.text or "", ctx.clock.now()
        )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        if error.key in ("meetings.reason_empty", "meetings.too_long"):  # let them write it again
            await people_service.expect_input(ctx.session, ctx.person.id, "meeting_leave", ref)
        return
    ctx.replies.add(message.reply(t("meetings.reason_saved", title=quote(meeting.title))))


async def leave_verdict_button(callback: CallbackQuery, callback_data: LeaveButton, ctx: RequestContext) -> None:
    if ctx.person is None or callback.message is None:
        return
    t = ctx.t
    meeting = await meeting_service.get(ctx.session, callback_data.meeting_id)
    if meeting is None:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    role = await role_service.role_in_chat(ctx.session, meeting.chat_id, ctx.person.id, ctx.superusers)
    if not role.is_committee:
        refuse_callback(ctx, callback, "errors.committee_only")
        return
    try:
        await meeting_service.review_leave(
            ctx.session, meeting.id, callback_data.user_id, ctx.person.id, callback_data.approve, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        if error.key in ("meetings.leave_decided", "meetings.leave_withdrawn", "meetings.cancelled"):
            ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
        return
    verdict = t("meetings.leave_approved" if callback_data.approve else "meetings.leave_rejected")
    ctx.replies.add(callback.message.edit_text((callback.message.html_text or "") + "\n\n" + verdict))
    ctx.replies.add(callback.answer(verdict))


@deep_link("mtg")
async def meeting_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    """``mtg_<id>_leave`` (the reason for a leave), ``mtg_<id>_ics`` (the calendar file),
    ``mtg_<id>_makeup`` (补学 materials), ``mtg_<id>_code`` (how to sign in with the code)."""
    parts = payload.split("_")
    meeting_id = parse_row_id(parts[1]) if len(parts) == 3 else None
    if meeting_id is None:
        return False
    what = parts[2]
    meeting = await meeting_service.get(ctx.session, meeting_id)
    if meeting is None or meeting.status == "draft":
        ctx.replies.add(message.answer(ctx.t("errors.button_expired")))
        return True
    if what == "leave":
        if await meeting_service.awaiting_reason(ctx.session, meeting_id, ctx.person.id):
            await _ask_leave_reason(ctx, meeting_id, ctx.person.id)
        else:
            ctx.replies.add(message.answer(ctx.t("meetings.leave_not_asked")))
        return True
    if what == "ics":
        try:
            meeting = await meeting_service.visible_to(ctx.session, meeting_id, ctx.person.id, None)
        except DomainError as error:
            ctx.replies.add(message.answer(explain(ctx.t, error)))
            return True
        ctx.replies.add(await calendar_file(ctx, meeting, ctx.person.id))
        return True
    if what == "makeup":
        from handlers import attendance as attendance_view

        await attendance_view.send_makeup(message, ctx, meeting_id)
        return True
    if what == "code":
        ctx.replies.add(message.answer(ctx.t("meetings.send_code_here")))
        return True
    return False


async def calendar_file(ctx: RequestContext, meeting: Meeting, user_id: int) -> SendDocument:
    chat = await chat_service.get_chat_by_pk(ctx.session, meeting.chat_id)
    settings = ctx.settings_of(chat)
    t = Translator(settings.language)
    title = f"{kind_name(t, meeting.kind)}｜{meeting.title}"
    description = "\n".join(filter(None, [chat.title if chat else "", meeting.agenda]))
    reminders = meeting_service.reminders_of(chat)
    data = meeting_ics(
        meeting,
        title=title,
        description=description,
        now=ctx.clock.now(),
        alarm_before=timedelta(minutes=min(reminders) if reminders else 60),
    )
    return SendDocument(
        chat_id=user_id,
        document=BufferedInputFile(data, filename=f"meeting-{meeting.id}.ics"),
        caption=t(
            "meetings.calendar_caption", title=quote(meeting.title), time=when_text(t, meeting.starts_at, settings)
        ),
    )


async def calendar_button(
    callback: CallbackQuery, callback_data: CalendarButton, ctx: RequestContext, bot: Bot
) -> None:
    if ctx.person is None:
        return
    chat_pk = ctx.chat.id if ctx.chat is not None else None
    try:
        meeting = await meeting_service.visible_to(ctx.session, callback_data.meeting_id, ctx.person.id, chat_pk)
    except DomainError as error:
        refuse_callback(ctx, callback, error.key)
        return
    # The file goes to the member privately (a file per tap in the group would bury the chat).
    if not await people_service.reachable_users(ctx.session, [ctx.person.id]):
        ctx.replies.add(callback.answer(url=await deep_link_url(bot, f"mtg_{meeting.id}_ics")))
        return
    ctx.replies.add(await calendar_file(ctx, meeting, ctx.person.id))
    ctx.replies.add(callback.answer(ctx.t("meetings.calendar_sent")))


# ------------------------------------------------------------------------------------------ /meetings


async def meetings_command(message: Message, ctx: RequestContext) -> None:
    if ctx.chat is None:
        return
    upcoming, recent = await meeting_service.listed(ctx.session, ctx.chat.id, ctx.clock.now())
    text, keyboard = list_view(ctx.t, upcoming, recent, ctx.group_settings)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def _panel(ctx: RequestContext, meeting: Meeting):
    counts = await meeting_service.counts(ctx.session, meeting.id)
    signed = await attendance_service.signed_count(ctx.session, meeting.id)
    return panel_view(ctx.t, meeting, counts, signed, ctx.group_settings)


async def panel_button(
    callback: CallbackQuery, callback_data: PanelButton, ctx: RequestContext, bot: Bot, meeting_updates
) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    action, mid = callback_data.action, callback_data.meeting_id
    from handlers import attendance as attendance_view

    try:
        if action == "list":
            upcoming, recent = await meeting_service.listed(ctx.session, ctx.chat.id, now)
            text, keyboard = list_view(t, upcoming, recent, settings)
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer())
            return
        meeting = await meeting_service.get_in_chat(ctx.session, mid, ctx.chat.id)
        if meeting.status == "draft":
            raise DomainError("errors.button_expired")
        if action == "open":
            pass
        elif action == "names":
            await send_names(ctx, callback, meeting)
            return
        elif action == "ics":
            ctx.replies.add(callback.answer(url=await deep_link_url(bot, f"mtg_{meeting.id}_ics")))
            return
        elif action == "mode":
            meeting = await meeting_service.next_checkin_mode(ctx.session, mid, ctx.chat.id)
        elif action == "edit":
            if meeting.status != "scheduled":
                raise DomainError("meetings.not_editable")
            text, keyboard = edit_view(t, meeting)
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer())
            return
        elif action == "edit_field":
            if callback_data.value not in meeting_service.EDITABLE or meeting.status != "scheduled":
                raise DomainError("errors.button_expired")
            field = callback_data.value
            text = t("meetings.ask_edit", field=t(f"meetings.field_{field}")) + f" #m{meeting.id}:edit{field}"
            ctx.replies.add(
                prompt(
                    ctx,
                    callback.from_user,
                    callback.message.message_thread_id,
                    text,
                    t(f"meetings.placeholder_{field}"),
                )
            )
            ctx.replies.add(callback.answer())
            return
        elif action == "cancel":
            if meeting.status != "scheduled":
                raise DomainError("meetings.not_editable")
            keyboard = InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        _panel_button(t, "meetings.cancel_yes", "cancel_yes", mid),
                        _panel_button(t, "meetings.back", "open", mid),
                    ]
                ]
            )
            ctx.replies.add(
                callback.message.edit_text(
                    t("meetings.cancel_confirm", title=quote(meeting.title)), reply_markup=keyboard
                )
            )
            ctx.replies.add(callback.answer())
            return
        elif action == "cancel_yes":
            meeting = await meeting_service.cancel(ctx.session, mid, ctx.chat.id, ctx.person.id, now)
            for method in _cancelled_edits(t, ctx.chat.telegram_id, meeting, settings):
                ctx.replies.add(method)
            ctx.replies.add(callback.message.edit_text(t("meetings.cancelled_done", title=quote(meeting.title))))
            ctx.replies.add(callback.answer())
            return
        elif action in ("checkin_open", "checkin_close", "code", "proxy", "minutes"):
            await attendance_view.panel_action(callback, ctx, meeting, action, callback_data.value, meeting_updates)
            return
        else:
            raise DomainError("errors.button_expired")
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    text, keyboard = await _panel(ctx, meeting)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


def _cancelled_edits(t: Translator, chat_id: int, meeting: Meeting, settings: GroupSettings) -> list[TelegramMethod]:
    edits: list[TelegramMethod] = []
    if meeting.message_id is not None:
        edits.append(
            EditMessageText(chat_id=chat_id, message_id=meeting.message_id, text=post_text(t, meeting, settings))
        )
    if meeting.signin_message_id is not None:
        edits.append(EditMessageReplyMarkup(chat_id=chat_id, message_id=meeting.signin_message_id, reply_markup=None))
    return edits


async def send_names(ctx: RequestContext, callback: CallbackQuery, meeting: Meeting) -> None:
    """The names go to the committee member privately when possible, to keep the group uncluttered."""
    state = await meeting_service.answers(ctx.session, meeting.id)
    presence = (
        await attendance_service.attendance(ctx.session, meeting.id)
        if meeting.checkin_opened_at or meeting.status == "closed"
        else None
    )
    text = names_view(ctx.t, state, presence, ctx.group_settings)
    if await people_service.reachable_users(ctx.session, [ctx.person.id]):
        ctx.replies.add(SendMessage(chat_id=ctx.person.id, text=text))
        ctx.replies.add(callback.answer(ctx.t("meetings.names_sent_private"), show_alert=True))
    else:
        ctx.replies.add(callback.message.reply(text))
        ctx.replies.add(callback.answer())


def build_router() -> Router:
    router = Router(name="meetings")
    groups = IN_GROUP
    router.message.register(meeting_command, Command("meeting"), groups)
    router.message.register(meetings_command, Command("meetings"), groups)
    router.message.register(
        prompt_reply,
        groups,
        OnLoop(F.reply_to_message.from_user.is_bot),
        OnLoop(F.reply_to_message.text.regexp(PROMPT)),
    )
    router.callback_query.register(kind_button, KindButton.filter())
    router.callback_query.register(draft_button, DraftButton.filter())
    router.callback_query.register(rsvp_button, RsvpButton.filter())
    router.callback_query.register(calendar_button, CalendarButton.filter())
    router.callback_query.register(panel_button, PanelButton.filter())
    router.callback_query.register(leave_verdict_button, LeaveButton.filter())
    return router
