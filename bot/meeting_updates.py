"""Keeps meeting messages current: the 参加 / 请假 / 待定 counts on a meeting's post and the count on its
sign-in button. Edits are batched like a notice's count (``Debouncer``): a burst of taps becomes one
edit, well inside a group's 20 messages a minute."""

from __future__ import annotations

from aiogram.methods import EditMessageReplyMarkup, EditMessageText

from bot.delivery import Delivery
from bot.i18n import Translator
from bot.outbox import Debouncer, OutboxKind
from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import meetings as meeting_service
from bot.services.clock import Clock
from handlers import attendance as attendance_view
from handlers import meetings as meeting_view
from storage.db import Database

GATHER_SECONDS = 1.0
MIN_INTERVAL_SECONDS = 6.0


class MeetingUpdates:
    def __init__(self, db: Database, delivery: Delivery, clock: Clock, *, default_language: str, default_timezone: str):
        self.db = db
        self.delivery = delivery
        self.clock = clock
        self.defaults = {"default_language": default_language, "default_timezone": default_timezone}
        self.counts = Debouncer(self._refresh, gather=GATHER_SECONDS, min_interval=MIN_INTERVAL_SECONDS, name="meeting")

    @staticmethod
    def outbox_kinds() -> dict[str, OutboxKind]:
        return {
            "meeting_post": OutboxKind(meeting_view.render_post, on_sent=meeting_view.posted),
            "meeting_reminder": OutboxKind(meeting_view.render_reminder),
            "meeting_reminder_private": OutboxKind(meeting_view.render_reminder_private),
            "meeting_leave_review": OutboxKind(meeting_view.render_leave_review),
            "meeting_leave_verdict": OutboxKind(meeting_view.render_leave_verdict),
            "meeting_changed": OutboxKind(meeting_view.render_changed),
            "meeting_cancelled": OutboxKind(meeting_view.render_cancelled),
            "meeting_signin": OutboxKind(attendance_view.render_signin, on_sent=attendance_view.signin_posted),
            "meeting_code": OutboxKind(attendance_view.render_code),
            "meeting_summary": OutboxKind(attendance_view.render_summary, on_sent=attendance_view.summary_posted),
            "meeting_makeup": OutboxKind(attendance_view.render_makeup),
        }

    async def resume(self) -> None:
        """After a start: correct the counts that a restart left stale (the edit was still to come)."""
        async with self.db.transaction(read_only=True) as session:
            stale = await meeting_service.stale_counts(session)
        for meeting_id in stale:
            self.counts.mark(meeting_id)

    async def flush(self) -> None:
        await self.counts.flush()

    async def _refresh(self, meeting_id: int) -> None:
        async with self.db.transaction(read_only=True) as session:
            meeting = await meeting_service.get(session, meeting_id)
            if meeting is None:
                return
            chat = await chat_service.get_chat_by_pk(session, meeting.chat_id)
            counts = await meeting_service.counts(session, meeting_id)
            signed = await attendance_service.signed_count(session, meeting_id)
        if chat is None or not chat.is_active or meeting.status != "scheduled":
            return
        settings = chat_service.settings_of(chat, **self.defaults)
        t = Translator(settings.language)
        # Each message is edited only when its own figure changed: an edit that changes nothing is
        # refused by Telegram and still spends one of the group's 20 messages a minute.
        shown_answers, _, shown_signed = meeting.shown_counts.rpartition("/")
        shown = f"{counts.key()}/{signed}"
        if counts.key() != shown_answers and meeting.message_id is not None:
            await self.delivery.deliver(
                EditMessageReplyMarkup(
                    chat_id=chat.telegram_id,
                    message_id=meeting.message_id,
                    reply_markup=meeting_view.post_keyboard(t, meeting, counts),
                )
            )
        if str(signed) != shown_signed and meeting.signin_message_id is not None:
            await self.delivery.deliver(
                EditMessageText(
                    chat_id=chat.telegram_id,
                    message_id=meeting.signin_message_id,
                    text=attendance_view.signin_text(t, meeting, settings, signed),
                    reply_markup=attendance_view.signin_keyboard(t, meeting, signed),
                )
            )
        if shown != meeting.shown_counts:
            async with self.db.transaction() as session:
                await meeting_service.record_shown(session, meeting_id, shown)
