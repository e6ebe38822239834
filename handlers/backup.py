"""/backup and /restore: the group's settings, schedules and lesson library as a JSON file sent in private
(with "🏢 本单位" for those who manage the group's unit), and the way back: the file sent to the bot in
private, checked in full with a report by path, a preview of what would change, then ✅ 恢复.

The preview and its buttons are a reply to the file they are about: the press reads the file again from
there, so nothing of it has to be kept between the two, and a restart in between loses nothing."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendDocument, SendMessage
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import backup as backup_service
from bot.services import chats as chat_service
from bot.services import people as people_service
from bot.services import schedules as schedule_service
from bot.services.backup import Backup, Entry, Plan, Problem
from bot.services.errors import DomainError
from handlers.common import (
    IN_GROUP,
    RowId,
    explain,
    parse_row_id,
    quote,
    refuse_callback,
    refuse_callback_error,
    require_committee_message,
    sentence_of,
)
from handlers.settings import reminders_label, rules_label
from handlers.start import awaited_document, committee_chat, deep_link
from handlers.timephrases import describe
from handlers.vanguard import weights_label
from storage.models import Chat

AWAITED = "backup_restore"
PROBLEMS_SHOWN = 30
GROUPS_OFFERED = 40  # buttons to choose a unit backup's group; a keyboard takes 100, a phone shows fewer
TITLE_LENGTH = 30
ACTIONS = ("pick", "apply", "cancel")


class UnitBackupButton(CallbackData, prefix="bku"):
    chat: RowId  # the group's key: the unit is the one it is bound to


class RestoreButton(CallbackData, prefix="rsb"):
    action: str  # pick (an entry of a unit backup) | apply | cancel
    chat: RowId  # the group restored into
    entry: RowId = 0  # the entry's place in the file


def _short(text: str | None, length: int = TITLE_LENGTH) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= length else text[: length - 1] + "…"


def _link(username: str | None, payload: str) -> str:
    return f"https://t.me/{username}?start={payload}"


# ------------------------------------------------------------------------------------------ /backup


async def _backup_file(ctx: RequestContext, chat: Chat, user_id: int, *, unit: bool = False) -> SendDocument:
    made = await backup_service.make_backup(
        ctx.session,
        chat,
        user_id,
        ctx.superusers,
        ctx.clock.now(),
        unit=unit,
        default_language=ctx.defaults[0],
        default_timezone=ctx.defaults[1],
    )
    t = ctx.t
    if made.unit_name is not None:
        caption = t("backup.caption_unit", unit=quote(_short(made.unit_name)), groups=made.groups)
    else:
        caption = t("backup.caption", group=quote(_short(chat.title)), schedules=made.schedules, lessons=made.lessons)
    keyboard = None
    if not unit and await backup_service.may_back_up_unit(ctx.session, chat, user_id, ctx.superusers):
        button = InlineKeyboardButton(text=t("backup.unit_button"), callback_data=UnitBackupButton(chat=chat.id).pack())
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[button]])
    return SendDocument(
        chat_id=user_id,
        document=BufferedInputFile(made.data, filename=made.filename),
        caption=caption,
        reply_markup=keyboard,
    )


async def backup_command(message: Message, ctx: RequestContext, bot: Bot) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    chat = await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id)
    if chat is None:
        ctx.replies.add(message.reply(ctx.t("errors.chat_gone")))
        return
    # The file goes in private: the group need not see its settings, and a file per command would bury it.
    if await people_service.reachable_users(ctx.session, [ctx.person.id]):
        ctx.replies.add(await _backup_file(ctx, chat, ctx.person.id))
        ctx.replies.add(message.reply(ctx.t("backup.sent_private")))
        return
    me = await bot.me()
    button = InlineKeyboardButton(text=ctx.t("backup.open_private"), url=_link(me.username, f"bak_{chat.id}"))
    ctx.replies.add(
        message.reply(ctx.t("backup.start_bot"), reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]))
    )


def _payload_chat(payload: str) -> int | None:
    parts = payload.split("_")
    return parse_row_id(parts[1]) if len(parts) == 2 else None


@deep_link("bak")
async def backup_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    """``bak_<group key>``: the group's backup, for a committee member who had not started the bot."""
    chat_pk = _payload_chat(payload)
    if chat_pk is None:
        return False
    chat, refusal = await committee_chat(ctx, chat_pk)
    if chat is None:
        ctx.replies.add(message.answer(ctx.t(refusal)))
        return True
    ctx.replies.add(await _backup_file(ctx, chat, ctx.person.id))
    return True


