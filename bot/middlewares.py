"""Update middlewares: one transaction per update (idempotent on update_id), then context and roster."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import Chat as TgChat
from aiogram.types import TelegramObject, Update
from aiogram.types import User as TgUser

from bot.aio import wait_event
from bot.caches import TableCache
from bot.context import RequestContext
from bot.delivery import Delivery, Replies
from bot.i18n import Translator, language_for_user
from bot.services import chats as chat_service
from bot.services import people as people_service
from bot.services.chats import ChatInfo
from bot.services.clock import Clock
from bot.services.people import Person
from storage.db import Database, WriteNeeded, in_read_only_transaction
from storage.updates import claim_update, claim_updates

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
        return await wait_event(self._idle, timeout)


class KeyedLock:
    """One FIFO lock per key, dropped when nobody holds or waits for it.

    Updates of one chat are handled one after another, in the order Telegram sent them (a join and
    a leave of the same person must not swap), while different chats run side by side.
    """

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: int):
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class ClaimBatcher:
    """Records the update_ids of updates that changed nothing but answered, many per transaction.

    Such an update needs no transaction of its own, yet its answer must not go out twice when
    Telegram delivers it again after a restart. Claims that arrive together share one INSERT.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[int, list[asyncio.Future[bool]]] = {}
        self._flushing: asyncio.Task | None = None

    async def claim(self, update_id: int) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(update_id, []).append(future)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        return await future

    # Long enough for a burst of taps to share one transaction, short enough not to be noticed.
    GATHER_SECONDS = 0.05

    async def _flush(self) -> None:
        await asyncio.sleep(self.GATHER_SECONDS)
        batch, self._pending, self._flushing = self._pending, {}, None
        try:
            async with self.db.transaction() as session:
                fresh = await claim_updates(session, list(batch))
        except Exception as error:
            for futures in batch.values():
                for future in futures:
                    future.set_exception(error)
            return
        for update_id, futures in batch.items():
            for index, future in enumerate(futures):
                future.set_result(update_id in fresh and index == 0)


class UpdateTransactionMiddleware(BaseMiddleware):
    """Opens the update's transaction, records its update_id in it, and sends replies after the commit.

    A handler that fails rolls the whole update back (its update_id too, so a redelivery may try
    again) and the user gets a short apology instead of silence.
    """

    def __init__(
        self,
        db: Database,
        delivery: Delivery,
        in_flight: InFlight,
        default_language: str,
        writing_buttons: frozenset[str] = frozenset(),
        claims: ClaimBatcher | None = None,
    ) -> None:
        # Buttons (callback data prefixes) whose press always records something: no read attempt first.
        self.writing_buttons = writing_buttons
        self.chat_order = KeyedLock()
        # Shared with the flood guard, whose dropped updates are recorded in the same batches.
        self.claims = claims or ClaimBatcher(db)
        self.db = db
        self.delivery = delivery
        self.in_flight = in_flight
        self.default_language = default_language

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        self.in_flight.enter()
        try:
            chat = data.get("event_chat")
            user = data.get("event_from_user")
            async with self.chat_order.hold(chat.id if chat else user.id if user else 0):
                outcome = await self._handle(handler, event, data)
            if outcome is None:
                return UNHANDLED
            result, replies = outcome
            await replies.flush(self.delivery)
            return result
        finally:
            self.in_flight.leave()

    async def _handle(self, handler: Handler, event: Update, data: dict[str, Any]) -> tuple[Any, Replies] | None:
        try:
            if self._writes(event):  # a sign-in, a confirmation: a read attempt would only be thrown away
                return await self._attempt(handler, event, data, read_only=False)
            # First as a read: most updates change nothing and need neither the write lock nor a
            # record of their update_id. One that turns out to write is run again, as a write.
            try:
                result, replies = await self._attempt(handler, event, data, read_only=True)
                if replies.answers and not await self.claims.claim(event.update_id):
                    log.info("update %s was answered before; skipped", event.update_id)
                    return None
            except WriteNeeded:
                result, replies = await self._attempt(handler, event, data, read_only=False)
        except Exception:
            log.exception("update %s failed and was rolled back", event.update_id)
            await self._apologise(event, data.get("event_from_user"))
            return None
        return result, replies

    def _writes(self, event: Update) -> bool:
        query = event.callback_query
        return query is not None and (query.data or "").split(":", 1)[0] in self.writing_buttons

    async def _attempt(
        self, handler: Handler, event: Update, data: dict[str, Any], *, read_only: bool
    ) -> tuple[Any, Replies]:
        replies = Replies()
        attempt = dict(data)  # what one attempt adds to the handler data must not leak into the next
        async with self.db.transaction(read_only=read_only) as session:
            if not read_only and not await claim_update(session, event.update_id):
                log.info("update %s was handled before; skipped", event.update_id)
                return UNHANDLED, replies
            attempt["session"] = session
            attempt["replies"] = replies
            return await handler(event, attempt), replies

    async def _apologise(self, update: Update, user: TgUser | None) -> None:
        t = Translator(language_for_user(user.language_code if user else None, self.default_language))
        if update.callback_query is not None:
            await self.delivery.send(update.callback_query.answer(t("errors.internal"), show_alert=True))
        elif update.message is not None and update.message.text:
            await self.delivery.send(update.message.reply(t("errors.internal")))


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


