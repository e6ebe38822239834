"""Queries on the schedules table (see ``Schedule``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Schedule


async def count_listed(session: AsyncSession, chat_pk: int, kind: str) -> int:
    result = await session.execute(
        select(func.count())
        .select_from(Schedule)
        .where(Schedule.chat_id == chat_pk, Schedule.kind == kind, Schedule.status.in_(("active", "paused")))
    )
    return result.scalar_one()


async def listed(session: AsyncSession, chat_pk: int, statuses: tuple[str, ...], kind: str) -> list[Schedule]:
    result = await session.execute(
        select(Schedule)
        .where(Schedule.chat_id == chat_pk, Schedule.kind == kind, Schedule.status.in_(statuses))
        .order_by(Schedule.next_run_at.is_(None), Schedule.next_run_at, Schedule.id)
    )
    return list(result.scalars())


async def active_in_chat(session: AsyncSession, chat_pk: int) -> list[Schedule]:
    result = await session.execute(select(Schedule).where(Schedule.chat_id == chat_pk, Schedule.status == "active"))
    return list(result.scalars())


async def with_ref(session: AsyncSession, ref: str) -> list[Schedule]:
    result = await session.execute(select(Schedule).where(Schedule.ref == ref).with_for_update())
    return list(result.scalars())


async def of_kind_in_chat(session: AsyncSession, chat_pk: int, kind: str) -> list[Schedule]:
    result = await session.execute(
        select(Schedule)
        .where(Schedule.chat_id == chat_pk, Schedule.kind == kind, Schedule.status != "deleted")
        .order_by(Schedule.id)
    )
    return list(result.scalars())


async def timetable(session: AsyncSession) -> dict[int, datetime]:
    result = await session.execute(
        select(Schedule.id, Schedule.next_run_at).where(Schedule.status == "active", Schedule.next_run_at.is_not(None))
    )
    return {schedule_id: next_run for schedule_id, next_run in result.all()}


async def due(session: AsyncSession, now: datetime, limit: int) -> list[Schedule]:
    """Active schedules whose next run has come, earliest first (ties in the order they were made)."""
    result = await session.execute(
        select(Schedule)
        .where(Schedule.status == "active", Schedule.next_run_at <= now)
        .order_by(Schedule.next_run_at, Schedule.id)
        .limit(limit)
        # PostgreSQL: a row being changed (or fired by another process) is left for the next pass.
        .with_for_update(skip_locked=True)
    )
    return list(result.scalars())


async def delete_drafts_before(session: AsyncSession, moment: datetime) -> int:
    result = await session.execute(
        delete(Schedule).where(
            Schedule.updated_at < moment,
            # previews never saved, and the drafts that carried an edit (their schedule holds it now)
            or_(Schedule.status == "draft", and_(Schedule.status == "deleted", Schedule.replaces_id.is_not(None))),
        )
    )
    return result.rowcount or 0
