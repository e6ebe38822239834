"""Sign-in at meetings: the "签到" button in the group, the code sent to the bot in private, 代签 by the
committee, opening and closing sign-in from a meeting's panel; the summary after the meeting, minutes,
and 补学 for those who missed it. Also how these messages are rendered when the outbox sends them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import EditMessageReplyMarkup, SendDocument, SendMessage, SendPhoto, TelegramMethod
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import identity as identity_service
from bot.services import meetings as meeting_service
from bot.services import people as people_service
from bot.services.errors import DomainError
from handlers import meetings as meeting_view
from handlers.common import (
    IN_PRIVATE,
    OnLoop,
    RowId,
    UserId,
    explain,
    quote,
    refuse_callback,
    refuse_callback_error,
    require_group_committee_callback,
)
from handlers.timephrases import when_text
from storage.models import Meeting

if TYPE_CHECKING:
    from bot.outbox import Envelope

CODE_MESSAGE = re.compile(r"^\s*(?:签到|sign\s*in|checkin|check-in)?\s*[:：]?\s*(\d{4,6})\s*$", re.IGNORECASE)
PROXY_PAGE = 8


class SignInButton(CallbackData, prefix="mts"):
    meeting_id: RowId


class ProxyButton(CallbackData, prefix="mtx"):
    meeting_id: RowId
    user_id: UserId = 0  # 0: a page of the list
    page: RowId = 0


class StudiedButton(CallbackData, prefix="mtm"):
    meeting_id: RowId


# ------------------------------------------------------------------------------------------ rendering


def signin_text(t: Translator, meeting: Meeting, settings, signed: int) -> str:
    end = meeting.ends_at.astimezone(settings.zone).strftime("%H:%M")
    return t(
        "meetings.signin_open",
        title=quote(meeting.title),
        how=t(f"meetings.signin_how_{meeting.checkin_mode}"),
        late=meeting.late_minutes,
        end=end,
        signed=signed,
    )


def signin_keyboard(t: Translator, meeting: Meeting, signed: int) -> InlineKeyboardMarkup | None:
    if meeting.checkin_mode == "code" or meeting.status != "scheduled":
        return None
    button = InlineKeyboardButton(
        text=t("meetings.signin_button", signed=signed), callback_data=SignInButton(meeting_id=meeting.id).pack()
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def summary_text(t: Translator, presence: attendance_service.Attendance, settings) -> str:
    meeting = presence.meeting
    return "\n".join(
        [
            t(
                "meetings.summary_title",
                kind=meeting_view.kind_name(t, meeting.kind),
                title=quote(meeting.title),
                time=when_text(t, meeting.starts_at, settings),
            ),
            t("meetings.summary_counts", **meeting_view.summary_figures(presence)),
            t("meetings.summary_hint"),
        ]
    )


def _summary_keyboard(t: Translator, meeting_id: int) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(
        text=t("meetings.names_button_committee"),
        callback_data=meeting_view.PanelButton(action="names", meeting_id=meeting_id).pack(),
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def makeup_method(t: Translator, chat_id: int, meeting: Meeting, reason: str, settings, group: str) -> TelegramMethod:
    intro = t(
        "meetings.makeup_intro",
        reason=t(f"meetings.makeup_reason_{reason}"),
        group=quote(group),
        title=quote(meeting.title),
        time=when_text(t, meeting.starts_at, settings),
    )
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("meetings.studied"), callback_data=StudiedButton(meeting_id=meeting.id).pack()
                )
            ]
        ]
    )
    minutes = quote(meeting.minutes_text or "")
    if meeting.minutes_kind == "text":
        return SendMessage(chat_id=chat_id, text=f"{intro}\n\n{minutes}", reply_markup=keyboard)
    caption = f"{intro}\n\n{minutes}" if len(intro) + len(minutes) < 1000 else intro
    if meeting.minutes_kind == "photo":
        return SendPhoto(chat_id=chat_id, photo=meeting.minutes_file_id, caption=caption, reply_markup=keyboard)
    return SendDocument(chat_id=chat_id, document=meeting.minutes_file_id, caption=caption, reply_markup=keyboard)


# ------------------------------------------------------------------------------------------ outbox kinds


async def render_signin(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await meeting_service.get(session, envelope.args["meeting_id"])
    if meeting is None or meeting.status != "scheduled" or meeting.signin_message_id is not None:
        return None
    t = envelope.t
    signed = await attendance_service.signed_count(session, meeting.id)
    return SendMessage(
        chat_id=envelope.recipient,
        text=signin_text(t, meeting, envelope.settings, signed),
        reply_markup=signin_keyboard(t, meeting, signed),
    )


async def signin_posted(session: AsyncSession, envelope: Envelope, message) -> list[TelegramMethod]:
    await attendance_service.record_signin_posted(session, envelope.args["meeting_id"], message.message_id)
    return []


async def render_code(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await meeting_service.get(session, envelope.args["meeting_id"])
    if meeting is None or meeting.status != "scheduled" or meeting.checkin_mode == "button":
        return None
    t = envelope.t
    text = t(
        "meetings.code_message",
        group=quote(envelope.chat.title if envelope.chat else ""),
        title=quote(meeting.title),
        code=meeting.checkin_code,
        late=meeting.late_minutes,
        end=meeting.ends_at.astimezone(envelope.settings.zone).strftime("%H:%M"),
    )
    return SendMessage(chat_id=envelope.user_id, text=text)


async def render_summary(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    meeting = await meeting_service.get(session, envelope.args["meeting_id"])
    if meeting is None or meeting.status != "closed":
        return None
    presence = await attendance_service.attendance(session, meeting.id)
    return SendMessage(
        chat_id=envelope.recipient,
        text=summary_text(envelope.t, presence, envelope.settings),
        reply_markup=_summary_keyboard(envelope.t, meeting.id),
    )


async def summary_posted(session: AsyncSession, envelope: Envelope, message) -> list[TelegramMethod]:
    """The meeting is over: the sign-in button and the answer buttons go."""
    meeting = await meeting_service.get(session, envelope.args["meeting_id"])
    if meeting is None:
        return []
    chat_id, t = message.chat.id, envelope.t
    edits: list[TelegramMethod] = []
    if meeting.signin_message_id is not None:
        edits.append(EditMessageReplyMarkup(chat_id=chat_id, message_id=meeting.signin_message_id, reply_markup=None))
    if meeting.message_id is not None:
        counts = await meeting_service.counts(session, meeting.id)
        edits.append(
            EditMessageReplyMarkup(
                chat_id=chat_id,
                message_id=meeting.message_id,
                reply_markup=meeting_view.post_keyboard(t, meeting, counts),
            )
        )
    return edits


async def render_makeup(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    try:
        meeting, makeup = await attendance_service.makeup_for(session, envelope.args["meeting_id"], envelope.user_id)
    except DomainError:
        return None
    if makeup.studied_at is not None:
        return None
    group = envelope.chat.title if envelope.chat else ""
    return makeup_method(envelope.t, envelope.user_id, meeting, makeup.reason, envelope.settings, group or "")


# ------------------------------------------------------------------------------------------ signing in


async def signin_button(
    callback: CallbackQuery, callback_data: SignInButton, ctx: RequestContext, meeting_updates
) -> None:
    if ctx.person is None or ctx.chat is None:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    try:
        result = await attendance_service.sign_in(
            ctx.session, callback_data.meeting_id, ctx.person.id, ctx.chat.id, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    _after_sign_in(ctx, [result], meeting_updates)
    ctx.replies.add(callback.answer(_signed_text(ctx, result), show_alert=not result.new))


def _signed_text(ctx: RequestContext, result: attendance_service.SignInResult) -> str:
    t = ctx.t
    time = result.signed_at.astimezone(ctx.group_settings.zone).strftime("%H:%M")
    if not result.new:
        return t("meetings.already_signed", time=time)
    return t("meetings.signed_late" if result.late else "meetings.signed", time=time, title=result.meeting.title)


def _after_sign_in(ctx: RequestContext, results, meeting_updates) -> None:
    fresh = [result.meeting.id for result in results if result.new]
    if not fresh:
        return

    async def refresh() -> None:
        for meeting_id in fresh:
            meeting_updates.counts.mark(meeting_id)

    ctx.replies.after_commit(refresh)


async def code_message(message: Message, ctx: RequestContext, meeting_updates) -> None:
    """A sign-in code sent to the bot in private."""
    found = CODE_MESSAGE.match(message.text or "")
    if ctx.person is None or found is None:
        return
    if await people_service.awaits_input(ctx.session, ctx.person.id) or await identity_service.current_form(
        ctx.session, ctx.person.id
    ):
        raise SkipHandler  # digits the bot asked for (a leave reason, the 亮身份 form) are an answer, not a code

    try:
        results = await attendance_service.sign_in_by_code(ctx.session, ctx.person.id, found.group(1), ctx.clock.now())
    except DomainError as error:
        ctx.replies.add(message.reply(explain(ctx.t, error)))
        return
    _after_sign_in(ctx, results, meeting_updates)
    lines = []
    for result in results:
        chat = await chat_service.get_chat_by_pk(ctx.session, result.meeting.chat_id)
        settings = ctx.settings_of(chat)
        time = result.signed_at.astimezone(settings.zone).strftime("%H:%M")
        if not result.new:
            lines.append(ctx.t("meetings.already_signed", time=time))
        else:
            key = "meetings.signed_late" if result.late else "meetings.signed"
            lines.append(ctx.t(key, time=time, title=quote(result.meeting.title)))
    ctx.replies.add(message.reply("\n".join(lines)))


# ------------------------------------------------------------------------------------------ the panel's actions


async def panel_action(
    callback: CallbackQuery, ctx: RequestContext, meeting: Meeting, action: str, value: str, meeting_updates
) -> None:
    """Sign-in actions from a meeting's panel (the caller has checked the committee role)."""
    t, now = ctx.t, ctx.clock.now()
    if action == "checkin_open":
        await attendance_service.open_now(ctx.session, meeting.id, ctx.chat.id, ctx.person.id, now)
        ctx.replies.add(callback.answer(t("meetings.checkin_opened")))
    elif action == "checkin_close":
        await attendance_service.close_now(ctx.session, meeting.id, ctx.chat.id, ctx.person.id, now)
        ctx.replies.add(callback.answer(t("meetings.checkin_closed_now")))
    elif action == "code":
        if meeting.checkin_mode == "button":
            raise DomainError("meetings.button_only")
        ctx.replies.add(callback.answer(t("meetings.code_alert", code=meeting.checkin_code), show_alert=True))
        return
    elif action == "proxy":
        await _proxy_page(callback, ctx, meeting, 0)
        return
    elif action == "minutes":
        text = t("meetings.ask_minutes") + f" #m{meeting.id}:minutes"
        ctx.replies.add(
            meeting_view.prompt(
                ctx, callback.from_user, callback.message.message_thread_id, text, t("meetings.placeholder_minutes")
            )
        )
        ctx.replies.add(callback.answer())
        return
    text, keyboard = await meeting_view._panel(ctx, await meeting_service.get(ctx.session, meeting.id))
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))


