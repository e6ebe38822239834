"""/settings: the group's language, timezone, quiet hours, meeting reminders, required meetings and the
先锋指数 weights, as a panel of buttons (committee only)."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.context import RequestContext
from bot.i18n import Translator
from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import meetings as meeting_service
from bot.services import reports as report_service
from bot.services import schedules as schedule_service
from bot.services import vanguard as vanguard_service
from bot.services.chats import COMMON_TIMEZONES, QUIET_HOUR_PRESETS, ChatInfo, GroupSettings
from bot.services.errors import DomainError
from handlers.common import (
    IN_GROUP,
    explain,
    quote,
    refuse_callback,
    require_committee_message,
    require_group_committee_callback,
)
from handlers.compliance import kind_name, period_name
from handlers.vanguard import weights_label
from storage.models import Chat

# Reminder offsets offered as buttons, in minutes before a meeting; any other is one /settings line away.
REMINDER_PRESETS = ((1440, 60), (1440,), (120,), (1440, 120), ())
# The meeting services refuse bad text with keys of their own catalog; settings answers with its own.
MEETING_SETTING_ERRORS = {
    "meetings.bad_reminders": "settings.bad_reminders",
    "meetings.bad_rules": "settings.bad_rules",
    "meetings.unknown_kind": "settings.bad_rules",
}


class SettingsButton(CallbackData, prefix="st"):
    action: str  # lang | tzmenu | tz | quietmenu | quiet | remindmenu | remind | back | close
    value: str = ""


def _quiet_label(t: Translator, start: str | None, end: str | None) -> str:
    return t("settings.quiet_off") if not start else f"{start}–{end}"


def _offset_label(t: Translator, minutes: int) -> str:
    """1500 → "1天1小时": whole days, hours and minutes, largest first."""
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = (("settings.days", days), ("settings.hours", hours), ("settings.minutes", mins))
    return "".join(t(key, count=count) for key, count in parts if count)


def reminders_label(t: Translator, offsets: tuple[int, ...]) -> str:
    if not offsets:
        return t("settings.reminders_off")
    return t("settings.reminders_before", offsets=t("settings.separator").join(_offset_label(t, m) for m in offsets))


def rules_label(t: Translator, rules: dict[str, str]) -> str:
    if not rules:
        return t("settings.rules_none")
    return " · ".join(
        t("settings.rule", kind=kind_name(t, kind), period=period_name(t, rules[kind]))
        for kind in meeting_service.KINDS
        if kind in rules
    )


def monthly_label(t: Translator, schedule) -> str:
    if schedule is None:
        return t("reports.monthly_off")
    rule = schedule_service.rule_of(schedule.rule)
    return t("reports.monthly_on", day=rule.day, time=f"{rule.hour:02d}:{rule.minute:02d}")


def render_panel(
    t: Translator, settings: GroupSettings, chat: Chat | None, monthly=None
) -> tuple[str, InlineKeyboardMarkup]:
    text = t(
        "settings.panel",
        language=t(f"language.{settings.language}"),
        timezone=settings.timezone,
        quiet=_quiet_label(t, settings.quiet_start, settings.quiet_end),
        reminders=reminders_label(t, meeting_service.reminders_of(chat)),
        rules=rules_label(t, attendance_service.rules_of(chat)),
        vanguard=weights_label(t, vanguard_service.weights_of(chat)),
        report=monthly_label(t, monthly),
    )
    mark = {code: ("✅ " if code == settings.language else "") for code in ("zh", "en")}
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=mark["zh"] + "中文", callback_data=SettingsButton(action="lang", value="zh").pack()
                ),
                InlineKeyboardButton(
                    text=mark["en"] + "English",
                    callback_data=SettingsButton(action="lang", value="en").pack(),
                ),
            ],
            [
                InlineKeyboardButton(
                    text=t("settings.timezone_button"), callback_data=SettingsButton(action="tzmenu").pack()
                )
            ],
            [
                InlineKeyboardButton(
                    text=t("settings.quiet_button"), callback_data=SettingsButton(action="quietmenu").pack()
                )
            ],
            [
                InlineKeyboardButton(
                    text=t("settings.reminders_button"), callback_data=SettingsButton(action="remindmenu").pack()
                )
            ],
            [InlineKeyboardButton(text=t("settings.close"), callback_data=SettingsButton(action="close").pack())],
        ]
    )
    return text, keyboard


def _menu(
    t: Translator, title_key: str, options: list[tuple[str, str]], action: str
) -> tuple[str, InlineKeyboardMarkup]:
    rows = [
        [InlineKeyboardButton(text=label, callback_data=SettingsButton(action=action, value=str(index)).pack())]
        for index, (label, _) in enumerate(options)
    ]
    rows.append([InlineKeyboardButton(text=t("settings.back"), callback_data=SettingsButton(action="back").pack())])
    return t(title_key), InlineKeyboardMarkup(inline_keyboard=rows)


def _current(ctx: RequestContext, chat: ChatInfo | Chat) -> tuple[Translator, GroupSettings]:
    """The group's settings after a change, with its language (which the change may have switched)."""
    settings = chat_service.settings_of(
        chat, default_language=ctx.group_settings.language, default_timezone=ctx.group_settings.timezone
    )
    return Translator(settings.language), settings


