"""Notices: /notice (draft, preview, publish now or later, pin), the "✅ 收到" button with its live count,
who has and has not confirmed, "提醒未确认", and /notices. Also how each notice message is rendered
when the outbox sends it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import PinChatMessage, SendDocument, SendMessage, SendPhoto, TelegramMethod
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import chats as chat_service
from bot.services import notices as notice_service
from bot.services import organisation as org_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services.errors import DomainError
from bot.services.notices import Composed
from bot.services.timephrase import PhraseError
from handlers.common import (
    IN_GROUP,
    RowId,
    explain,
    quote,
    refuse_callback_error,
    refuse_message,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.timephrases import explain_failure
from storage.models import Notice

if TYPE_CHECKING:
    from bot.outbox import Envelope

NAMES_SHOWN = 60


class DraftButton(CallbackData, prefix="ntd"):
    action: str  # send | pin | drop
    notice_id: RowId


class AckButton(CallbackData, prefix="ack"):
    post_id: RowId


class StatusButton(CallbackData, prefix="nts"):
    post_id: RowId


class NudgeButton(CallbackData, prefix="ntn"):
    post_id: RowId


class UnscheduleButton(CallbackData, prefix="ntx"):
    notice_id: RowId


# ------------------------------------------------------------------------------------------ rendering


def local_time(moment: datetime, settings) -> str:
    return moment.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")


def post_text(t: Translator, notice: Notice, unit_name: str | None = None) -> str:
    title = t("notices.header_unit", unit=quote(unit_name)) if unit_name else t("notices.header")
    body = quote(notice.text)
    return f"{title}\n\n{body}" if body else title


def post_keyboard(t: Translator, post_id: int, acked: int, audience: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("notices.ack_button", acked=acked, audience=max(audience, acked)),
                    callback_data=AckButton(post_id=post_id).pack(),
                )
            ],
            [
                InlineKeyboardButton(
                    text=t("notices.status_button"), callback_data=StatusButton(post_id=post_id).pack()
                ),
                InlineKeyboardButton(text=t("notices.nudge_button"), callback_data=NudgeButton(post_id=post_id).pack()),
            ],
        ]
    )


def post_method(
    t: Translator, chat_id: int, notice: Notice, post_id: int, acked: int, audience: int, unit_name: str | None
) -> TelegramMethod:
    text = post_text(t, notice, unit_name)
    keyboard = post_keyboard(t, post_id, acked, audience)
    if notice.kind == "text":
        return SendMessage(chat_id=chat_id, text=text, reply_markup=keyboard)
    if len(text) > 1024:  # the caption with its title would be too long: the caption alone
        text = quote(notice.text)
    if notice.kind == "photo":
        return SendPhoto(chat_id=chat_id, photo=notice.file_id, caption=text, reply_markup=keyboard)
    return SendDocument(chat_id=chat_id, document=notice.file_id, caption=text, reply_markup=keyboard)


def preview(t: Translator, notice: Notice, audience: int, settings) -> tuple[str, InlineKeyboardMarkup]:
    when = (
        t("notices.preview_at", time=local_time(notice.send_at, settings))
        if notice.send_at
        else t("notices.preview_now")
    )
    if notice.send_at and chat_service.is_quiet_time(settings, notice.send_at):
        when += "\n" + t("notices.quiet_warning", start=settings.quiet_start, end=settings.quiet_end)
    kind = "" if notice.kind == "text" else t(f"notices.kind_{notice.kind}") + " "
    text = t("notices.preview", audience=audience, when=when) + "\n\n" + kind + post_text(t, notice)
    scheduled = notice.send_at is not None
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("notices.schedule" if scheduled else "notices.send"),
                    callback_data=DraftButton(action="send", notice_id=notice.id).pack(),
                ),
                InlineKeyboardButton(
                    text=t("notices.schedule_pin" if scheduled else "notices.send_pin"),
                    callback_data=DraftButton(action="pin", notice_id=notice.id).pack(),
                ),
            ],
            [
                InlineKeyboardButton(
                    text=t("notices.drop"), callback_data=DraftButton(action="drop", notice_id=notice.id).pack()
                )
            ],
        ]
    )
    return text, keyboard


def status_view(t: Translator, status: notice_service.PostStatus) -> tuple[str, InlineKeyboardMarkup]:
    def names(entries) -> str:
        shown = "、".join(quote(entry.name) for entry in entries[:NAMES_SHOWN])
        return shown + (t("roster.more", count=len(entries)) if len(entries) > NAMES_SHOWN else "")

    confirmed, unconfirmed = status.confirmed, status.unconfirmed
    lines = [
        t(
            "notices.status_title",
            title=quote(notice_service.title_of(status.notice.text)),
            acked=len(confirmed),
            audience=len(confirmed) + len(unconfirmed),
        )
    ]
    if confirmed:
        lines.append(t("notices.status_confirmed", count=len(confirmed)) + "\n" + names(confirmed))
    if unconfirmed:
        lines.append(t("notices.status_unconfirmed", count=len(unconfirmed)) + "\n" + names(unconfirmed))
    post_id = status.post.id
    row = [InlineKeyboardButton(text=t("notices.refresh"), callback_data=StatusButton(post_id=post_id).pack())]
    if unconfirmed:
        row.insert(
            0, InlineKeyboardButton(text=t("notices.nudge_button"), callback_data=NudgeButton(post_id=post_id).pack())
        )
    return "\n\n".join(lines), InlineKeyboardMarkup(inline_keyboard=[row])


def message_link(chat_telegram_id: int, message_id: int | None) -> str | None:
    """A t.me link to a message in a supergroup (basic groups have none)."""
    text = str(chat_telegram_id)
    if message_id is None or not text.startswith("-100"):
        return None
    return f"https://t.me/c/{text[4:]}/{message_id}"


# ------------------------------------------------------------------------------------------ outbox kinds


async def _unit_name(session: AsyncSession, notice: Notice) -> str | None:
    if notice.unit_id is None:
        return None
    unit = await org_service.get_unit(session, notice.unit_id)
    return unit.name if unit else None


async def render_post(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    found = await notice_service.post_for(session, envelope.args["post_id"])
    if found is None:
        return None
    post, notice, _ = found
    if notice.status != "published" or post.message_id is not None:
        return None
    acked, audience = (await notice_service.counts(session, [post.id])).get(post.id, (0, 0))
    return post_method(
        envelope.t, envelope.recipient, notice, post.id, acked, audience, await _unit_name(session, notice)
    )


async def posted(session: AsyncSession, envelope: Envelope, message) -> list[TelegramMethod]:
    if await notice_service.record_posted(session, envelope.args["post_id"], message.message_id):
        return [PinChatMessage(chat_id=message.chat.id, message_id=message.message_id)]
    return []


async def render_nudge_group(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    post_id = envelope.args["post_id"]
    try:
        status = await notice_service.status_of(session, post_id, envelope.chat.id)
    except DomainError:
        return None
    wanted = set(envelope.args["user_ids"])
    still = [entry for entry in status.unconfirmed if entry.user_id in wanted]  # some confirmed meanwhile
    if not still:
        return None
    mentions = " ".join(f'<a href="tg://user?id={entry.user_id}">{quote(entry.name)}</a>' for entry in still)
    text = envelope.t(
        "notices.nudge_group", title=quote(notice_service.title_of(status.notice.text)), mentions=mentions
    )
    return SendMessage(
        chat_id=envelope.recipient,
        text=text,
        reply_parameters=ReplyParameters(message_id=status.post.message_id, allow_sending_without_reply=True),
    )


async def render_nudge_private(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    post_id = envelope.args["post_id"]
    found = await notice_service.post_for(session, post_id)
    if found is None or found[1].status != "published":
        return None
    post, notice, chat = found
    if not await notice_service.awaits_ack_from(session, post, envelope.user_id):
        return None
    t = envelope.t
    rows = [[InlineKeyboardButton(text=t("notices.ack_private"), callback_data=AckButton(post_id=post.id).pack())]]
    link = message_link(chat.telegram_id, post.message_id)
    if link:
        rows.append([InlineKeyboardButton(text=t("notices.open_in_group"), url=link)])
    text = t(
        "notices.nudge_private",
        group=quote(chat.title or ""),
        title=quote(notice_service.title_of(notice.text, 60)),
    )
    return SendMessage(chat_id=envelope.user_id, text=text, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows))


# ------------------------------------------------------------------------------------------ handlers


def _composed_from(reply: Message) -> Composed:
    if reply.photo:
        return Composed("photo", reply.caption or "", reply.photo[-1].file_id)
    if reply.document:
        return Composed("document", reply.caption or "", reply.document.file_id)
    if reply.text:
        return Composed("text", reply.text)
    raise DomainError("notices.unsupported")


async def draft_from_command(
    ctx: RequestContext, message: Message, command: CommandObject, usage_key: str
) -> Notice | None:
    """A draft from ``/notice [time |] text`` or from the replied-to message (then the arguments are the
    time); or None after telling the user what is wrong."""
    args = (command.args or "").strip()
    now = ctx.clock.now()
    try:
        if message.reply_to_message is not None:
            phrase, composed = args or None, _composed_from(message.reply_to_message)
        else:
            phrase, text = notice_service.split_schedule(args, ctx.group_settings.zone, now)
            if not text:
                refuse_message(ctx, message, usage_key)
                return None
            composed = Composed("text", text)
        if phrase:
            send_at = notice_service.parse_send_at(phrase, ctx.group_settings.zone, now)
            composed = Composed(composed.kind, composed.text, composed.file_id, send_at)
        origin = ctx.chat.id if ctx.chat is not None else None
        return await notice_service.create_draft(ctx.session, ctx.person.id, origin, composed, now)
    except PhraseError as error:
        ctx.replies.add(message.reply(explain_failure(error, ctx.t)))
        return None
    except DomainError as error:
        ctx.replies.add(message.reply(explain(ctx.t, error)))
        return None


async def notice_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    notice = await draft_from_command(ctx, message, command, "notices.usage")
    if notice is None:
        return
    audience = await people_service.roster_size(ctx.session, ctx.chat.id)
    text, keyboard = preview(ctx.t, notice, audience, ctx.group_settings)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def draft_button(callback: CallbackQuery, callback_data: DraftButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t, now = ctx.t, ctx.clock.now()
    try:
        if callback_data.action == "drop":
            await notice_service.discard(ctx.session, callback_data.notice_id, ctx.person.id)
            ctx.replies.add(callback.message.edit_text(t("notices.dropped")))
            ctx.replies.add(callback.answer())
            return
        if callback_data.action not in ("send", "pin"):
            raise DomainError("errors.button_expired")
        notice = await notice_service.publish(
            ctx.session, callback_data.notice_id, ctx.person.id, ctx.chat.id, pin=callback_data.action == "pin", now=now
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    if notice.send_at:
        when = local_time(notice.send_at, ctx.group_settings)
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(
                        text=t("notices.unschedule"), callback_data=UnscheduleButton(notice_id=notice.id).pack()
                    )
                ]
            ]
        )
        ctx.replies.add(callback.message.edit_text(t("notices.scheduled", time=when), reply_markup=keyboard))
    else:
        ctx.replies.add(callback.message.edit_text(t("notices.published")))
    ctx.replies.add(callback.answer())


async def unschedule_button(callback: CallbackQuery, callback_data: UnscheduleButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    try:
        await notice_service.cancel_scheduled(
            ctx.session, callback_data.notice_id, ctx.person.id, ctx.chat.id, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(callback.message.edit_text(ctx.t("notices.unscheduled")))
    ctx.replies.add(callback.answer())


async def ack_button(callback: CallbackQuery, callback_data: AckButton, ctx: RequestContext, notice_updates) -> None:
    if ctx.person is None:
        return
    chat_pk = ctx.chat.id if ctx.chat is not None else None
    try:
        result = await notice_service.acknowledge(
            ctx.session, callback_data.post_id, ctx.person.id, chat_pk, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    if not result.new:
        ctx.replies.add(callback.answer(ctx.t("notices.already_acked")))
        return
    post_id = callback_data.post_id

    async def refresh() -> None:
        notice_updates.counts.mark(post_id)

    ctx.replies.after_commit(refresh)
    if chat_pk is None and callback.message is not None:  # a private reminder: say so in place of its button
        ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
    ctx.replies.add(callback.answer(ctx.t("notices.acked")))


async def _committee_of_post(ctx: RequestContext, post_id: int):
    """The post, its notice and group, when the presser is on that group's committee; else refuses."""
    found = await notice_service.post_for(ctx.session, post_id)
    if found is None or (ctx.chat is not None and found[0].chat_id != ctx.chat.id):
        raise DomainError("errors.button_expired")
    chat = found[2]
    if ctx.chat is not None:
        allowed = await ctx.is_committee()
    else:
        role = await role_service.role_in_chat(ctx.session, chat.id, ctx.person.id, ctx.superusers)
        allowed = role.is_committee
    if not allowed:
        raise DomainError("errors.committee_only")
    return found