async def _proxy_page(callback: CallbackQuery, ctx: RequestContext, meeting: Meeting, page: int) -> None:
    t = ctx.t
    if meeting.checkin_opened_at is None and meeting.status != "closed":
        raise DomainError("meetings.checkin_not_open")
    people = await attendance_service.not_signed(ctx.session, meeting.id, ctx.chat.id)
    if not people:
        ctx.replies.add(callback.answer(t("meetings.proxy_nobody"), show_alert=True))
        return
    pages = (len(people) + PROXY_PAGE - 1) // PROXY_PAGE
    page = min(max(page, 0), pages - 1)
    shown = people[page * PROXY_PAGE : (page + 1) * PROXY_PAGE]
    rows = [
        [
            InlineKeyboardButton(
                text=person.name[:30],
                callback_data=ProxyButton(meeting_id=meeting.id, user_id=person.user_id).pack(),
            )
        ]
        for person in shown
    ]
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(text="‹", callback_data=ProxyButton(meeting_id=meeting.id, page=page - 1).pack())
        )
    if page < pages - 1:
        nav.append(
            InlineKeyboardButton(text="›", callback_data=ProxyButton(meeting_id=meeting.id, page=page + 1).pack())
        )
    rows.append([*nav, meeting_view._panel_button(t, "meetings.back", "open", meeting.id)])
    text = t("meetings.proxy_choose", title=quote(meeting.title), count=len(people), page=page + 1, pages=pages)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows)))
    ctx.replies.add(callback.answer())