async def _panel(ctx: RequestContext, t: Translator, settings: GroupSettings) -> tuple[str, InlineKeyboardMarkup]:
    # The meeting settings are not in the cached ChatInfo: they are read from the group's row.
    chat = await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id)
    return render_panel(t, settings, chat, await report_service.monthly_of(ctx.session, ctx.chat.id))


async def _change_timezone(ctx: RequestContext, zone: str) -> ChatInfo:
    """A new time zone moves the group's schedules: their rules now read in it."""
    chat = await chat_service.change_settings(ctx.session, ctx.chat, ctx.person.id, timezone=zone)
    _, settings = _current(ctx, chat)
    await schedule_service.follow_timezone(ctx.session, chat.id, settings, ctx.clock.now())
    return chat


async def settings_command(message: Message, ctx: RequestContext, command: CommandObject) -> None:
    if ctx.chat is None or not await require_committee_message(ctx, message):
        return
    if command.args:
        await _apply_text_setting(message, ctx, command.args)
        return
    text, keyboard = await _panel(ctx, ctx.t, ctx.group_settings)
    ctx.replies.add(message.answer(text, reply_markup=keyboard))


async def _apply_text_setting(message: Message, ctx: RequestContext, args: str) -> None:
    """One-line form: /settings tz Europe/Berlin · /settings quiet 22:00-07:00|off · /settings lang en ·
    /settings reminders 1d,1h|off · /settings rules 支委会=月 党课=季度 ·
    /settings vanguard 出勤=40 回执=20 学习=30 亮身份=10|默认 · /settings report 1 09:00|off."""
    name, _, value = args.strip().partition(" ")
    value = value.strip()
    try:
        if name in ("tz", "timezone", "时区"):
            chat = await _change_timezone(ctx, value)
        elif name in ("quiet", "免打扰"):
            if value.lower() in ("off", "关", "关闭"):
                quiet = (None, None)
            else:
                start, _, end = value.replace("–", "-").partition("-")
                quiet = (start.strip(), end.strip())
            chat = await chat_service.change_settings(ctx.session, ctx.chat, ctx.person.id, quiet_hours=quiet)
        elif name in ("lang", "language", "语言"):
            chat = await chat_service.change_settings(ctx.session, ctx.chat, ctx.person.id, language=value.lower())
        elif name in ("reminders", "reminder", "提醒", "会议提醒"):
            minutes = meeting_service.parse_reminders(value)
            chat = await meeting_service.set_reminders(ctx.session, ctx.chat.id, ctx.person.id, minutes)
        elif name in ("rules", "compliance", "会议要求", "规定会议"):
            current = attendance_service.rules_of(await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id))
            rules = attendance_service.parse_rules(value, current)
            chat = await attendance_service.set_rules(ctx.session, ctx.chat.id, ctx.person.id, rules)
        elif name in ("report", "reports", "月报", "报表"):
            rule = report_service.parse_monthly(value)
            await report_service.set_monthly(
                ctx.session, ctx.chat.id, ctx.person.id, rule, ctx.group_settings, ctx.clock.now()
            )
            chat = await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id)
        elif name in ("vanguard", "先锋指数", "先锋", "权重"):
            current = vanguard_service.weights_of(await chat_service.get_chat_by_pk(ctx.session, ctx.chat.id))
            weights = vanguard_service.parse_weights(value, current)
            chat = await vanguard_service.set_weights(ctx.session, ctx.chat.id, ctx.person.id, weights)
        else:
            ctx.replies.add(message.reply(ctx.t("settings.usage")))
            return
    except DomainError as error:
        own_key = MEETING_SETTING_ERRORS.get(error.key)
        if own_key is not None:
            text = ctx.t(own_key, value=quote(str(error.params.get("value", ""))))
        else:
            text = explain(ctx.t, error)
        ctx.replies.add(message.reply(text))
        return
    t, settings = _current(ctx, chat)
    text, keyboard = await _panel(ctx, t, settings)
    ctx.replies.add(message.answer(t("settings.saved") + "\n\n" + text, reply_markup=keyboard))


