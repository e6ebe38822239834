"""Queries on the outbox table (see ``OutboxMessage``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxMessage
from storage.upsert import insert_for


async def add(session: AsyncSession, rows: list[dict]) -> int:
    """Insert the rows whose dedupe_key is new; returns how many were new.

    One statement with many parameter sets, compiled once: a VALUES list of a broadcast's thousand rows
    was compiled anew each time and cost a third of a second before the first post could go."""
    if not rows:
        return 0
    insert = insert_for(session)
    statement = insert(OutboxMessage).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(OutboxMessage.id)
    result = await session.execute(statement, rows)
    return len(result.all())


async def due(session: AsyncSession, now: datetime, limit: int) -> list[tuple[int, int | None, int | None]]:
    """(id, chat pk, user id) of pending rows that are due, oldest first."""
    result = await session.execute(
        select(OutboxMessage.id, OutboxMessage.chat_id, OutboxMessage.user_id)
        .where(OutboxMessage.status == "pending", OutboxMessage.not_before <= now)
        .order_by(OutboxMessage.not_before, OutboxMessage.id)
        .limit(limit)
    )
    return [tuple(row) for row in result.all()]


async def next_due_at(session: AsyncSession) -> datetime | None:
    result = await session.execute(select(func.min(OutboxMessage.not_before)).where(OutboxMessage.status == "pending"))
    return result.scalar_one_or_none()


async def get(session: AsyncSession, row_id: int) -> OutboxMessage | None:
    return await session.get(OutboxMessage, row_id)


async def claim(session: AsyncSession, row_id: int) -> bool:
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.status == "pending")
        .values(status="sending", attempts=OutboxMessage.attempts + 1)
    )
    return result.rowcount == 1


async def set_outcome(session: AsyncSession, row_id: int, **values) -> None:
    await session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(**values))


async def mark_interrupted(session: AsyncSession, note: str) -> int:
    result = await session.execute(
        update(OutboxMessage).where(OutboxMessage.status == "sending").values(status="unknown", error=note)
    )
    return result.rowcount or 0


async def cancel_pending(session: AsyncSession, keys: Iterable[str]) -> int:
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.dedupe_key.in_(list(keys)), OutboxMessage.status == "pending")
        .values(status="skipped", error="cancelled")
    )
    return result.rowcount or 0


async def cancel_pending_with_prefix(session: AsyncSession, key_prefix: str) -> int:
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.dedupe_key.startswith(key_prefix, autoescape=True), OutboxMessage.status == "pending")
        .values(status="skipped", error="cancelled")
    )
    return result.rowcount or 0


async def status_counts(session: AsyncSession, key_prefix: str) -> dict[str, int]:
    result = await session.execute(
        select(OutboxMessage.status, func.count())
        .where(OutboxMessage.dedupe_key.startswith(key_prefix, autoescape=True))
        .group_by(OutboxMessage.status)
    )
    return {status: count for status, count in result.all()}


async def rows_with_prefix(session: AsyncSession, key_prefix: str) -> list[OutboxMessage]:
    result = await session.execute(
        select(OutboxMessage)
        .where(OutboxMessage.dedupe_key.startswith(key_prefix, autoescape=True))
        .order_by(OutboxMessage.id)
    )
    return list(result.scalars())
