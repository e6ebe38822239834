"""Group registration, deactivation, migration and per-group settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import DomainError
from storage import chats as chat_store
from storage.models import AuditLog, Chat

GROUP_TYPES = ("group", "supergroup")
LANGUAGES = ("zh", "en")
DEFAULT_QUIET_HOURS = ("22:00", "07:00")
# Offered as buttons in the settings panel; any IANA name is accepted by /settings tz <name>.
COMMON_TIMEZONES = (
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Taipei",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
)
QUIET_HOUR_PRESETS = (("22:00", "07:00"), ("21:00", "08:00"), ("23:00", "06:00"), (None, None))
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class GroupSettings:
    language: str
    timezone: str
    quiet_start: str | None
    quiet_end: str | None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class ChatInfo:
    """A read-only copy of a group's record, safe to keep between transactions (and to cache)."""

    id: int
    telegram_id: int
    type: str
    title: str | None
    is_active: bool
    bot_is_admin: bool
    language: str | None
    timezone: str | None
    quiet_start: str | None
    quiet_end: str | None
    unit_id: int | None

    @classmethod
    def of(cls, chat: Chat) -> ChatInfo:
        return cls(
            chat.id,
            chat.telegram_id,
            chat.type,
            chat.title,
            chat.is_active,
            chat.bot_is_admin,
            chat.language,
            chat.timezone,
            chat.quiet_start,
            chat.quiet_end,
            chat.unit_id,
        )


async def attached(session: AsyncSession, chat: Chat | ChatInfo) -> Chat:
    """The session's own row for a chat given as a copy (a no-op for a row already in the session)."""
    row = await session.get(Chat, chat.id)
    if row is None:
        raise DomainError("errors.chat_gone")
    return row


@dataclass(frozen=True)
class RegisterResult:
    chat: Chat
    is_new: bool
    was_inactive: bool


def settings_of(chat: Chat | ChatInfo | None, *, default_language: str, default_timezone: str) -> GroupSettings:
    if chat is None:
        return GroupSettings(default_language, default_timezone, *DEFAULT_QUIET_HOURS)
    quiet = (chat.quiet_start, chat.quiet_end) if chat.quiet_start is not None else DEFAULT_QUIET_HOURS
    if chat.quiet_start == "":
        quiet = (None, None)
    return GroupSettings(
        language=chat.language or default_language,
        timezone=chat.timezone or default_timezone,
        quiet_start=quiet[0],
        quiet_end=quiet[1],
    )


async def register_chat(
    session: AsyncSession,
    telegram_id: int,
    chat_type: str,
    title: str | None,
    *,
    bot_is_admin: bool | None = None,
) -> RegisterResult:
    """Make sure the chat exists and is active; tell whether it is new or came back."""
    chat = await chat_store.get_by_telegram_id(session, telegram_id)
    if chat is None:
        chat = await chat_store.add(session, telegram_id, chat_type, title)
        if bot_is_admin is not None:
            chat.bot_is_admin = bot_is_admin
        return RegisterResult(chat, is_new=True, was_inactive=False)
    was_inactive = not chat.is_active
    chat.is_active = True
    if title and chat.title != title:
        chat.title = title
    if chat.type != chat_type:
        chat.type = chat_type
    if bot_is_admin is not None:
        chat.bot_is_admin = bot_is_admin
    return RegisterResult(chat, is_new=False, was_inactive=was_inactive)


async def get_chat(session: AsyncSession, telegram_id: int) -> Chat | None:
    return await chat_store.get_by_telegram_id(session, telegram_id)


async def get_chat_info(session: AsyncSession, telegram_id: int) -> ChatInfo | None:
    chat = await chat_store.get_by_telegram_id(session, telegram_id)
    return ChatInfo.of(chat) if chat is not None else None


async def get_chat_by_pk(session: AsyncSession, chat_pk: int) -> Chat | None:
    return await chat_store.get_by_id(session, chat_pk)


