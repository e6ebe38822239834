"""Keeps notice messages current: the live "✅ 收到 · 12/30" on each post, and a broadcast's progress
panel until it finishes (then its summary goes out through the outbox).

Edits are batched (``Debouncer``): a burst of taps becomes one edit, and no post is edited more often
than every few seconds, which keeps a group well inside Telegram's 20 messages a minute. The count a
post shows is recorded, so after a restart the posts that show a stale count are put right.
"""

from __future__ import annotations

import logging

from aiogram.methods import EditMessageReplyMarkup, EditMessageText

from bot.delivery import Delivery
from bot.i18n import Translator
from bot.outbox import Debouncer, Envelope, OutboxKind
from bot.services import chats as chat_service
from bot.services import notices as notice_service
from bot.services.clock import Clock
from handlers import broadcast as broadcast_view
from handlers import notices as notice_view
from storage.db import Database

log = logging.getLogger(__name__)

COUNT_GATHER_SECONDS = 1.0
COUNT_MIN_INTERVAL_SECONDS = 6.0  # at most 10 edits a minute per post
PROGRESS_GATHER_SECONDS = 0.5
PROGRESS_MIN_INTERVAL_SECONDS = 3.0


class NoticeUpdates:
    def __init__(self, db: Database, delivery: Delivery, clock: Clock, *, default_language: str, default_timezone: str):
        self.db = db
        self.delivery = delivery
        self.clock = clock
        self.default_language = default_language
        self.default_timezone = default_timezone
        self.counts = Debouncer(
            self._refresh_count, gather=COUNT_GATHER_SECONDS, min_interval=COUNT_MIN_INTERVAL_SECONDS, name="count"
        )
        self.progress = Debouncer(
            self._refresh_progress,
            gather=PROGRESS_GATHER_SECONDS,
            min_interval=PROGRESS_MIN_INTERVAL_SECONDS,
            name="progress",
        )

    def outbox_kinds(self) -> dict[str, OutboxKind]:
        return {
            "notice_post": OutboxKind(notice_view.render_post, on_sent=notice_view.posted, on_done=self._post_settled),
            "nudge_group": OutboxKind(notice_view.render_nudge_group),
            "nudge_private": OutboxKind(notice_view.render_nudge_private),
            "broadcast_summary": OutboxKind(broadcast_view.render_summary),
        }

    def _post_settled(self, envelope: Envelope) -> None:
        self.progress.mark(envelope.args["notice_id"])

    async def resume(self) -> None:
        """After a start: correct counts that a restart left stale, and follow unfinished broadcasts."""
        async with self.db.transaction(read_only=True) as session:
            stale = await notice_service.stale_counts(session, self.clock.now())
            unfinished = await notice_service.unfinished_broadcasts(session)
        for post_id in stale:
            self.counts.mark(post_id)
        for notice_id in unfinished:
            self.progress.mark(notice_id)

    async def flush(self) -> None:
        await self.counts.flush()
        await self.progress.flush()

    async def _refresh_count(self, post_id: int) -> None:
        async with self.db.transaction(read_only=True) as session:
            found = await notice_service.post_for(session, post_id)
            if found is None:
                return
            post, _, chat = found
            acked, audience = (await notice_service.counts(session, [post_id])).get(post_id, (0, 0))
        if post.message_id is None or acked == post.shown_acks or not chat.is_active:
            return
        settings = chat_service.settings_of(
            chat, default_language=self.default_language, default_timezone=self.default_timezone
        )
        keyboard = notice_view.post_keyboard(Translator(settings.language), post_id, acked, audience)
        outcome = await self.delivery.deliver(
            EditMessageReplyMarkup(chat_id=chat.telegram_id, message_id=post.message_id, reply_markup=keyboard)
        )
        if outcome.sent:
            async with self.db.transaction() as session:
                await notice_service.record_shown(session, post_id, acked)

    async def _refresh_progress(self, notice_id: int) -> None:
        async with self.db.transaction(read_only=True) as session:
            notice = await notice_service.get_notice(session, notice_id)
            if notice is None or notice.unit_id is None:
                return
            progress = await notice_service.broadcast_progress(session, notice_id)
            t = await broadcast_view.panel_language(session, notice, self.default_language)
        if notice.panel_chat_id is not None and notice.panel_message_id is not None:
            await self.delivery.deliver(
                EditMessageText(
                    chat_id=notice.panel_chat_id,
                    message_id=notice.panel_message_id,
                    text=broadcast_view.progress_text(t, notice, progress),
                )
            )
        if progress.total and not progress.remaining:
            async with self.db.transaction() as session:
                if await notice_service.finish_broadcast(session, notice_id, self.clock.now()):
                    log.info("broadcast of notice %s finished: %s", notice_id, progress.counts)