async def unit_backup_button(callback: CallbackQuery, callback_data: UnitBackupButton, ctx: RequestContext) -> None:
    if ctx.person is None or callback.message is None:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    chat, refusal = await committee_chat(ctx, callback_data.chat)
    if chat is None:
        refuse_callback(ctx, callback, refusal)
        return
    try:
        document = await _backup_file(ctx, chat, ctx.person.id, unit=True)
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    ctx.replies.add(document)
    ctx.replies.add(callback.answer(ctx.t("backup.unit_sent")))


# ------------------------------------------------------------------------------------------ /restore


async def _ask_for_file(ctx: RequestContext, chat: Chat) -> None:
    await people_service.expect_input(ctx.session, ctx.person.id, AWAITED, str(chat.id))
    text = ctx.t("backup.send_file", group=quote(_short(chat.title)), limit=backup_service.MAX_FILE_BYTES // 1024)
    ctx.replies.add(SendMessage(chat_id=ctx.person.id, text=text))


async def restore_command(message: Message, ctx: RequestContext, bot: Bot) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    chat = await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id)
    if chat is None:
        ctx.replies.add(message.reply(ctx.t("errors.chat_gone")))
        return
    if await people_service.reachable_users(ctx.session, [ctx.person.id]):
        await _ask_for_file(ctx, chat)
        ctx.replies.add(message.reply(ctx.t("backup.check_private")))
        return
    me = await bot.me()
    button = InlineKeyboardButton(text=ctx.t("backup.open_private"), url=_link(me.username, f"rst_{chat.id}"))
    ctx.replies.add(
        message.reply(ctx.t("backup.restore_start_bot"), reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]]))
    )


@deep_link("rst")
async def restore_link(message: Message, ctx: RequestContext, payload: str) -> bool:
    """``rst_<group key>``: ask for the file to restore into the group."""
    chat_pk = _payload_chat(payload)
    if chat_pk is None:
        return False
    chat, refusal = await committee_chat(ctx, chat_pk)
    if chat is None:
        ctx.replies.add(message.answer(ctx.t(refusal)))
        return True
    await _ask_for_file(ctx, chat)
    return True


