"""The outbox: every message the bot sends on its own initiative is planned here first, one row per
recipient, and only then sent (by ``bot.outbox.OutboxWorker``).

Planning is idempotent: each message has a dedupe key saying what it is (``notice:12:chat:5``), so a
handler run twice, or a firing repeated after a restart, plans it once. A row is marked ``sending``
right before its request goes out; one still ``sending`` at start-up was cut off by a crash, and since
nobody can know whether Telegram got it, it is recorded as ``unknown`` and not sent again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage import outbox as outbox_store

# Waits before trying again a message Telegram could not take (server errors, network); then give up.
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30))
DONE_STATUSES = ("sent", "failed", "skipped", "unknown")


@dataclass(frozen=True)
class Planned:
    """A message to send: ``kind`` names its renderer, ``args`` are primitive values for it."""

    key: str
    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    chat_pk: int | None = None  # the group it is for (or about, for a private message)
    user_id: int | None = None  # set: send privately to this user
    not_before: datetime | None = None


@dataclass(frozen=True)
class Progress:
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def sent(self) -> int:
        return self.counts.get("sent", 0)

    @property
    def failed(self) -> int:
        return sum(self.counts.get(status, 0) for status in ("failed", "skipped", "unknown"))

    @property
    def remaining(self) -> int:
        return self.counts.get("pending", 0) + self.counts.get("sending", 0)


async def plan(session: AsyncSession, messages: list[Planned], now: datetime) -> int:
    """Write the messages to send; those planned before are left as they are. Returns how many are new."""
    rows = [
        {
            "dedupe_key": message.key,
            "kind": message.kind,
            "args": json.dumps(message.args, ensure_ascii=False, sort_keys=True),
            "chat_id": message.chat_pk,
            "user_id": message.user_id,
            "not_before": message.not_before or now,
            "created_at": now,
            "status": "pending",
            "attempts": 0,
        }
        for message in messages
    ]
    return await outbox_store.add(session, rows)


async def recover_interrupted(session: AsyncSession) -> int:
    return await outbox_store.mark_interrupted(session, "interrupted by a restart: outcome unknown")


async def due(session: AsyncSession, now: datetime, limit: int) -> list[tuple[int, int | None, int | None]]:
    return await outbox_store.due(session, now, limit)


async def next_due_at(session: AsyncSession) -> datetime | None:
    return await outbox_store.next_due_at(session)


async def load(session: AsyncSession, row_id: int):
    return await outbox_store.get(session, row_id)


async def claim(session: AsyncSession, row_id: int) -> bool:
    """Mark the row as being sent; False when it is no longer pending (then it must not be sent)."""
    return await outbox_store.claim(session, row_id)


async def record_sent(session: AsyncSession, row_id: int, message_id: int | None, now: datetime) -> None:
    await outbox_store.set_outcome(session, row_id, status="sent", message_id=message_id, sent_at=now, error=None)


async def record_skipped(session: AsyncSession, row_id: int, reason: str) -> None:
    await outbox_store.set_outcome(session, row_id, status="skipped", error=reason[:200])


async def record_unknown(session: AsyncSession, row_id: int, reason: str) -> None:
    """The request may have reached Telegram without an answer coming back: not sent again, and shown."""
    await outbox_store.set_outcome(session, row_id, status="unknown", error=reason[:200])


async def record_failure(
    session: AsyncSession, row_id: int, attempts: int, reason: str, now: datetime, *, retry: bool
) -> datetime | None:
    """A send that did not go through: try again later if it may succeed then; returns when, or None."""
    if retry and attempts <= len(RETRY_DELAYS):
        again = now + RETRY_DELAYS[attempts - 1]
        await outbox_store.set_outcome(session, row_id, status="pending", not_before=again, error=reason[:200])
        return again
    await outbox_store.set_outcome(session, row_id, status="failed", error=reason[:200])
    return None


async def cancel(session: AsyncSession, keys: list[str]) -> int:
    """Stop messages that have not gone out yet."""
    return await outbox_store.cancel_pending(session, keys)


async def cancel_all(session: AsyncSession, key_prefix: str) -> int:
    """Stop every message of one origin (``schedule:12:``) that has not gone out yet."""
    return await outbox_store.cancel_pending_with_prefix(session, key_prefix)


async def progress(session: AsyncSession, key_prefix: str) -> Progress:
    return Progress(await outbox_store.status_counts(session, key_prefix))


def decode_args(raw: str) -> dict[str, Any]:
    return json.loads(raw or "{}")