async def proxy_button(callback: CallbackQuery, callback_data: ProxyButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t = ctx.t
    try:
        meeting = await meeting_service.get_in_chat(ctx.session, callback_data.meeting_id, ctx.chat.id)
        if meeting.status not in ("scheduled", "closed"):
            raise DomainError("meetings.not_editable")
        if not callback_data.user_id:
            await _proxy_page(callback, ctx, meeting, callback_data.page)
            return
        people = {
            person.user_id: person
            for person in await attendance_service.not_signed(ctx.session, meeting.id, ctx.chat.id)
        }
        person = people.get(callback_data.user_id)
        if person is None:
            raise DomainError("meetings.proxy_not_needed")
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    text = t("meetings.ask_proxy_note", name=quote(person.name)) + f" #m{meeting.id}:proxy-{person.user_id}"
    ctx.replies.add(
        meeting_view.prompt(
            ctx, callback.from_user, callback.message.message_thread_id, text, t("meetings.placeholder_note")
        )
    )
    ctx.replies.add(callback.answer())


async def proxy_reply(message: Message, ctx: RequestContext, meeting_id: int, user_id: int, meeting_updates) -> None:
    t = ctx.t
    try:
        result = await attendance_service.proxy_sign_in(
            ctx.session, meeting_id, ctx.chat.id, ctx.person.id, user_id, message.text or "", ctx.clock.now()
        )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    if not result.new:
        ctx.replies.add(message.reply(_signed_text(ctx, result)))
        return
    _after_sign_in(ctx, [result], meeting_updates)
    names = await meeting_service.names_of(ctx.session, ctx.chat.id)
    name = names[user_id].name if user_id in names else str(user_id)
    key = "meetings.proxy_done_late" if result.late else "meetings.proxy_done"
    ctx.replies.add(message.reply(t(key, name=quote(name))))


# ------------------------------------------------------------------------------------------ minutes, 补学


async def minutes_reply(message: Message, ctx: RequestContext, meeting_id: int) -> None:
    t = ctx.t
    if message.document:
        kind, text, file_id = "document", message.caption or "", message.document.file_id
    elif message.photo:
        kind, text, file_id = "photo", message.caption or "", message.photo[-1].file_id
    else:
        kind, text, file_id = "text", message.text or "", None
    try:
        result = await attendance_service.attach_minutes(
            ctx.session, meeting_id, ctx.chat.id, ctx.person.id, kind, text, file_id, ctx.clock.now()
        )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    if result.meeting.status != "closed":
        ctx.replies.add(message.reply(t("meetings.minutes_saved_before")))
        return
    reply = t("meetings.minutes_saved", assigned=result.assigned, reached=result.reached)
    keyboard = None
    if result.assigned > result.reached:
        url = await meeting_view.deep_link_url(message.bot, f"mtg_{meeting_id}_makeup")
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[[InlineKeyboardButton(text=t("meetings.makeup_get"), url=url)]]
        )
        reply += "\n" + t("meetings.makeup_unreached", count=result.assigned - result.reached)
    ctx.replies.add(message.reply(reply, reply_markup=keyboard))