async def status_button(callback: CallbackQuery, callback_data: StatusButton, ctx: RequestContext) -> None:
    if ctx.person is None or callback.message is None:
        return
    try:
        _, _, chat = await _committee_of_post(ctx, callback_data.post_id)
        status = await notice_service.status_of(ctx.session, callback_data.post_id, chat.id)
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    text, keyboard = status_view(ctx.t, status)
    if ctx.chat is None:  # pressed on the list itself, in private: refresh it in place
        ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
        ctx.replies.add(callback.answer())
        return
    # Names go to the committee member privately when possible, to keep the group uncluttered.
    if await people_service.reachable_users(ctx.session, [ctx.person.id]):
        ctx.replies.add(SendMessage(chat_id=ctx.person.id, text=text, reply_markup=keyboard))
        ctx.replies.add(callback.answer(ctx.t("notices.status_sent_private"), show_alert=True))
    else:
        ctx.replies.add(callback.message.reply(text, reply_markup=keyboard))
        ctx.replies.add(callback.answer())


async def nudge_button(callback: CallbackQuery, callback_data: NudgeButton, ctx: RequestContext) -> None:
    if ctx.person is None:
        return
    t, now = ctx.t, ctx.clock.now()
    try:
        _, _, chat = await _committee_of_post(ctx, callback_data.post_id)
        settings = ctx.settings_of(chat)
        result = await notice_service.nudge(ctx.session, callback_data.post_id, chat.id, ctx.person.id, settings, now)
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    if result.at is not None:
        answer = t(
            "notices.nudge_deferred", count=result.mentioned, time=result.at.astimezone(settings.zone).strftime("%H:%M")
        )
    else:
        answer = t("notices.nudged", count=result.mentioned, private=result.private)
    ctx.replies.add(callback.answer(answer, show_alert=True))