async def active_group_ids(session: AsyncSession) -> list[int]:
    """The groups the bot is in now (housekeeping gives each its routine schedules)."""
    return await chat_store.active_group_ids(session)


async def deactivate_chat(session: AsyncSession, telegram_id: int) -> bool:
    chat = await chat_store.get_by_telegram_id(session, telegram_id)
    if chat is None or not chat.is_active:
        return False
    chat.is_active = False
    chat.bot_is_admin = False
    return True


async def migrate_chat(session: AsyncSession, old_telegram_id: int, new_telegram_id: int) -> Chat | None:
    """Follow a group that became a supergroup: same records, new Telegram id."""
    old = await chat_store.get_by_telegram_id(session, old_telegram_id)
    new = await chat_store.get_by_telegram_id(session, new_telegram_id)
    if old is None:
        return new
    if new is not None and new.id != old.id:
        await chat_store.fold_into(session, keep=old, duplicate=new)
    old.previous_telegram_id = old_telegram_id
    old.telegram_id = new_telegram_id
    old.type = "supergroup"
    old.is_active = True
    await session.flush()
    return old


def validate_timezone(name: str) -> str:
    name = name.strip()
    if name not in _timezone_names():
        raise DomainError("settings.bad_timezone", value=name[:64])
    return name


def validate_quiet_hours(start: str | None, end: str | None) -> tuple[str | None, str | None]:
    if start is None and end is None:
        return None, None
    if start is None or end is None or not _HHMM.match(start) or not _HHMM.match(end) or start == end:
        raise DomainError("settings.bad_quiet_hours")
    return start, end


async def change_settings(
    session: AsyncSession,
    chat: Chat | ChatInfo,
    actor_id: int,
    *,
    language: str | None = None,
    timezone: str | None = None,
    quiet_hours: tuple[str | None, str | None] | None = None,
) -> ChatInfo:
    """Apply the changes and return the chat as it is now."""
    chat = await attached(session, chat)
    changes: list[str] = []
    if language is not None:
        if language not in LANGUAGES:
            raise DomainError("settings.bad_language")
        chat.language = language
        changes.append(f"language={language}")
    if timezone is not None:
        chat.timezone = validate_timezone(timezone)
        changes.append(f"timezone={chat.timezone}")
    if quiet_hours is not None:
        start, end = validate_quiet_hours(*quiet_hours)
        # An empty string records "switched off", as opposed to NULL for "never set: use the default".
        chat.quiet_start = start if start is not None else ""
        chat.quiet_end = end if end is not None else ""
        changes.append(f"quiet_hours={start}-{end}")
    if changes:
        session.add(AuditLog(chat_id=chat.id, actor_id=actor_id, action="settings", detail=", ".join(changes)))
        await session.flush()
    return ChatInfo.of(chat)


def is_quiet_time(settings: GroupSettings, moment: datetime) -> bool:
    if not settings.quiet_start or not settings.quiet_end:
        return False
    local = moment.astimezone(settings.zone).strftime("%H:%M")
    if settings.quiet_start < settings.quiet_end:
        return settings.quiet_start <= local < settings.quiet_end
    return local >= settings.quiet_start or local < settings.quiet_end


def quiet_hours_end(settings: GroupSettings, moment: datetime) -> datetime | None:
    """When the quiet hours that ``moment`` falls in end (None when it is not in quiet hours)."""
    if not is_quiet_time(settings, moment):
        return None
    local = moment.astimezone(settings.zone)
    hour, minute = (int(part) for part in settings.quiet_end.split(":"))
    end = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(moment.tzinfo)


_TIMEZONES: frozenset[str] | None = None


def _timezone_names() -> frozenset[str]:
    global _TIMEZONES
    if _TIMEZONES is None:
        _TIMEZONES = frozenset(available_timezones())
    return _TIMEZONES


def zone_or_default(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)