async def send_makeup(message: Message, ctx: RequestContext, meeting_id: int) -> None:
    """补学 materials asked for through the group's link (a member the bot could not message first)."""
    try:
        meeting, makeup = await attendance_service.makeup_for(ctx.session, meeting_id, ctx.person.id)
    except DomainError as error:
        ctx.replies.add(message.answer(explain(ctx.t, error)))
        return
    chat = await chat_service.get_chat_by_pk(ctx.session, meeting.chat_id)
    settings = ctx.settings_of(chat)
    ctx.replies.add(makeup_method(ctx.t, ctx.person.id, meeting, makeup.reason, settings, chat.title if chat else ""))


async def studied_button(callback: CallbackQuery, callback_data: StudiedButton, ctx: RequestContext) -> None:
    if ctx.person is None:
        return
    try:
        new = await attendance_service.mark_studied(
            ctx.session, callback_data.meeting_id, ctx.person.id, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    if callback.message is not None:
        ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
    ctx.replies.add(callback.answer(ctx.t("meetings.studied_done" if new else "meetings.studied_already")))


def build_router() -> Router:
    router = Router(name="attendance")
    router.message.register(code_message, IN_PRIVATE, OnLoop(F.text.regexp(CODE_MESSAGE)))
    router.callback_query.register(signin_button, SignInButton.filter())
    router.callback_query.register(proxy_button, ProxyButton.filter())
    router.callback_query.register(studied_button, StudiedButton.filter())
    return router