async def notices_command(message: Message, ctx: RequestContext) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    t = ctx.t
    rows = await notice_service.recent_in_chat(ctx.session, ctx.chat.id)
    if not rows:
        ctx.replies.add(message.reply(t("notices.none_yet")))
        return
    now = ctx.clock.now()
    lines = [t("notices.list_title")]
    buttons = []
    for index, (post, notice, acked, audience) in enumerate(rows, 1):
        title = quote(notice_service.title_of(notice.text, 24))
        if notice.send_at and notice.send_at > now and post.message_id is None:
            lines.append(
                t("notices.list_scheduled", n=index, title=title, time=local_time(notice.send_at, ctx.group_settings))
            )
            continue
        rate = round(100 * acked / audience) if audience else 0
        when = local_time(notice.send_at or notice.published_at, ctx.group_settings)
        lines.append(t("notices.list_item", n=index, title=title, acked=acked, audience=audience, rate=rate, time=when))
        buttons.append(InlineKeyboardButton(text=str(index), callback_data=StatusButton(post_id=post.id).pack()))
    keyboard = InlineKeyboardMarkup(inline_keyboard=[buttons[i : i + 5] for i in range(0, len(buttons), 5)])
    if buttons:
        lines.append(t("notices.list_hint"))
    ctx.replies.add(message.reply("\n".join(lines), reply_markup=keyboard if buttons else None))


def build_router() -> Router:
    router = Router(name="notices")
    groups = IN_GROUP
    router.message.register(notice_command, Command("notice"), groups)
    router.message.register(notices_command, Command("notices"), groups)
    router.callback_query.register(draft_button, DraftButton.filter())
    router.callback_query.register(unschedule_button, UnscheduleButton.filter())
    router.callback_query.register(ack_button, AckButton.filter())
    router.callback_query.register(status_button, StatusButton.filter())
    router.callback_query.register(nudge_button, NudgeButton.filter())
    return router