@dataclass
class Sightings:
    """Roster facts one update brings that are not known (recently) yet."""

    at: datetime
    person: Person | None = None
    membership: tuple[int, int] | None = None  # (chat pk, user id)
    started: int | None = None  # a user who wrote to the bot in private

    def __bool__(self) -> bool:
        return bool(self.person or self.membership or self.started)

    def remember_in(self, cache: RosterCache) -> None:
        if self.person:
            cache.remember((0, self.person.id), self.person)
        if self.membership:
            cache.remember(self.membership, True)
        if self.started:
            cache.remember((-1, self.started), True)


class RosterKeeper:
    """Records who the bot sees. An update that writes anyway records its sighting in its own
    transaction; the others (most of them) hand it here, and it is written with others in one
    transaction a moment later, so that a member's message does not need a write of its own.
    A crash can lose the sightings of that moment; the next message brings them again."""

    FLUSH_DELAY_SECONDS = 0.2

    def __init__(self, db: Database, clock: Clock, cache: RosterCache | None = None) -> None:
        self.db = db
        self.clock = clock
        self.cache = cache or RosterCache()
        self._pending: list[Sightings] = []
        self._flushing: asyncio.Task | None = None

    def unknown(self, person: Person, chat_pk: int | None, started: bool) -> Sightings:
        cache = self.cache
        return Sightings(
            at=self.clock.now(),
            person=None if cache.is_fresh((0, person.id), person) else person,
            membership=None if chat_pk is None or cache.is_fresh((chat_pk, person.id), True) else (chat_pk, person.id),
            started=person.id if started and not cache.is_fresh((-1, person.id), True) else None,
        )

    async def record_now(self, session, sightings: Sightings, replies: Replies) -> None:
        await people_service.record_sightings(
            session,
            [sightings.person] if sightings.person else [],
            [(*sightings.membership, sightings.at)] if sightings.membership else [],
            [sightings.started] if sightings.started else [],
            sightings.at,
        )

        async def remember() -> None:
            sightings.remember_in(self.cache)

        replies.after_commit(remember)

    def record_later(self, sightings: Sightings) -> None:
        self._pending.append(sightings)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.FLUSH_DELAY_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        batch, self._pending, self._flushing = self._pending, [], None
        if not batch:
            return
        people = {s.person.id: s.person for s in batch if s.person}
        latest: dict[tuple[int, int], datetime] = {}
        for s in batch:
            if s.membership:
                latest[s.membership] = max(s.at, latest.get(s.membership, s.at))
        memberships = [(*pair, at) for pair, at in sorted(latest.items())]
        started = sorted({s.started for s in batch if s.started})
        try:
            async with self.db.transaction() as session:
                await people_service.record_sightings(
                    session, list(people.values()), memberships, started, self.clock.now()
                )
        except Exception:
            log.exception("could not record %s roster sightings; they come again with the next messages", len(batch))
            return
        for sightings in batch:
            sightings.remember_in(self.cache)


class ContextMiddleware(BaseMiddleware):
    """Keeps users, groups and the roster up to date from every update, and builds ``ctx``."""

    def __init__(
        self,
        clock: Clock,
        *,
        default_language: str,
        default_timezone: str,
        superusers: frozenset[int],
        roster: RosterKeeper,
        chat_cache: TableCache,
        role_cache: TableCache,
    ) -> None:
        self.clock = clock
        self.default_language = default_language
        self.default_timezone = default_timezone
        self.superusers = superusers
        self.roster = roster
        self.chat_cache = chat_cache
        self.role_cache = role_cache

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        session = data["session"]
        replies: Replies = data["replies"]
        tg_user: TgUser | None = data.get("event_from_user")
        tg_chat: TgChat | None = data.get("event_chat")

        chat_record = None
        if tg_chat is not None and tg_chat.type in chat_service.GROUP_TYPES:
            telegram_id = tg_chat.id
            chat_record = await self.chat_cache.get(
                telegram_id, lambda: chat_service.get_chat_info(session, telegram_id)
            )
            if chat_record is None and not _is_migration(event):
                # A group the bot is in but has no record of (e.g. added before the database existed).
                registered = await chat_service.register_chat(session, tg_chat.id, tg_chat.type, tg_chat.title)
                chat_record = ChatInfo.of(registered.chat)

        person = None
        if tg_user is not None and not tg_user.is_bot:
            person = Person(
                id=tg_user.id,
                first_name=tg_user.first_name,
                last_name=tg_user.last_name,
                username=tg_user.username,
                language_code=tg_user.language_code,
            )
            await self._keep_roster(session, replies, person, tg_chat, chat_record, event)

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
            role_cache=self.role_cache,
            defaults=(self.default_language, self.default_timezone),
        )
        return await handler(event, data)

    async def _keep_roster(self, session, replies, person, tg_chat, chat_record, event: Update) -> None:
        in_group = chat_record is not None and chat_record.is_active
        started = tg_chat is not None and tg_chat.type == "private" and event.message is not None
        sightings = self.roster.unknown(person, chat_record.id if in_group else None, started)
        if not sightings:
            return
        if in_read_only_transaction():
            # Queued only once the update has gone through: an attempt that is re-run as a write
            # must leave nothing behind.
            async def later() -> None:
                self.roster.record_later(sightings)

            replies.after_commit(later)
        else:
            await self.roster.record_now(session, sightings, replies)


def _is_migration(update: Update) -> bool:
    message = update.message
    return message is not None and (message.migrate_from_chat_id is not None or message.migrate_to_chat_id is not None)