async def _read(ctx: RequestContext, bot: Bot, chat: Chat, document: Document) -> Backup:
    if (document.file_size or 0) > backup_service.MAX_FILE_BYTES:
        raise DomainError("backup.file_too_big", limit=backup_service.MAX_FILE_BYTES // 1024)
    data = (await bot.download(document.file_id)).read()
    return backup_service.read_backup(data, ctx.settings_of(chat), ctx.clock.now())


def problem_line(t: Translator, problem: Problem) -> str:
    params = dict(problem.params)
    if problem.key.startswith("lessons.") and "field" in params:
        params["field"] = t(f"lessons.field_{params['field']}")
    text = sentence_of(t, DomainError(problem.key, **params)).removeprefix("⚠️").strip()
    return t("backup.problem_line", path=quote(problem.path or t("backup.whole_file")), text=text)


def report_text(t: Translator, problems: list[Problem]) -> str:
    lines = [t("backup.refused", count=len(problems))]
    lines += [problem_line(t, problem) for problem in problems[:PROBLEMS_SHOWN]]
    if len(problems) > PROBLEMS_SHOWN:
        lines.append(t("backup.more_problems", count=len(problems) - PROBLEMS_SHOWN))
    lines.append(t("backup.send_again"))
    return "\n".join(lines)


def _setting_value(t: Translator, name: str, value) -> str:
    if name == "language":
        return t(f"language.{value}")
    if name == "quiet_hours":
        start, end = value
        return t("settings.quiet_off") if not start else f"{start}–{end}"
    if name == "meeting_reminders":
        return reminders_label(t, value)
    if name == "meeting_rules":
        return rules_label(t, value)
    if name == "vanguard_weights":
        return weights_label(t, value)
    return quote(str(value))


def _routine_value(t: Translator, rule, active: bool) -> str:
    return describe(rule, t) if active and rule is not None else t("backup.off")


def preview_view(
    t: Translator, chat: Chat, backup: Backup, plan: Plan, apply_data: str, cancel_data: str
) -> tuple[str, InlineKeyboardMarkup | None]:
    entry = plan.entry
    lines = [t("backup.preview_title", group=quote(_short(chat.title)))]
    source = quote(_short(entry.title or backup.source_title or str(entry.telegram_id)))
    if backup.created_at is not None:
        lines.append(t("backup.preview_source", source=source, date=backup.created_at.strftime("%Y-%m-%d")))
    else:
        lines.append(t("backup.preview_source_undated", source=source))
    if plan.empty:
        lines.append(t("backup.nothing_to_do"))
        return "\n".join(lines), None
    if plan.settings:
        lines.append(t("backup.preview_settings"))
        for change in plan.settings:
            lines.append(
                t(
                    "backup.change_line",
                    name=t(f"backup.setting.{change.name}"),
                    old=_setting_value(t, change.name, change.old),
                    new=_setting_value(t, change.name, change.new),
                )
            )
    else:
        lines.append(t("backup.preview_settings_same"))
    lines.append(t("backup.preview_announcements", new=len(plan.announcements), present=plan.announcements_present))
    for change in plan.routines:
        old_on = change.old is not None and change.old.status == "active"
        lines.append(
            t(
                "backup.change_line",
                name=t(f"backup.routine.{change.routine.kind}"),
                old=_routine_value(t, schedule_service.rule_of(change.old.rule) if old_on else None, old_on),
                new=_routine_value(t, change.routine.rule, change.routine.status == "active"),
            )
        )
    lines.append(t("backup.preview_lessons", new=len(plan.lessons), present=plan.lessons_present))
    lines.append(t("backup.preview_confirm"))
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=t("backup.apply_button"), callback_data=apply_data),
                InlineKeyboardButton(text=t("backup.cancel_button"), callback_data=cancel_data),
            ]
        ]
    )
    return "\n".join(lines), keyboard


def picker_view(t: Translator, chat: Chat, backup: Backup) -> tuple[str, InlineKeyboardMarkup]:
    lines = [t("backup.choose_group", count=len(backup.entries), group=quote(_short(chat.title)))]
    rows = [
        [
            InlineKeyboardButton(
                text=_short(entry.title) or str(entry.telegram_id),
                callback_data=RestoreButton(action="pick", chat=chat.id, entry=entry.index).pack(),
            )
        ]
        for entry in backup.entries[:GROUPS_OFFERED]
    ]
    if len(backup.entries) > GROUPS_OFFERED:
        lines.append(t("backup.more_groups", count=len(backup.entries) - GROUPS_OFFERED))
    rows.append(
        [
            InlineKeyboardButton(
                text=t("backup.cancel_button"), callback_data=RestoreButton(action="cancel", chat=chat.id).pack()
            )
        ]
    )
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


async def _preview(ctx: RequestContext, chat: Chat, backup: Backup, entry: Entry):
    plan = await backup_service.plan_restore(
        ctx.session, chat, entry, default_language=ctx.defaults[0], default_timezone=ctx.defaults[1]
    )
    apply_data = RestoreButton(action="apply", chat=chat.id, entry=entry.index).pack()
    cancel_data = RestoreButton(action="cancel", chat=chat.id).pack()
    return plan, *preview_view(ctx.t, chat, backup, plan, apply_data, cancel_data)


