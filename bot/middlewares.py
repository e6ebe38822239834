"""Update middlewares: one transaction per update (idempotent on update_id), then context and roster."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import Chat as TgChat
from aiogram.types import TelegramObject, Update
from aiogram.types import User as TgUser

from bot.context import RequestContext
from bot.delivery import Delivery, Replies
from bot.i18n import Translator, language_for_user
from bot.services import chats as chat_service
from bot.services import people as people_service
from bot.services.clock import Clock
from bot.services.people import Person
from storage.db import Database
from storage.updates import claim_update

log = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class InFlight:
    """Counts updates being handled, so that shutdown (and tests) can wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class UpdateTransactionMiddleware(BaseMiddleware):
    """Opens the update's transaction, records its update_id in it, and sends replies after the commit."""

    def __init__(self, db: Database, delivery: Delivery, in_flight: InFlight) -> None:
        self.db = db
        self.delivery = delivery
        self.in_flight = in_flight

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        self.in_flight.enter()
        try:
            replies = Replies()
            async with self.db.transaction() as session:
                if not await claim_update(session, event.update_id):
                    log.info("update %s was handled before; skipped", event.update_id)
                    return UNHANDLED
                data["session"] = session
                data["replies"] = replies
                result = await handler(event, data)
            await replies.flush(self.delivery)
            return result
        finally:
            self.in_flight.leave()


class RosterCache:
    """Remembers recent roster writes so that a chatty group does not rewrite the same rows each message."""

    REFRESH_SECONDS = 600.0
    MAX_ENTRIES = 200_000

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[Any, float]] = {}

    def is_fresh(self, key: tuple[int, int], fingerprint: Any) -> bool:
        entry = self._seen.get(key)
        return entry is not None and entry[0] == fingerprint and time.monotonic() - entry[1] < self.REFRESH_SECONDS

    def remember(self, key: tuple[int, int], fingerprint: Any) -> None:
        if len(self._seen) >= self.MAX_ENTRIES:
            self._seen.clear()
        self._seen[key] = (fingerprint, time.monotonic())

    def forget_chat(self, chat_pk: int) -> None:
        for key in [key for key in self._seen if key[0] == chat_pk]:
            del self._seen[key]


class ContextMiddleware(BaseMiddleware):
    """Keeps users, groups and the roster up to date from every update, and builds ``ctx``."""

    def __init__(
        self,
        clock: Clock,
        *,
        default_language: str,
        default_timezone: str,
        superusers: frozenset[int],
        roster_cache: RosterCache,
    ) -> None:
        self.clock = clock
        self.default_language = default_language
        self.default_timezone = default_timezone
        self.superusers = superusers
        self.roster_cache = roster_cache

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        session = data["session"]
        replies: Replies = data["replies"]
        tg_user: TgUser | None = data.get("event_from_user")
        tg_chat: TgChat | None = data.get("event_chat")
        now = self.clock.now()

        chat_record = None
        if tg_chat is not None and tg_chat.type in chat_service.GROUP_TYPES:
            chat_record = await chat_service.get_chat(session, tg_chat.id)
            if chat_record is None and not _is_migration(event):
                # A group the bot is in but has no record of (e.g. added before the database existed).
                chat_record = (await chat_service.register_chat(session, tg_chat.id, tg_chat.type, tg_chat.title)).chat

        person = None
        if tg_user is not None and not tg_user.is_bot:
            person = Person(
                id=tg_user.id,
                first_name=tg_user.first_name,
                last_name=tg_user.last_name,
                username=tg_user.username,
                language_code=tg_user.language_code,
            )
            await self._keep_roster(session, replies, person, tg_chat, chat_record, event, now)

        settings = chat_service.settings_of(
            chat_record, default_language=self.default_language, default_timezone=self.default_timezone
        )
        if chat_record is not None:
            language = settings.language
        else:
            language = language_for_user(person.language_code if person else None, self.default_language)
        data["ctx"] = RequestContext(
            session=session,
            replies=replies,
            clock=self.clock,
            t=Translator(language),
            person=person,
            chat=chat_record,
            group_settings=settings,
            superusers=self.superusers,
        )
        return await handler(event, data)

    async def _keep_roster(self, session, replies, person, tg_chat, chat_record, event: Update, now) -> None:
        cache = self.roster_cache
        profile_key = (0, person.id)
        if not cache.is_fresh(profile_key, person):
            await people_service.remember_person(session, person, now)
            replies.after_commit(_remember(cache, profile_key, person))
        if chat_record is not None and chat_record.is_active:
            member_key = (chat_record.id, person.id)
            if not cache.is_fresh(member_key, True):
                await people_service.observe_in_chat(session, chat_record.id, person.id, now)
                replies.after_commit(_remember(cache, member_key, True))
        if tg_chat is not None and tg_chat.type == "private" and event.message is not None:
            started_key = (-1, person.id)
            if not cache.is_fresh(started_key, True):
                await people_service.mark_started(session, person.id)
                replies.after_commit(_remember(cache, started_key, True))


def _remember(cache: RosterCache, key: tuple[int, int], fingerprint: Any) -> Callable[[], Awaitable[None]]:
    async def job() -> None:
        cache.remember(key, fingerprint)

    return job


def _is_migration(update: Update) -> bool:
    message = update.message
    return message is not None and (message.migrate_from_chat_id is not None or message.migrate_to_chat_id is not None)
