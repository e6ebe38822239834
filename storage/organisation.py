"""Units of the organisation tree, the roles held on them, and which groups are bound to them.

Ancestors and descendants are walked with recursive CTEs (SQLite and PostgreSQL both have them), so a
lookup is one query however deep the tree is. The walks stop at ``WALK_LIMIT`` levels so that a
cycle left by hand-edited data cannot make a query run forever.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import Chat, Unit, UnitRole
from storage.upsert import insert_for

WALK_LIMIT = 64
MAX_ID = 2**31 - 1  # units.id is a 32-bit integer on PostgreSQL


def _valid_id(unit_id: int | None) -> bool:
    return unit_id is not None and 0 < unit_id <= MAX_ID


async def get_unit(session: AsyncSession, unit_id: int | None) -> Unit | None:
    if not _valid_id(unit_id):
        return None
    return await session.get(Unit, unit_id)


async def add_unit(session: AsyncSession, name: str, kind: str, parent_id: int | None, created_by: int | None) -> Unit:
    unit = Unit(name=name, kind=kind, parent_id=parent_id, created_by=created_by)
    session.add(unit)
    await session.flush()
    return unit


async def delete_unit(session: AsyncSession, unit_id: int) -> None:
    await session.execute(delete(UnitRole).where(UnitRole.unit_id == unit_id))
    await session.execute(delete(Unit).where(Unit.id == unit_id))
    await session.flush()


async def all_units(session: AsyncSession) -> list[Unit]:
    return list((await session.execute(select(Unit).order_by(Unit.id))).scalars())


def _ancestors_cte(start):
    """Rows (id, parent_id, up) from the unit ``start`` (a unit id or a scalar subquery) to its root."""
    walk = (
        select(Unit.id, Unit.parent_id, literal_column("0").label("up"))
        .where(Unit.id == start)
        .cte("ancestors", recursive=True)
    )
    parent = aliased(Unit)
    return walk.union_all(
        select(parent.id, parent.parent_id, walk.c.up + 1).where(parent.id == walk.c.parent_id, walk.c.up < WALK_LIMIT)
    )


def _descendants_cte(root_ids: Iterable[int]):
    """Rows (id, parent_id, depth) of the units ``root_ids`` (depth 0) and everything below them."""
    walk = (
        select(Unit.id, Unit.parent_id, literal_column("0").label("depth"))
        .where(Unit.id.in_(list(root_ids)))
        .cte("descendants", recursive=True)
    )
    child = aliased(Unit)
    return walk.union_all(
        select(child.id, child.parent_id, walk.c.depth + 1).where(
            child.parent_id == walk.c.id, walk.c.depth < WALK_LIMIT
        )
    )


async def ancestors(session: AsyncSession, unit_id: int) -> list[Unit]:
    """The unit itself and every unit above it, the root first."""
    walk = _ancestors_cte(unit_id)
    result = await session.execute(select(Unit).join(walk, Unit.id == walk.c.id).order_by(walk.c.up.desc()))
    return list(result.scalars())


async def ancestor_ids(session: AsyncSession, unit_id: int) -> list[int]:
    walk = _ancestors_cte(unit_id)
    return list((await session.execute(select(walk.c.id).order_by(walk.c.up))).scalars())


async def descendants(session: AsyncSession, root_ids: Iterable[int]) -> list[tuple[Unit, int]]:
    """The units ``root_ids`` and all below them, each with its depth below the root it came from."""
    roots = [unit_id for unit_id in root_ids if _valid_id(unit_id)]
    if not roots:
        return []
    walk = _descendants_cte(roots)
    result = await session.execute(select(Unit, walk.c.depth).join(walk, Unit.id == walk.c.id).order_by(Unit.id))
    seen: dict[int, tuple[Unit, int]] = {}
    for unit, depth in result.all():
        if unit.id not in seen or depth < seen[unit.id][1]:
            seen[unit.id] = (unit, depth)
    return list(seen.values())


async def subtree_height(session: AsyncSession, unit_id: int) -> int:
    """How many levels lie below the unit (0 for a leaf)."""
    walk = _descendants_cte([unit_id])
    return int((await session.execute(select(func.max(walk.c.depth)))).scalar_one() or 0)


async def count_children(session: AsyncSession, unit_id: int) -> int:
    result = await session.execute(select(func.count()).select_from(Unit).where(Unit.parent_id == unit_id))
    return int(result.scalar_one())


async def count_bound_chats(session: AsyncSession, unit_id: int) -> int:
    result = await session.execute(select(func.count()).select_from(Chat).where(Chat.unit_id == unit_id))
    return int(result.scalar_one())


async def bound_chats(session: AsyncSession, unit_ids: Iterable[int]) -> dict[int, list[Chat]]:
    """Active groups bound to each of ``unit_ids``."""
    ids = list(unit_ids)
    if not ids:
        return {}
    result = await session.execute(
        select(Chat).where(Chat.unit_id.in_(ids), Chat.is_active.is_(True)).order_by(Chat.id)
    )
    bound: dict[int, list[Chat]] = {}
    for chat in result.scalars():
        bound.setdefault(chat.unit_id, []).append(chat)
    return bound


async def lock_chat(session: AsyncSession, chat_pk: int) -> Chat | None:
    """The chat row, re-read and locked for this transaction (PostgreSQL; SQLite transactions are exclusive)."""
    result = await session.execute(
        select(Chat).where(Chat.id == chat_pk).with_for_update().execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def unbind_all(session: AsyncSession, unit_id: int) -> None:
    await session.execute(update(Chat).where(Chat.unit_id == unit_id).values(unit_id=None))


# --- roles held on units ---------------------------------------------------------------------------


async def unit_role(session: AsyncSession, unit_id: int, user_id: int) -> str | None:
    result = await session.execute(
        select(UnitRole.role).where(UnitRole.unit_id == unit_id, UnitRole.user_id == user_id)
    )
    return result.scalar_one_or_none()


async def set_unit_role(
    session: AsyncSession, unit_id: int, user_id: int, role: str, granted_by: int | None, now: datetime
) -> None:
    insert = insert_for(session)
    values = {"role": role, "granted_by": granted_by, "granted_at": now}
    statement = insert(UnitRole).values(unit_id=unit_id, user_id=user_id, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[UnitRole.unit_id, UnitRole.user_id], set_=values)
    )


async def delete_unit_role(session: AsyncSession, unit_id: int, user_id: int) -> bool:
    result = await session.execute(delete(UnitRole).where(UnitRole.unit_id == unit_id, UnitRole.user_id == user_id))
    return (result.rowcount or 0) > 0


async def roles_on_units_above(session: AsyncSession, unit_id: int, user_id: int) -> list[tuple[int, str, int]]:
    """(unit id, role, levels up) of the user's roles on the unit and on every unit above it."""
    walk = _ancestors_cte(unit_id)
    result = await session.execute(
        select(UnitRole.unit_id, UnitRole.role, walk.c.up)
        .join(walk, UnitRole.unit_id == walk.c.id)
        .where(UnitRole.user_id == user_id)
        .order_by(walk.c.up)
    )
    return [tuple(row) for row in result.all()]


