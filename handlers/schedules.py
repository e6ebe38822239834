"""Recurring announcements: /schedule (one line, or guided with buttons), the preview with the next runs,
/schedules with pause, resume, edit and delete, and how an announcement is rendered when it goes out.

Text that the bot asks for (the announcement of a guided schedule, an edit) is a reply to the bot's
prompt; the prompt names the draft or schedule as "#<id>", and the reply is checked like any request.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import CallbackQuery, ForceReply, InlineKeyboardButton, InlineKeyboardMarkup, Message
from sqlalchemy.ext.asyncio import AsyncSession

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import schedules as schedule_service
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.timephrase import Rule
from handlers.common import (
    IN_GROUP,
    OnLoop,
    RowId,
    explain,
    quote,
    refuse_callback,
    refuse_callback_error,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.timephrases import describe, when_text
from storage.models import Schedule

if TYPE_CHECKING:
    from bot.outbox import Envelope

TEXT_SHOWN = 60
PANEL_TEXT_SHOWN = 500
# The prompts the bot asks a reply to: "✏️ … #12" (edit a schedule), "📝 … #12" (text of a guided draft).
EDIT_MARK, GUIDED_MARK = "✏️", "📝"
PROMPT = re.compile(rf"^({EDIT_MARK}|{GUIDED_MARK})[^#\n]*#(\d+)")
# Guided rhythms: code → rule without its time.
RHYTHMS = {
    "d": Rule(kind="daily"),
    "wd": Rule(kind="workdays"),
    **{f"w{day}": Rule(kind="weekly", weekdays=(day,)) for day in range(7)},
    "m1": Rule(kind="monthly_day", day=1),
    "m15": Rule(kind="monthly_day", day=15),
    "ml": Rule(kind="monthly_day", day=-1),
}
GUIDED_TIMES = ("0730", "0800", "0900", "1200", "1430", "1700", "1930", "2000")


class DraftButton(CallbackData, prefix="scd"):
    action: str  # save | drop
    schedule_id: RowId
    ack: bool = False
    quiet: bool = False


class ManageButton(CallbackData, prefix="sch"):
    action: str  # open | pause | resume | edit | delete | delete_yes | list
    schedule_id: RowId = 0


class GuideButton(CallbackData, prefix="scg"):
    rhythm: str = ""
    time: str = ""


# ------------------------------------------------------------------------------------------ rendering


def _snippet(text: str, length: int = TEXT_SHOWN) -> str:
    return quote(text if len(text) <= length else text[:length] + "…")


def preview_view(t: Translator, preview: schedule_service.Preview, settings: GroupSettings):
    schedule = preview.schedule
    lines = [
        t("schedules.preview_title" if schedule.replaces_id is None else "schedules.preview_edit_title"),
        t("schedules.rule_line", rule=quote(describe(preview.rule, t)), zone=settings.timezone),
        t("schedules.next_runs"),
        *(f"· {when_text(t, run, settings)}" for run in preview.runs),
    ]
    if preview.workday_fallback:
        year = max(run.astimezone(settings.zone).year for run in preview.runs)
        lines.append(t("timephrase.workday_fallback", year=year))
    if preview.in_quiet_hours:
        lines.append(t("schedules.quiet_warning", start=settings.quiet_start, end=settings.quiet_end))
    lines += ["", t("schedules.text_line"), quote(schedule.text)]
    quiet = preview.in_quiet_hours
    save, save_ack = (
        ("schedules.save_quiet", "schedules.save_ack_quiet") if quiet else ("schedules.save", "schedules.save_ack")
    )
    sid = schedule.id
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t(save), callback_data=DraftButton(action="save", schedule_id=sid, quiet=quiet).pack()
                ),
                InlineKeyboardButton(
                    text=t(save_ack),
                    callback_data=DraftButton(action="save", schedule_id=sid, ack=True, quiet=quiet).pack(),
                ),
            ],
            [
                InlineKeyboardButton(
                    text=t("schedules.drop"), callback_data=DraftButton(action="drop", schedule_id=sid).pack()
                )
            ],
        ]
    )
    return "\n".join(lines), keyboard


def list_view(t: Translator, schedules: list[Schedule], settings: GroupSettings):
    lines = [t("schedules.list_title", count=len(schedules)) if schedules else t("schedules.none_yet")]
    buttons = []
    for index, schedule in enumerate(schedules, 1):
        rule = quote(describe(schedule_service.rule_of(schedule.rule), t))
        if schedule.status == "paused":
            lines.append(t("schedules.list_paused", n=index, rule=rule))
        else:
            lines.append(
                t("schedules.list_item", n=index, rule=rule, next=when_text(t, schedule.next_run_at, settings))
            )
        lines.append("   " + _snippet(schedule.text))
        buttons.append(
            InlineKeyboardButton(
                text=str(index), callback_data=ManageButton(action="open", schedule_id=schedule.id).pack()
            )
        )
    rows = [buttons[i : i + 5] for i in range(0, len(buttons), 5)]
    rows.append([InlineKeyboardButton(text=t("schedules.new_button"), callback_data=GuideButton().pack())])
    if schedules:
        lines.append(t("schedules.list_hint"))
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def panel_view(t: Translator, schedule: Schedule, settings: GroupSettings):
    rule = schedule_service.rule_of(schedule.rule)
    paused = schedule.status == "paused"
    lines = [
        t("schedules.panel_title", id=schedule.id),
        t("schedules.rule_line", rule=quote(describe(rule, t)), zone=settings.timezone),
        t("schedules.status_paused" if paused else "schedules.status_active"),
    ]
    if schedule.next_run_at is not None:
        lines.append(t("schedules.next_line", time=when_text(t, schedule.next_run_at, settings)))
    lines.append(t("schedules.ack_yes" if schedule.with_ack else "schedules.ack_no"))
    lines += ["", _snippet(schedule.text, PANEL_TEXT_SHOWN)]  # a panel is edited in place: stay far below 4096
    sid = schedule.id
    toggle = ("schedules.resume", "resume") if paused else ("schedules.pause", "pause")
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t(toggle[0]), callback_data=ManageButton(action=toggle[1], schedule_id=sid).pack()
                ),
                InlineKeyboardButton(
                    text=t("schedules.edit"), callback_data=ManageButton(action="edit", schedule_id=sid).pack()
                ),
                InlineKeyboardButton(
                    text=t("schedules.delete"), callback_data=ManageButton(action="delete", schedule_id=sid).pack()
                ),
            ],
            [InlineKeyboardButton(text=t("schedules.back"), callback_data=ManageButton(action="list").pack())],
        ]
    )
    return "\n".join(lines), keyboard


def guide_view(t: Translator, rhythm: str = ""):
    if not rhythm:
        codes = [["d", "wd"], [f"w{day}" for day in range(4)], [f"w{day}" for day in range(4, 7)], ["m1", "m15", "ml"]]
        rows = [
            [
                InlineKeyboardButton(
                    text=describe(RHYTHMS[code], t, time=False), callback_data=GuideButton(rhythm=code).pack()
                )
                for code in row
            ]
            for row in codes
        ]
        return t("schedules.guide_rhythm"), InlineKeyboardMarkup(inline_keyboard=rows)
    times = [
        InlineKeyboardButton(text=f"{code[:2]}:{code[2:]}", callback_data=GuideButton(rhythm=rhythm, time=code).pack())
        for code in GUIDED_TIMES
    ]
    rows = [times[:4], times[4:], [InlineKeyboardButton(text=t("schedules.back"), callback_data=GuideButton().pack())]]
    text = t("schedules.guide_time", rhythm=quote(describe(RHYTHMS[rhythm], t, time=False)))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


def _prompt(ctx: RequestContext, callback: CallbackQuery, text: str, placeholder: str) -> SendMessage:
    """A message whose reply the bot waits for. It mentions the one who pressed the button, so that the
    reply field opens for them only (a selective ForceReply), in the same forum topic."""
    user = callback.from_user
    mention = f'<a href="tg://user?id={user.id}">{quote(user.full_name)}</a>'
    return SendMessage(
        chat_id=ctx.chat.telegram_id,
        message_thread_id=callback.message.message_thread_id if callback.message else None,
        text=f"{text}\n{mention}",
        reply_markup=ForceReply(selective=True, input_field_placeholder=placeholder[:64]),
    )


# ------------------------------------------------------------------------------------------ outbox kind


async def render_announcement(session: AsyncSession, envelope: Envelope) -> TelegramMethod | None:
    if not await schedule_service.still_wanted(session, envelope.args["schedule_id"]):
        return None
    text = envelope.t("schedules.post_header") + "\n\n" + quote(envelope.args["text"])
    return SendMessage(chat_id=envelope.recipient, text=text)


# ------------------------------------------------------------------------------------------ handlers


async def schedule_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    args = (command.args or "").strip()
    if not args:
        text, keyboard = guide_view(t)
        ctx.replies.add(message.reply(text, reply_markup=keyboard))
        return
    phrase, sep, text = args.partition("|")
    if not sep or not phrase.strip():
        ctx.replies.add(message.reply(t("schedules.usage")))
        return
    try:
        rule = schedule_service.parse_rule(phrase, settings, now)
        preview = await schedule_service.create_draft(
            ctx.session, ctx.chat.id, ctx.person.id, rule, text, settings, now
        )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    body, keyboard = preview_view(t, preview, settings)
    ctx.replies.add(message.reply(body, reply_markup=keyboard))


async def draft_button(callback: CallbackQuery, callback_data: DraftButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    try:
        if callback_data.action == "drop":
            await schedule_service.discard(ctx.session, callback_data.schedule_id, ctx.chat.id)
            ctx.replies.add(callback.message.edit_text(t("schedules.dropped")))
            ctx.replies.add(callback.answer())
            return
        if callback_data.action != "save":
            raise DomainError("errors.button_expired")
        schedule = await schedule_service.confirm(
            ctx.session,
            callback_data.schedule_id,
            ctx.person.id,
            ctx.chat.id,
            settings,
            now,
            with_ack=callback_data.ack,
            quiet_ok=callback_data.quiet,
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    text, keyboard = panel_view(t, schedule, settings)
    ctx.replies.add(callback.message.edit_text(t("schedules.saved") + "\n\n" + text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


async def schedules_command(message: Message, ctx: RequestContext) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    schedules = await schedule_service.listed(ctx.session, ctx.chat.id)
    text, keyboard = list_view(ctx.t, schedules, ctx.group_settings)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


async def manage_button(callback: CallbackQuery, callback_data: ManageButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t, now, settings, session = ctx.t, ctx.clock.now(), ctx.group_settings, ctx.session
    sid, action, chat_pk = callback_data.schedule_id, callback_data.action, ctx.chat.id
    try:
        if action == "list":
            text, keyboard = list_view(t, await schedule_service.listed(session, chat_pk), settings)
        elif action == "open":
            text, keyboard = panel_view(t, await schedule_service.get_in_chat(session, sid, chat_pk), settings)
        elif action in ("pause", "resume"):
            schedule = await schedule_service.set_paused(
                session, sid, ctx.person.id, chat_pk, settings, now, paused=action == "pause"
            )
            text, keyboard = panel_view(t, schedule, settings)
        elif action == "delete":
            schedule = await schedule_service.get_in_chat(session, sid, chat_pk)
            text = t("schedules.delete_confirm", rule=quote(describe(schedule_service.rule_of(schedule.rule), t)))
            keyboard = InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(
                            text=t("schedules.delete_yes"),
                            callback_data=ManageButton(action="delete_yes", schedule_id=sid).pack(),
                        ),
                        InlineKeyboardButton(
                            text=t("schedules.back"), callback_data=ManageButton(action="open", schedule_id=sid).pack()
                        ),
                    ]
                ]
            )
        elif action == "delete_yes":
            await schedule_service.delete(session, sid, ctx.person.id, chat_pk, now)
            text, keyboard = list_view(t, await schedule_service.listed(session, chat_pk), settings)
            text = t("schedules.deleted") + "\n\n" + text
        elif action == "edit":
            schedule = await schedule_service.get_in_chat(session, sid, chat_pk)
            prompt = t(
                "schedules.edit_prompt",
                mark=EDIT_MARK,
                id=schedule.id,
                rule=quote(describe(schedule_service.rule_of(schedule.rule), t)),
            )
            ctx.replies.add(_prompt(ctx, callback, prompt, t("schedules.edit_placeholder")))
            ctx.replies.add(callback.answer())
            return
        else:
            raise DomainError("errors.button_expired")
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer())


async def guide_button(callback: CallbackQuery, callback_data: GuideButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    t, rhythm, code = ctx.t, callback_data.rhythm, callback_data.time
    if (rhythm or code) and rhythm not in RHYTHMS or code and code not in GUIDED_TIMES:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    if not code:
        text, keyboard = guide_view(t, rhythm)
        ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
        ctx.replies.add(callback.answer())
        return
    base = RHYTHMS[rhythm]
    rule = Rule(kind=base.kind, weekdays=base.weekdays, day=base.day, hour=int(code[:2]), minute=int(code[2:]))
    try:
        draft = await schedule_service.start_guided(
            ctx.session, ctx.chat.id, ctx.person.id, rule, ctx.group_settings, ctx.clock.now()
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(callback.message.edit_text(t("schedules.guide_chosen", rule=quote(describe(rule, t)))))
    prompt = t("schedules.guide_prompt", mark=GUIDED_MARK, id=draft.id, rule=quote(describe(rule, t)))
    ctx.replies.add(_prompt(ctx, callback, prompt, t("schedules.guide_placeholder")))
    ctx.replies.add(callback.answer())


async def prompt_reply(message: Message, ctx: RequestContext) -> None:
    """The text a prompt asked for: a guided draft's announcement, or the edit of a schedule."""
    prompt = message.reply_to_message
    found = PROMPT.match(prompt.text or "")
    if ctx.chat is None or found is None or prompt.from_user.id != message.bot.id:
        return
    if not await require_committee_message(ctx, message):
        return
    t, now, settings = ctx.t, ctx.clock.now(), ctx.group_settings
    mark, target_id, answer = found.group(1), int(found.group(2)), (message.text or "").strip()
    try:
        if mark == GUIDED_MARK:
            preview = await schedule_service.fill_guided(ctx.session, target_id, ctx.chat.id, answer, settings, now)
        else:
            preview = await schedule_service.edit_draft(
                ctx.session, target_id, ctx.chat.id, ctx.person.id, answer, settings, now
            )
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    body, keyboard = preview_view(t, preview, settings)
    ctx.replies.add(message.reply(body, reply_markup=keyboard))


def build_router() -> Router:
    router = Router(name="schedules")
    groups = IN_GROUP
    router.message.register(schedule_command, Command("schedule"), groups)
    router.message.register(schedules_command, Command("schedules"), groups)
    router.message.register(
        prompt_reply,
        groups,
        OnLoop(F.text),
        OnLoop(F.reply_to_message.from_user.is_bot),
        OnLoop(F.reply_to_message.text.regexp(PROMPT)),
    )
    router.callback_query.register(draft_button, DraftButton.filter())
    router.callback_query.register(manage_button, ManageButton.filter())
    router.callback_query.register(guide_button, GuideButton.filter())
    return router
