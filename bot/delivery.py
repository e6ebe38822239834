"""The one way out: every Bot API call that posts or edits a message passes through here.

It keeps within Telegram's limits (overall, per group, per private chat), waits out 429s, follows a
group that migrated to a supergroup, reports chats the bot was removed from, and splits text that is
longer than Telegram allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import (
    CopyMessage,
    EditMessageReplyMarkup,
    EditMessageText,
    ForwardMessage,
    SendDocument,
    SendMessage,
    SendPhoto,
    SendPoll,
    TelegramMethod,
)

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4096
# Calls that count against Telegram's message limits.
LIMITED_METHODS = (
    SendMessage,
    SendDocument,
    SendPhoto,
    SendPoll,
    CopyMessage,
    ForwardMessage,
    EditMessageText,
    EditMessageReplyMarkup,
)
MAX_ATTEMPTS = 6


@dataclass
class _ChatWindow:
    sent: deque[float] = field(default_factory=deque)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    not_before: float = 0.0


class RateLimiter:
    """Spaces sends: an even pace overall, a sliding window per group, a minimum gap per private chat."""

    def __init__(
        self,
        global_per_second: float = 28.0,
        group_per_minute: int = 20,
        private_per_second: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.global_interval = 1.0 / global_per_second
        self.group_per_minute = group_per_minute
        self.private_interval = 1.0 / private_per_second
        self._clock = clock
        self._sleep = sleep
        self._next_global = 0.0
        self._chats: dict[int, _ChatWindow] = {}
        # Telegram allows about 30 a second; pacing aims below it, this catches bunching on the way out.
        self.burst_limit = int(global_per_second) + 1
        self._recent: deque[float] = deque()

    def _window(self, chat_id: int) -> _ChatWindow:
        window = self._chats.get(chat_id)
        if window is None:
            window = self._chats[chat_id] = _ChatWindow()
        return window

    def hold_chat(self, chat_id: int, seconds: float) -> None:
        window = self._window(chat_id)
        window.not_before = max(window.not_before, self._clock() + seconds)

    def hold_all(self, seconds: float) -> None:
        self._next_global = max(self._next_global, self._clock() + seconds)

    async def acquire(self, chat_id: int) -> None:
        """Wait until one more message to ``chat_id`` is within every limit, and count it.

        The overall slot is reserved before sleeping, so senders go out in the order they asked (a
        message retried after a 429 is not overtaken by everyone queued behind it)."""
        window = self._window(chat_id)
        async with window.lock:  # keeps each chat's messages in order
            now = self._clock()
            earliest = max(now, window.not_before)
            if chat_id < 0:
                while window.sent and window.sent[0] <= now - 60.0:
                    window.sent.popleft()
                if len(window.sent) >= self.group_per_minute:
                    earliest = max(earliest, window.sent[-self.group_per_minute] + 60.0)
            elif window.sent:
                earliest = max(earliest, window.sent[-1] + self.private_interval)
            slot = max(earliest, self._next_global)
            self._next_global = slot + self.global_interval
            window.sent.append(slot)
            if chat_id > 0:
                while len(window.sent) > 1:
                    window.sent.popleft()
            if slot > now:
                await self._sleep(slot - now)

    async def admit(self) -> None:
        """The last check right before a request leaves: never more than ``burst_limit`` requests in any
        second, even when work between the reserved slot and the request bunched them together."""
        while True:
            now = self._clock()
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) < self.burst_limit:
                self._recent.append(now)
                return
            await self._sleep(self._recent[0] + 1.0 - now)


ChatHook = Callable[[int], Awaitable[None]]
BeforeSend = Callable[[], Awaitable[bool]]

FORBIDDEN = "forbidden"  # the bot was removed from the group, or the user blocked it
REFUSED = "refused"  # Telegram said no (400): sending it again would not help
GAVE_UP = "gave_up"  # server errors or no connection, attempt after attempt: may work later
SKIPPED = "skipped"  # ``before_send`` said not to send
UNKNOWN = "unknown"  # the request may have reached Telegram but no answer came: sending again could double it

# What posts a new message: sent twice, it shows twice. Edits and answers may simply be repeated.
POSTING_METHODS = (SendMessage, SendDocument, SendPhoto, SendPoll, CopyMessage, ForwardMessage)


def maybe_delivered(error: TelegramNetworkError) -> bool:
    """Whether a failed request may still have reached Telegram. aiogram names the aiohttp error first;
    only a connection never made (refused, no route) is sure not to have; a dropped connection or a
    timeout after the request went out is not."""
    return not error.message.startswith("ClientConnectorError")


@dataclass(frozen=True)
class Outcome:
    result: Any = None  # Telegram's answer (for text sent in parts: the last part's)
    failure: str | None = None
    detail: str = ""

    @property
    def sent(self) -> bool:
        return self.failure is None


MigrateHook = Callable[[int, int], Awaitable[None]]


async def _nothing(*_: Any) -> None:
    return None


class Delivery:
    def __init__(
        self,
        bot: Bot,
        limiter: RateLimiter | None = None,
        *,
        on_forbidden: ChatHook = _nothing,
        on_migrated: MigrateHook = _nothing,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.bot = bot
        self.limiter = limiter or RateLimiter()
        self.on_forbidden = on_forbidden
        self.on_migrated = on_migrated
        self.max_attempts = max_attempts

    async def send(self, method: TelegramMethod) -> Any:
        """Send one call; returns Telegram's result, or None when it could not be delivered."""
        return (await self.deliver(method)).result

    async def deliver(self, method: TelegramMethod, *, before_send: BeforeSend | None = None) -> Outcome:
        """Send one call and say how it went. ``before_send`` runs once, after the rate limiter let the
        call through and right before the request goes out; when it returns False nothing is sent."""
        if isinstance(method, SendMessage) and len(method.text) > MAX_TEXT_LENGTH:
            outcome = Outcome()
            for part in split_text(method.text):
                chunk = method.model_copy(update={"text": part, "reply_markup": None})
                outcome = await self._send_with_retries(chunk, before_send)
                before_send = None
                if not outcome.sent:
                    return outcome
            # The buttons belong to the last part, so they stay next to the end of the text.
            if method.reply_markup is not None:
                result = outcome.result
                await self._send_with_retries(
                    EditMessageReplyMarkup(
                        chat_id=result.chat.id, message_id=result.message_id, reply_markup=method.reply_markup
                    ),
                    None,
                )
            return outcome
        return await self._send_with_retries(method, before_send)

    async def _send_with_retries(self, method: TelegramMethod, before_send: BeforeSend | None) -> Outcome:
        limited = isinstance(method, LIMITED_METHODS)
        backoff = 0.5
        for attempt in range(1, self.max_attempts + 1):
            chat_id = getattr(method, "chat_id", None)
            numeric_chat = chat_id if isinstance(chat_id, int) else None
            if limited and numeric_chat is not None:
                await self.limiter.acquire(numeric_chat)
            if before_send is not None:
                if not await before_send():
                    return Outcome(failure=SKIPPED)
                before_send = None
            if limited and numeric_chat is not None:
                await self.limiter.admit()
            try:
                return Outcome(result=await self.bot(method))
            except TelegramRetryAfter as error:
                log.warning("429 on %s to %s: waiting %ss", method.__api_method__, chat_id, error.retry_after)
                if numeric_chat is not None:
                    self.limiter.hold_chat(numeric_chat, error.retry_after)
                else:
                    self.limiter.hold_all(error.retry_after)
                await asyncio.sleep(error.retry_after)
            except TelegramMigrateToChat as error:
                log.info("chat %s migrated to %s", chat_id, error.migrate_to_chat_id)
                if numeric_chat is not None:
                    await self.on_migrated(numeric_chat, error.migrate_to_chat_id)
                method = method.model_copy(update={"chat_id": error.migrate_to_chat_id})
            except TelegramForbiddenError as error:
                log.info("forbidden to write to %s: %s", chat_id, error.message)
                if numeric_chat is not None:
                    await self.on_forbidden(numeric_chat)
                return Outcome(failure=FORBIDDEN, detail=error.message)
            except TelegramBadRequest as error:
                if _is_not_modified(error):
                    return Outcome()
                log.error("Telegram refused %s to %s: %s", method.__api_method__, chat_id, error.message)
                return Outcome(failure=REFUSED, detail=error.message)
            except TelegramNetworkError as error:
                if isinstance(method, POSTING_METHODS) and maybe_delivered(error):
                    log.warning("%s to %s: no answer (%s); not sent again", method.__api_method__, chat_id, error)
                    return Outcome(failure=UNKNOWN, detail=error.message)
                log.warning("attempt %s of %s failed: %s", attempt, method.__api_method__, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            except (TelegramServerError, TelegramAPIError) as error:
                # A 429 without parameters arrives as a plain TelegramAPIError: back off as for 5xx.
                log.warning("attempt %s of %s failed: %s", attempt, method.__api_method__, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        log.error("giving up on %s to %s after %s attempts", method.__api_method__, chat_id, self.max_attempts)
        return Outcome(failure=GAVE_UP, detail=f"no answer after {self.max_attempts} attempts")


def _is_not_modified(error: TelegramBadRequest) -> bool:
    return "message is not modified" in error.message


def split_text(text: str, limit: int = MAX_TEXT_LENGTH) -> list[str]:
    """Cut at line breaks where possible so that each part is a readable whole."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut <= limit // 2:
            cut = limit
        parts.append(rest[:cut])
        rest = rest[cut:].lstrip("\n")
    if rest:
        parts.append(rest)
    return parts


class Replies:
    """What one update wants to send, held until its transaction has committed.

    Sending after the commit keeps network waits out of the database transaction, and means a
    reply is never sent for a change that was then rolled back.
    """

    def __init__(self) -> None:
        self._methods: list[TelegramMethod] = []
        self._jobs: list[Callable[[], Awaitable[None]]] = []

    def add(self, method: TelegramMethod) -> None:
        self._methods.append(method)

    def after_commit(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` once the update's transaction has committed (e.g. a call that needs the network)."""
        self._jobs.append(job)

    @property
    def answers(self) -> bool:
        """Whether anything would be sent to Telegram."""
        return bool(self._methods)

    async def flush(self, delivery: Delivery) -> None:
        for method in self._methods:
            await delivery.send(method)
        for job in self._jobs:
            try:
                await job()
            except Exception:
                log.exception("after-commit job failed")
        self._methods.clear()
        self._jobs.clear()