async def settings_button(callback: CallbackQuery, callback_data: SettingsButton, ctx: RequestContext) -> None:
    if not await require_group_committee_callback(ctx, callback):
        return
    action, value = callback_data.action, callback_data.value
    t, chat = ctx.t, ctx.chat
    try:
        if action == "lang":
            chat = await chat_service.change_settings(ctx.session, ctx.chat, ctx.person.id, language=value)
        elif action == "tz":
            zone = _pick(COMMON_TIMEZONES, value)
            chat = await _change_timezone(ctx, zone)
        elif action == "quiet":
            chat = await chat_service.change_settings(
                ctx.session, ctx.chat, ctx.person.id, quiet_hours=_pick(QUIET_HOUR_PRESETS, value)
            )
        elif action == "remind":
            minutes = _pick(REMINDER_PRESETS, value)
            await meeting_service.set_reminders(ctx.session, ctx.chat.id, ctx.person.id, minutes)
        elif action == "tzmenu":
            options = [(zone, zone) for zone in COMMON_TIMEZONES]
            text, keyboard = _menu(t, "settings.choose_timezone", options, "tz")
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer())
            return
        elif action == "quietmenu":
            options = [(_quiet_label(t, start, end), "") for start, end in QUIET_HOUR_PRESETS]
            text, keyboard = _menu(t, "settings.choose_quiet", options, "quiet")
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer())
            return
        elif action == "remindmenu":
            options = [(reminders_label(t, minutes), "") for minutes in REMINDER_PRESETS]
            text, keyboard = _menu(t, "settings.choose_reminders", options, "remind")
            ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
            ctx.replies.add(callback.answer())
            return
        elif action == "close":
            ctx.replies.add(callback.message.edit_reply_markup(reply_markup=None))
            ctx.replies.add(callback.answer())
            return
        elif action != "back":
            raise DomainError("errors.button_expired")
    except DomainError as error:
        refuse_callback(ctx, callback, error.key)
        return
    t, settings = _current(ctx, chat)
    text, keyboard = await _panel(ctx, t, settings)
    ctx.replies.add(callback.message.edit_text(text, reply_markup=keyboard))
    ctx.replies.add(callback.answer(t("settings.saved") if action != "back" else None))


def _pick(options: tuple, value: str):
    """Callback data is untrusted: the index must be a small number inside the offered list."""
    if not (value.isascii() and value.isdigit()) or int(value) >= len(options):
        raise DomainError("errors.button_expired")
    return options[int(value)]


def build_router() -> Router:
    router = Router(name="settings")
    router.message.register(settings_command, Command("settings"), IN_GROUP)
    router.callback_query.register(settings_button, SettingsButton.filter())
    return router
