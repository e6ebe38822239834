"""Housekeeping that keeps tables from growing without bound."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from storage.updates import forget_updates_before

# Telegram keeps an unconfirmed update for 24 hours; after that it can never come again.
UPDATE_MEMORY = timedelta(days=2)


async def prune_processed_updates(session: AsyncSession, now: datetime) -> int:
    return await forget_updates_before(session, now - UPDATE_MEMORY)
