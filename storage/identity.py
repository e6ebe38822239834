from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Identity, IdentityDraft, PendingInput, Unit


async def get_identity(session: AsyncSession, user_id: int) -> Identity | None:
    return await session.get(Identity, user_id)


async def identities_in_chat(session: AsyncSession, chat_pk: int) -> list[Identity]:
    result = await session.execute(select(Identity).where(Identity.chat_id == chat_pk))
    return list(result.scalars())


async def pending_identities(session: AsyncSession, chat_pks: list[int] | None, limit: int = 200) -> list[Identity]:
    """Declarations waiting for review, oldest first; in the given chats, or everywhere."""
    statement = select(Identity).where(Identity.status == "pending")
    if chat_pks is not None:
        statement = statement.where(Identity.chat_id.in_(chat_pks))
    result = await session.execute(statement.order_by(Identity.submitted_at).limit(limit))
    return list(result.scalars())


async def get_draft(session: AsyncSession, user_id: int) -> IdentityDraft | None:
    return await session.get(IdentityDraft, user_id)


async def delete_draft(session: AsyncSession, user_id: int) -> bool:
    result = await session.execute(delete(IdentityDraft).where(IdentityDraft.user_id == user_id))
    return bool(result.rowcount)


async def get_pending_input(session: AsyncSession, user_id: int) -> PendingInput | None:
    return await session.get(PendingInput, user_id)


async def set_pending_input(session: AsyncSession, user_id: int, kind: str, ref: str) -> None:
    existing = await session.get(PendingInput, user_id)
    if existing is None:
        session.add(PendingInput(user_id=user_id, kind=kind, ref=ref))
    else:
        existing.kind, existing.ref = kind, ref
    await session.flush()


async def clear_pending_input(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(PendingInput).where(PendingInput.user_id == user_id))


async def unit_and_descendants(session: AsyncSession, unit_id: int) -> list[Unit]:
    root = await session.get(Unit, unit_id)
    if root is None:
        return []
    units, frontier = [root], [root.id]
    while frontier:
        children = list(
            (await session.execute(select(Unit).where(Unit.parent_id.in_(frontier)).order_by(Unit.id))).scalars()
        )
        units += children
        frontier = [child.id for child in children]
    return units
