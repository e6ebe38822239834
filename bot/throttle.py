"""Per-user flood guard: whoever sends commands or presses buttons faster than a person would is slowed
down before any database work is done for them, with one short warning per episode."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Message, TelegramObject, Update
from aiogram.types import User as TgUser

from bot.delivery import Delivery
from bot.i18n import Translator, language_for_user
from bot.middlewares import ClaimBatcher, Handler, InFlight
from bot.services import people as people_service
from bot.services.clock import Clock
from handlers import addressed_to_us
from storage.db import Database

log = logging.getLogger(__name__)


class Verdict(enum.Enum):
    PASS = "pass"
    DROP = "drop"
    WARN = "warn"  # dropped, and the first drop of its episode


@dataclass
class _Bucket:
    tokens: float
    at: float  # seconds (the app's clock) when ``tokens`` was last brought up to date
    warned: bool = False


class FloodGuard:
    """A token bucket per sender: ``burst`` updates at once, then ``per_minute`` a minute.

    An episode starts with the first refused update and ends once the sender has been quiet long enough
    for the whole burst to come back. Only the episode's first refusal is warned about, so that a flood
    is not answered with a flood of warnings.
    """

    # Senders are forgotten once their bucket is full again (exactly like one never seen); the dict is
    # only scanned for them when it has grown this large, or twice as large as after the last scan.
    PRUNE_AT = 10_000

    def __init__(self, clock: Clock, *, burst: int, per_minute: float) -> None:
        self.clock = clock
        self.burst = float(burst)
        self.rate = per_minute / 60.0
        self._buckets: dict[int, _Bucket] = {}
        self._prune_at = self.PRUNE_AT

    def check(self, sender: int) -> Verdict:
        now = self.clock.now().timestamp()
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = self._buckets[sender] = _Bucket(self.burst, now)
        else:
            self._refill(bucket, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict.PASS
        if bucket.warned:
            return Verdict.DROP
        bucket.warned = True
        return Verdict.WARN

    def _refill(self, bucket: _Bucket, now: float) -> None:
        # A clock set back in a test grants nothing until it has caught up again.
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = max(bucket.at, now)
        if bucket.tokens >= self.burst:
            bucket.warned = False

    def _prune(self, now: float) -> None:
        kept = {}
        for sender, bucket in self._buckets.items():
            self._refill(bucket, now)
            if bucket.tokens < self.burst:
                kept[sender] = bucket
        self._buckets = kept
        self._prune_at = max(self.PRUNE_AT, 2 * len(kept))

    def __len__(self) -> int:
        return len(self._buckets)


def counted_sender(update: Update) -> int | None:
    """Whom an update that asks the bot for work is counted against; None for updates that ask nothing
    (members talking to each other, joins, poll answers), which the roster must keep seeing."""
    if update.callback_query is not None:
        return update.callback_query.from_user.id
    message = update.message
    if message is None or message.from_user is None or not addressed_to_us(message):
        return None
    # Anonymous admins of every group write as one and the same user: count each group's apart.
    if message.sender_chat is not None:
        return message.sender_chat.id
    return message.from_user.id


class ThrottleMiddleware(BaseMiddleware):
    """Drops a flooding sender's updates before they get a transaction of their own.

    A dropped update's id is still recorded (with other claims, many per INSERT), so that Telegram
    delivering it again after a restart does not run it then. A dropped button press is still answered,
    so that the member's button stops spinning.
    """

    def __init__(
        self,
        guard: FloodGuard,
        *,
        db: Database,
        claims: ClaimBatcher,
        delivery: Delivery,
        in_flight: InFlight,
        superusers: frozenset[int],
        default_language: str,
    ) -> None:
        self.guard = guard
        self.db = db
        self.claims = claims
        self.delivery = delivery
        self.in_flight = in_flight
        self.superusers = superusers
        self.default_language = default_language

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        assert isinstance(event, Update)
        sender = counted_sender(event)
        user: TgUser | None = data.get("event_from_user")
        if sender is None or user is None or user.id in self.superusers:
            return await handler(event, data)
        verdict = self.guard.check(sender)
        if verdict is Verdict.PASS:
            return await handler(event, data)
        self.in_flight.enter()
        try:
            await self._drop(event, user, warn=verdict is Verdict.WARN)
        finally:
            self.in_flight.leave()
        return UNHANDLED

    async def _drop(self, update: Update, user: TgUser, *, warn: bool) -> None:
        try:
            fresh = await self.claims.claim(update.update_id)
        except Exception:
            log.exception("could not record dropped update %s", update.update_id)
            fresh = True  # the member still deserves an answer; a redelivery would be handled as new
        if not fresh:
            return
        if warn:
            log.info("user %s sends too fast: their commands and button presses are dropped for now", user.id)
        t = Translator(language_for_user(user.language_code, self.default_language))
        query = update.callback_query
        if query is not None:
            answer = query.answer(t("throttle.slow_down"), show_alert=True) if warn else query.answer()
            await self.delivery.send(answer)
        elif warn and update.message is not None:
            await self.delivery.send(await self._warning(update.message, user, t("throttle.slow_down")))

    async def _warning(self, message: Message, user: TgUser, text: str) -> TelegramMethod:
        if message.chat.type == "private":
            return message.answer(text)
        # In a group the warning would spend one of the group's 20 messages a minute: privately when the
        # member can be reached there.
        try:
            async with self.db.transaction(read_only=True) as session:
                reachable = await people_service.reachable_users(session, [user.id])
        except Exception:
            log.exception("could not tell whether user %s can be warned privately", user.id)
            reachable = []
        if reachable:
            return SendMessage(chat_id=user.id, text=text)
        return message.reply(text)
