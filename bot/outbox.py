"""Sends what the outbox holds (see bot.services.outbox), and keeps live messages current.

``OutboxWorker`` runs for the life of the process. It takes due rows oldest first, builds each
message with the renderer registered for its kind (so a message is rendered when it goes out, in the
group's language of that moment), and sends it through ``Delivery``, which keeps Telegram's limits.
Messages to one chat go out one after another, in order; different chats are served side by side.

``Debouncer`` turns many "this changed" signals into a few edits: a notice's ✅ count after a burst of
taps, a broadcast's progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiogram.methods import TelegramMethod
from sqlalchemy.ext.asyncio import AsyncSession

from bot.aio import wait_event
from bot.delivery import FORBIDDEN, GAVE_UP, SKIPPED, UNKNOWN, Delivery, Outcome
from bot.i18n import Translator, language_for_user
from bot.services import chats as chat_service
from bot.services import outbox as outbox_service
from bot.services import people as people_service
from bot.services.chats import ChatInfo, GroupSettings
from bot.services.clock import Clock
from storage.changes import on_committed_changes
from storage.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Envelope:
    """One outbox row as its renderer sees it."""

    id: int
    key: str
    kind: str
    args: dict[str, Any]
    chat: ChatInfo | None  # the group the message is for, or about when it goes to ``user_id``
    user_id: int | None
    settings: GroupSettings
    t: Translator

    @property
    def recipient(self) -> int | None:
        if self.user_id is not None:
            return self.user_id
        return self.chat.telegram_id if self.chat is not None else None


Render = Callable[[AsyncSession, Envelope], Awaitable[TelegramMethod | None]]
OnSent = Callable[[AsyncSession, Envelope, Any], Awaitable[list[TelegramMethod]]]
OnDone = Callable[[Envelope], None]
OnUnknown = Callable[[AsyncSession, Envelope, datetime], Awaitable[None]]


@dataclass(frozen=True)
class OutboxKind:
    """How to build one kind of message (``render``: None means there is nothing to send any more),
    what to record once it is sent (``on_sent``, in the same transaction as the outcome; it may return
    follow-up calls such as a pin), what follows when nobody can know whether it arrived (``on_unknown``:
    a message that was to follow it still goes), and whom to tell once it is settled either way
    (``on_done``)."""

    render: Render
    on_sent: OnSent | None = None
    on_done: OnDone | None = None
    on_unknown: OnUnknown | None = None


class OutboxWorker:
    BATCH = 500
    CONCURRENCY = 32
    IDLE_POLL_SECONDS = 60.0

    def __init__(
        self,
        db: Database,
        delivery: Delivery,
        clock: Clock,
        kinds: dict[str, OutboxKind],
        *,
        default_language: str,
        default_timezone: str,
    ) -> None:
        self.db = db
        self.delivery = delivery
        self.clock = clock
        self.kinds = kinds
        self.default_language = default_language
        self.default_timezone = default_timezone
        self._wakeup = asyncio.Event()
        self._queued: dict[tuple, deque[int]] = {}
        self._known: set[int] = set()
        self._busy: set[tuple] = set()
        self._tasks: set[asyncio.Task] = set()
        self._requested = 0
        self._settled = 0
        self._settled_changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        on_committed_changes(self._on_changes)

    def _on_changes(self, tables: frozenset[str]) -> None:
        if "outbox" in tables:
            self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    # -------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        async with self.db.transaction() as session:
            interrupted = await outbox_service.recover_interrupted(session)
        if interrupted:
            log.warning("%s outbox messages were being sent when the process stopped: marked unknown", interrupted)
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # Sends in progress finish (their outcome is recorded), so that a clean stop leaves nothing unknown.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until everything due now has been sent (or given up): for tests and benchmarks."""
        self._requested += 1
        target = self._requested
        self.wake()
        deadline = time.monotonic() + timeout
        while self._settled < target:
            self._settled_changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the outbox did not settle")
            await wait_event(self._settled_changed, remaining)

    # -------------------------------------------------------------------------------- the loop

    async def _run(self) -> None:
        while True:
            try:
                await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox pass failed; trying again shortly")
                await asyncio.sleep(1.0)

    async def _pass(self) -> None:
        self._wakeup.clear()
        requested = self._requested
        await self._fetch()
        self._start_sends()
        if not self._tasks and not self._queued:
            self._settled = requested
            self._settled_changed.set()
            await self._sleep_until_due()
            return
        waiters = {asyncio.ensure_future(self._wakeup.wait()), *self._tasks}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                if waiter not in self._tasks:
                    waiter.cancel()

    async def _fetch(self) -> None:
        async with self.db.transaction(read_only=True) as session:
            rows = await outbox_service.due(session, self.clock.now(), self.BATCH)
        for row_id, chat_pk, user_id in rows:
            if row_id in self._known:
                continue
            self._known.add(row_id)
            self._queued.setdefault((chat_pk, user_id) if user_id is not None else (chat_pk,), deque()).append(row_id)

    def _start_sends(self) -> None:
        for recipient in list(self._queued):
            if len(self._tasks) >= self.CONCURRENCY:
                return
            if recipient in self._busy:
                continue
            queue = self._queued[recipient]
            row_id = queue.popleft()
            if not queue:
                del self._queued[recipient]
            self._busy.add(recipient)
            task = asyncio.create_task(self._send_one(row_id, recipient))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _sleep_until_due(self) -> None:
        async with self.db.transaction(read_only=True) as session:
            due_at = await outbox_service.next_due_at(session)
        delay = self.IDLE_POLL_SECONDS
        if due_at is not None:
            delay = min(delay, max(0.0, (due_at - self.clock.now()).total_seconds()))
        await wait_event(self._wakeup, delay)

    # -------------------------------------------------------------------------------- one message

    async def _send_one(self, row_id: int, recipient: tuple) -> None:
        try:
            await self._deliver(row_id)
        except Exception:
            log.exception("outbox message %s failed", row_id)
        finally:
            self._busy.discard(recipient)
            self._known.discard(row_id)
            self.wake()

    async def _envelope(self, session: AsyncSession, row) -> Envelope:
        chat = None
        if row.chat_id is not None:
            found = await chat_service.get_chat_by_pk(session, row.chat_id)
            chat = ChatInfo.of(found) if found is not None else None
        settings = chat_service.settings_of(
            chat, default_language=self.default_language, default_timezone=self.default_timezone
        )
        language = settings.language
        if chat is None and row.user_id is not None:  # a private message about no group: the user's language
            user = await people_service.get_user(session, row.user_id)
            language = language_for_user(user.language_code if user else None, self.default_language)
        return Envelope(
            id=row.id,
            key=row.dedupe_key,
            kind=row.kind,
            args=outbox_service.decode_args(row.args),
            chat=chat,
            user_id=row.user_id,
            settings=settings,
            t=Translator(language),
        )

    async def _deliver(self, row_id: int) -> None:
        async with self.db.transaction(read_only=True) as session:
            row = await outbox_service.load(session, row_id)
            if row is None or row.status != "pending":
                return
            envelope = await self._envelope(session, row)
            kind = self.kinds.get(row.kind)
            skip = self._reason_to_skip(envelope, kind)
            method = None if skip or kind is None else await kind.render(session, envelope)
            attempts = row.attempts
        if skip or method is None:
            async with self.db.transaction() as session:
                await outbox_service.record_skipped(session, row_id, skip or "nothing to send any more")
            self._done(kind, envelope)
            return

        async def claim() -> bool:
            async with self.db.transaction() as session:
                return await outbox_service.claim(session, row_id)

        outcome = await self.delivery.deliver(method, before_send=claim)
        if outcome.failure == SKIPPED:
            return
        follow_ups, settled = await self._record(row_id, attempts + 1, kind, envelope, outcome)
        for call in follow_ups:
            await self.delivery.send(call)
        if settled:
            self._done(kind, envelope)

    def _reason_to_skip(self, envelope: Envelope, kind: OutboxKind | None) -> str | None:
        if kind is None:
            return f"no renderer for {envelope.kind}"
        if envelope.user_id is None and (envelope.chat is None or not envelope.chat.is_active):
            return "the bot is no longer in this group"
        return None

    async def _record(
        self, row_id: int, attempts: int, kind: OutboxKind, envelope: Envelope, outcome: Outcome
    ) -> tuple[list[TelegramMethod], bool]:
        """Record how the send went; returns the follow-up calls, and whether the row is settled (False
        while it waits to be tried again)."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            if outcome.sent:
                message_id = getattr(outcome.result, "message_id", None)
                await outbox_service.record_sent(session, row_id, message_id, now)
                if kind.on_sent is not None and outcome.result is not None:
                    return await kind.on_sent(session, envelope, outcome.result), True
                return [], True
            if outcome.failure == UNKNOWN:  # shown as such, never sent again
                await outbox_service.record_unknown(session, row_id, outcome.detail)
                if kind.on_unknown is not None:
                    await kind.on_unknown(session, envelope, now)
                log.warning("outbox message %s (%s): outcome unknown", row_id, envelope.key)
                return [], True
            retry_at = await outbox_service.record_failure(
                session,
                row_id,
                attempts,
                f"{outcome.failure}: {outcome.detail}",
                now,
                retry=outcome.failure == GAVE_UP,
            )
        if retry_at is not None:
            log.warning("outbox message %s (%s) will be tried again at %s", row_id, envelope.key, retry_at)
        elif outcome.failure != FORBIDDEN:
            log.error("outbox message %s (%s) failed: %s %s", row_id, envelope.key, outcome.failure, outcome.detail)
        return [], retry_at is None

    @staticmethod
    def _done(kind: OutboxKind | None, envelope: Envelope) -> None:
        if kind is not None and kind.on_done is not None:
            try:
                kind.on_done(envelope)
            except Exception:
                log.exception("on_done of %s failed", envelope.kind)


class Debouncer:
    """Calls ``action(key)`` once for many ``mark(key)``: ``gather`` seconds after the first mark, and
    then not more often than every ``min_interval`` seconds per key. A mark during a call brings
    another call after it, so the last change is never missed."""

    def __init__(
        self, action: Callable[[Hashable], Awaitable[None]], *, gather: float, min_interval: float, name: str
    ) -> None:
        self.action = action
        self.gather = gather
        self.min_interval = min_interval
        self.name = name
        self._due: dict[Hashable, float] = {}
        self._last: dict[Hashable, float] = {}
        self._running: dict[Hashable, asyncio.Task] = {}
        self._again: set[Hashable] = set()
        self._timer: asyncio.TimerHandle | None = None

    def mark(self, key: Hashable) -> None:
        if key in self._running:
            self._again.add(key)
            return
        if key in self._due:
            return
        now = time.monotonic()
        self._due[key] = max(now + self.gather, self._last.get(key, 0.0) + self.min_interval)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._due:
            delay = max(0.0, min(self._due.values()) - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.monotonic()
        for key in [key for key, due in self._due.items() if due <= now]:
            del self._due[key]
            self._start(key)
        self._arm()

    def _start(self, key: Hashable) -> None:
        self._last[key] = time.monotonic()
        task = asyncio.create_task(self._call(key), name=f"{self.name}:{key}")
        self._running[key] = task

    async def _call(self, key: Hashable) -> None:
        try:
            await self.action(key)
        except Exception:
            log.exception("%s for %s failed", self.name, key)
        finally:
            del self._running[key]
            if key in self._again:
                self._again.discard(key)
                self.mark(key)
            if len(self._last) > 10_000:
                self._last.clear()

    async def flush(self) -> None:
        """Run every pending call now and wait for all of them (tests, shutdown)."""
        while self._due or self._running:
            for key in list(self._due):
                del self._due[key]
                self._start(key)
            self._arm()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
