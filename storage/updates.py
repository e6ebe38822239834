from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ProcessedUpdate
from storage.upsert import insert_for


async def claim_update(session: AsyncSession, update_id: int) -> bool:
    """Record the update as processed; False when it was processed before (a redelivery).

    A single-row INSERT with a bound value, so SQLAlchemy compiles it once (a multi-row VALUES list
    is compiled anew each time, which costs every writing update)."""
    insert = insert_for(session)
    result = await session.execute(
        insert(ProcessedUpdate)
        .values(update_id=update_id)
        .on_conflict_do_nothing()
        .returning(ProcessedUpdate.update_id)
    )
    return result.first() is not None


async def forget_updates_before(session: AsyncSession, moment: datetime) -> int:
    result = await session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < moment))
    return result.rowcount or 0


async def claim_updates(session: AsyncSession, update_ids: list[int]) -> set[int]:
    """Record many update ids at once; returns those that were not recorded before."""
    if not update_ids:
        return set()
    insert = insert_for(session)
    result = await session.execute(
        insert(ProcessedUpdate)
        .values([{"update_id": update_id} for update_id in update_ids])
        .on_conflict_do_nothing()
        .returning(ProcessedUpdate.update_id)
    )
    return set(result.scalars())