async def unit_roles_in_chat(session: AsyncSession, chat_pk: int, user_id: int) -> list[str]:
    """The user's roles on the chat's bound unit and the units above it, in one query."""
    bound_unit = select(Chat.unit_id).where(Chat.id == chat_pk).scalar_subquery()
    walk = _ancestors_cte(bound_unit)
    result = await session.execute(
        select(UnitRole.role).join(walk, UnitRole.unit_id == walk.c.id).where(UnitRole.user_id == user_id)
    )
    return list(result.scalars())


async def unit_role_holders_for_chat(session: AsyncSession, chat_pk: int) -> set[int]:
    """Everyone holding a role on the chat's bound unit or a unit above it."""
    bound_unit = select(Chat.unit_id).where(Chat.id == chat_pk).scalar_subquery()
    walk = _ancestors_cte(bound_unit)
    result = await session.execute(
        select(UnitRole.user_id)
        .join(walk, UnitRole.unit_id == walk.c.id)
        .where(UnitRole.role.in_(("committee", "secretary")))
    )
    return set(result.scalars())


async def units_with_role(session: AsyncSession, user_id: int, roles: Iterable[str]) -> list[int]:
    result = await session.execute(
        select(UnitRole.unit_id).where(UnitRole.user_id == user_id, UnitRole.role.in_(list(roles)))
    )
    return list(result.scalars())


async def unit_roles_for_chat(session: AsyncSession, chat_pk: int) -> list[tuple[int, str]]:
    """(user id, role) for every role held on the chat's bound unit or a unit above it."""
    bound_unit = select(Chat.unit_id).where(Chat.id == chat_pk).scalar_subquery()
    walk = _ancestors_cte(bound_unit)
    result = await session.execute(select(UnitRole.user_id, UnitRole.role).join(walk, UnitRole.unit_id == walk.c.id))
    return [(user_id, role) for user_id, role in result.all()]