@awaited_document(AWAITED, hint="backup.file_unexpected")
async def restore_file(message: Message, ctx: RequestContext, bot: Bot, ref: str) -> None:
    """The backup file the bot asked for, for the group named when it asked: the report of its problems,
    or the preview of what restoring it would change (as a reply to the file, which the buttons use)."""
    t = ctx.t
    chat, refusal = await committee_chat(ctx, int(ref)) if ref.isdigit() else (None, "errors.committee_only")
    if chat is None:
        ctx.replies.add(message.reply(t(refusal)))
        return
    try:
        backup = await _read(ctx, bot, chat, message.document)
        if backup.problems:
            ctx.replies.add(message.reply(report_text(t, backup.problems)))
            return
        entry = backup.entry_for(chat.telegram_id)
        if entry is None:
            text, keyboard = picker_view(t, chat, backup)
            ctx.replies.add(message.reply(text, reply_markup=keyboard))
            return
        plan, text, keyboard = await _preview(ctx, chat, backup, entry)
    except DomainError as error:
        ctx.replies.add(message.reply(explain(t, error)))
        return
    if plan.empty:  # nothing to confirm: the bot stops waiting for a file
        await people_service.drop_input(ctx.session, ctx.person.id, AWAITED, ref)
    ctx.replies.add(message.reply(text, reply_markup=keyboard))


def _replied_document(callback: CallbackQuery, user_id: int) -> Document | None:
    """The file a preview answers: the one this person sent in this private chat."""
    replied = getattr(callback.message, "reply_to_message", None)
    if replied is None or replied.document is None or replied.from_user is None:
        return None
    if replied.from_user.id != user_id or replied.chat.id != user_id:
        return None
    return replied.document


async def restore_button(callback: CallbackQuery, callback_data: RestoreButton, ctx: RequestContext, bot: Bot) -> None:
    """Buttons under a preview, in private. Callback data is untrusted: the group must be one where the
    person is on the committee, and the entry one the file has."""
    data, t = callback_data, ctx.t
    if ctx.person is None or ctx.chat is not None or callback.message is None or data.action not in ACTIONS:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    chat, refusal = await committee_chat(ctx, data.chat)
    if chat is None:
        refuse_callback(ctx, callback, refusal)
        return
    if data.action == "cancel":
        await people_service.drop_input(ctx.session, ctx.person.id, AWAITED, str(chat.id))
        ctx.replies.add(callback.message.edit_text(t("backup.cancelled")))
        ctx.replies.add(callback.answer())
        return
    document = _replied_document(callback, ctx.person.id)
    if document is None:
        refuse_callback(ctx, callback, "errors.button_expired")
        return
    try:
        backup = await _read(ctx, bot, chat, document)
        entry = next((entry for entry in backup.entries if entry.index == data.entry), None)
        if entry is None:  # a file with problems has no entries: it cannot be restored from an old preview either
            raise DomainError("errors.button_expired")
        if data.action == "pick":
            plan, text, keyboard = await _preview(ctx, chat, backup, entry)
            if plan.empty:
                await people_service.drop_input(ctx.session, ctx.person.id, AWAITED, str(chat.id))
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer())
            return
        plan = await backup_service.restore(
            ctx.session,
            chat.id,
            entry,
            ctx.person.id,
            ctx.clock.now(),
            default_language=ctx.defaults[0],
            default_timezone=ctx.defaults[1],
        )
    except DomainError as error:
        refuse_callback_error(ctx, callback, error)
        return
    await people_service.drop_input(ctx.session, ctx.person.id, AWAITED, str(chat.id))
    if plan.empty:
        ctx.replies.add(callback.answer(t("backup.already_restored"), show_alert=True))
        return
    done = t(
        "backup.restored",
        group=quote(_short(chat.title)),
        settings=len(plan.settings),
        schedules=len(plan.announcements),
        routines=len(plan.routines),
        lessons=len(plan.lessons),
    )
    ctx.replies.add(callback.message.edit_text(done))
    ctx.replies.add(callback.answer(t("backup.restored_short")))


def build_router() -> Router:
    router = Router(name="backup")
    in_group = IN_GROUP
    router.message.register(backup_command, Command("backup"), in_group)
    router.message.register(restore_command, Command("restore"), in_group)
    router.callback_query.register(unit_backup_button, UnitBackupButton.filter())
    router.callback_query.register(restore_button, RestoreButton.filter())
    return router
