"""The organisation tree (综合党委/联合党委 → 支部 → 党小组), who may manage which part of it, groups bound
to its units, and roles granted in groups.

Who may do what:
* superusers may do everything;
* a secretary role on a unit lets its holder manage that unit and everything below it: create children,
  rename, move within their part of the tree, delete, bind groups, grant and revoke roles there;
* root units are created (and units moved to the root) by superusers only — except the one-tap branch a
  group's own secretary (its Telegram creator) makes for an unbound group.

Every check happens before the first write, so a refused request changes nothing. Every change writes an
``AuditLog`` row.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.errors import DomainError
from bot.services.roles import Role, role_in_chat
from bot.services.text import is_blank
from storage import organisation as org_store
from storage import people as people_store
from storage.models import AuditLog, Chat, Unit, User

KINDS = ("committee", "branch", "group")
# What may be placed under what; a 党小组 has no children.
CHILD_KINDS = {"committee": ("committee", "branch"), "branch": ("group",), "group": ()}
ROOT_KINDS = ("committee", "branch")
MAX_DEPTH = 6  # levels, the root counting as one
NAME_MAX_LENGTH = 64
ROLES = ("committee", "secretary")

KIND_ALIASES = {
    "committee": "committee",
    "党委": "committee",
    "综合党委": "committee",
    "联合党委": "committee",
    "branch": "branch",
    "支部": "branch",
    "党支部": "branch",
    "group": "group",
    "党小组": "group",
    "小组": "group",
}
ROLE_ALIASES = {
    "committee": "committee",
    "委员": "committee",
    "支委": "committee",
    "secretary": "secretary",
    "书记": "secretary",
}


@dataclass(frozen=True)
class UnitNode:
    """A unit as listed in a tree: ``depth`` counts from the top of the listing (0)."""

    id: int
    name: str
    kind: str
    parent_id: int | None
    depth: int


@dataclass(frozen=True)
class RoleChange:
    role: str
    unit: Unit | None  # the unit the role is held on; None for a role held in the chat itself
    still_admin_role: str | None = None  # after a revoke: the role the person keeps as a Telegram admin


# --- parsing and validation -----------------------------------------------------------------------


def parse_kind(text: str) -> str:
    kind = KIND_ALIASES.get(text.strip().lower())
    if kind is None:
        raise DomainError("org.bad_kind", value=text.strip()[:20])
    return kind


def parse_role(text: str) -> str:
    role = ROLE_ALIASES.get(text.strip().lower())
    if role is None:
        raise DomainError("org.bad_role", value=text.strip()[:20])
    return role


def validate_name(text: str | None) -> str:
    """1–64 characters after trimming; no line breaks or control characters."""
    name = (text or "").strip()
    if is_blank(name) or len(name) > NAME_MAX_LENGTH or any(_is_break_or_control(ch) for ch in name):
        raise DomainError("org.bad_name", max=NAME_MAX_LENGTH)
    return name


def _is_break_or_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp")


def name_from_title(title: str | None) -> str:
    """A unit name made from a group title: one line, cut to the longest name allowed."""
    return validate_name(" ".join((title or "").split())[:NAME_MAX_LENGTH])


# --- reading the tree -----------------------------------------------------------------------------


async def get_unit(session: AsyncSession, unit_id: int | None) -> Unit | None:
    return await org_store.get_unit(session, unit_id)


async def require_unit(session: AsyncSession, unit_id: int | None) -> Unit:
    unit = await org_store.get_unit(session, unit_id)
    if unit is None:
        raise DomainError("org.unknown_unit", id=unit_id if unit_id is not None else "?")
    return unit


async def ancestors(session: AsyncSession, unit_id: int) -> list[Unit]:
    """The unit and every unit above it, the root first."""
    return await org_store.ancestors(session, unit_id)


async def descendants(session: AsyncSession, unit_id: int) -> list[UnitNode]:
    """The unit (depth 0) and everything below it, in tree order."""
    return await tree(session, [unit_id])


async def tree(session: AsyncSession, root_ids: list[int] | None = None) -> list[UnitNode]:
    """Units in tree order (each followed by its children, oldest first), with their depth.

    Without ``root_ids``: the whole forest. With them: those units and everything below; a listed unit
    that lies inside another listed one appears once, inside it.
    """
    if root_ids is None:
        units = await org_store.all_units(session)
    else:
        units = [unit for unit, _ in await org_store.descendants(session, root_ids)]
    by_id = {unit.id: unit for unit in units}
    children: dict[int | None, list[Unit]] = {}
    for unit in sorted(units, key=lambda u: u.id):
        parent = unit.parent_id if unit.parent_id in by_id else None
        children.setdefault(parent, []).append(unit)
    ordered: list[UnitNode] = []
    seen: set[int] = set()
    stack = [(unit, 0) for unit in reversed(children.get(None, []))]
    while stack:
        unit, depth = stack.pop()
        if unit.id in seen:
            continue
        seen.add(unit.id)
        ordered.append(UnitNode(unit.id, unit.name, unit.kind, unit.parent_id, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(unit.id, [])))
    return ordered


async def bound_chats(session: AsyncSession, unit_ids: list[int]) -> dict[int, list[Chat]]:
    """Active groups bound to each unit."""
    return await org_store.bound_chats(session, unit_ids)


async def visible_tree(
    session: AsyncSession, user_id: int, superusers: frozenset[int], also: int | None = None
) -> list[UnitNode]:
    """What /units shows: everything for a superuser; otherwise the parts of the tree where the user holds a
    role, plus the subtree of unit ``also`` (e.g. the one the current group is bound to)."""
    if user_id in superusers:
        return await tree(session)
    roots = await org_store.units_with_role(session, user_id, ROLES)
    if also is not None:
        roots.append(also)
    return await tree(session, roots) if roots else []


async def holds_any_unit_role(session: AsyncSession, user_id: int) -> bool:
    return bool(await org_store.units_with_role(session, user_id, ROLES))


async def manageable_units(session: AsyncSession, user_id: int, superusers: frozenset[int]) -> list[UnitNode]:
    """Every unit the user may manage, in tree order."""
    if user_id in superusers:
        return await tree(session)
    roots = await org_store.units_with_role(session, user_id, ("secretary",))
    return await tree(session, roots) if roots else []


async def can_manage(session: AsyncSession, unit_id: int, user_id: int, superusers: frozenset[int]) -> bool:
    """Superusers, and secretaries of the unit or of any unit above it."""
    if user_id in superusers:
        return True
    roles = await org_store.roles_on_units_above(session, unit_id, user_id)
    return any(role == "secretary" for _, role, _ in roles)


async def may_oversee(session: AsyncSession, unit_id: int, user_id: int, superusers: frozenset[int]) -> bool:
    """Superusers, and anyone with a role (committee or secretary) on the unit or a unit above it: those
    who may see the figures of all its groups."""
    if user_id in superusers:
        return True
    return bool(await org_store.roles_on_units_above(session, unit_id, user_id))


async def _require_manage(session: AsyncSession, unit: Unit, user_id: int, superusers: frozenset[int]) -> None:
    if not await can_manage(session, unit.id, user_id, superusers):
        raise DomainError("org.not_your_unit", id=unit.id, name=unit.name)


def _audit(session: AsyncSession, action: str, actor_id: int | None, detail: str, chat_pk: int | None) -> None:
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action=action, detail=detail))


async def _check_placement(session: AsyncSession, kind: str, parent: Unit | None, height_below: int = 0) -> None:
    if parent is None:
        if kind not in ROOT_KINDS:
            raise DomainError("org.bad_root_kind")
        levels = 1
    else:
        if kind not in CHILD_KINDS[parent.kind]:
            raise DomainError("org.bad_parent", id=parent.id, name=parent.name)
        levels = len(await org_store.ancestor_ids(session, parent.id)) + 1
    if levels + height_below > MAX_DEPTH:
        raise DomainError("org.too_deep", max=MAX_DEPTH)


# --- changing the tree ----------------------------------------------------------------------------


async def create_unit(
    session: AsyncSession,
    actor_id: int,
    superusers: frozenset[int],
    *,
    name: str,
    kind: str,
    parent_id: int | None,
    chat_pk: int | None = None,
) -> Unit:
    name = validate_name(name)
    if kind not in KINDS:
        raise DomainError("org.bad_kind", value=kind[:20])
    parent = None
    if parent_id is None:
        if actor_id not in superusers:
            raise DomainError("org.root_superuser_only")
    else:
        parent = await require_unit(session, parent_id)
        await _require_manage(session, parent, actor_id, superusers)
    await _check_placement(session, kind, parent)
    unit = await org_store.add_unit(session, name, kind, parent_id, actor_id)
    _audit(session, "unit_create", actor_id, f"unit={unit.id} kind={kind} parent={parent_id} name={name}", chat_pk)
    return unit


async def rename_unit(
    session: AsyncSession,
    actor_id: int,
    superusers: frozenset[int],
    unit_id: int,
    name: str,
    *,
    chat_pk: int | None = None,
) -> tuple[Unit, str]:
    """Returns the unit and its old name."""
    name = validate_name(name)
    unit = await require_unit(session, unit_id)
    await _require_manage(session, unit, actor_id, superusers)
    old_name = unit.name
    unit.name = name
    await session.flush()
    _audit(session, "unit_rename", actor_id, f"unit={unit.id} from={old_name} to={name}", chat_pk)
    return unit, old_name


async def move_unit(
    session: AsyncSession,
    actor_id: int,
    superusers: frozenset[int],
    unit_id: int,
    new_parent_id: int | None,
    *,
    chat_pk: int | None = None,
) -> tuple[Unit, Unit | None]:
    """Put the unit (with everything below it) under ``new_parent_id``, or at the root when None."""
    unit = await require_unit(session, unit_id)
    await _require_manage(session, unit, actor_id, superusers)
    parent = None
    if new_parent_id is None:
        if actor_id not in superusers:
            raise DomainError("org.root_superuser_only")
    else:
        parent = await require_unit(session, new_parent_id)
        await _require_manage(session, parent, actor_id, superusers)
        if parent.id == unit.id or unit.id in await org_store.ancestor_ids(session, parent.id):
            raise DomainError("org.cycle", id=unit.id, name=unit.name)
    await _check_placement(session, unit.kind, parent, await org_store.subtree_height(session, unit.id))
    old_parent = unit.parent_id
    if old_parent != new_parent_id:
        unit.parent_id = new_parent_id
        await session.flush()
        _audit(session, "unit_move", actor_id, f"unit={unit.id} from={old_parent} to={new_parent_id}", chat_pk)
    return unit, parent


async def delete_unit(
    session: AsyncSession, actor_id: int, superusers: frozenset[int], unit_id: int, *, chat_pk: int | None = None
) -> Unit:
    """Delete a unit that has no units below it and no groups bound to it; its roles go with it."""
    unit = await require_unit(session, unit_id)
    await _require_manage(session, unit, actor_id, superusers)
    children = await org_store.count_children(session, unit.id)
    if children:
        raise DomainError("org.has_children", id=unit.id, name=unit.name, count=children)
    groups = len((await org_store.bound_chats(session, [unit.id])).get(unit.id, []))
    if groups:
        raise DomainError("org.has_groups", id=unit.id, name=unit.name, count=groups)
    # Groups the bot has left may still point here; they simply become unbound.
    await org_store.unbind_all(session, unit.id)
    await org_store.delete_unit(session, unit.id)
    _audit(session, "unit_delete", actor_id, f"unit={unit.id} kind={unit.kind} name={unit.name}", chat_pk)
    return unit


# --- groups bound to units ------------------------------------------------------------------------


async def bind_chat(
    session: AsyncSession, chat: Chat, actor_id: int, superusers: frozenset[int], unit_id: int
) -> tuple[Unit, bool]:
    """Bind the group to a unit. The actor must be committee in the group and manage the unit (and, when
    the group is bound elsewhere, that unit too), or be a superuser. Returns the unit and whether it changed."""
    unit = await require_unit(session, unit_id)
    locked = await _lock(session, chat)
    if actor_id not in superusers:
        if await role_in_chat(session, locked.id, actor_id, superusers) < Role.COMMITTEE:
            raise DomainError("errors.committee_only")
        await _require_manage(session, unit, actor_id, superusers)
    if locked.unit_id == unit.id:
        return unit, False
    previous = await org_store.get_unit(session, locked.unit_id)
    if previous is not None:
        await _require_manage(session, previous, actor_id, superusers)
    locked.unit_id = unit.id
    await session.flush()
    _audit(session, "unit_bind", actor_id, f"unit={unit.id} previous={previous.id if previous else None}", locked.id)
    return unit, True


async def unbind_chat(session: AsyncSession, chat: Chat, actor_id: int, superusers: frozenset[int]) -> Unit:
    """Unbind the group from its unit (committee in the group who manages that unit, or a superuser)."""
    locked = await _lock(session, chat)
    unit = await org_store.get_unit(session, locked.unit_id)
    if unit is None:
        raise DomainError("org.not_bound")
    if actor_id not in superusers:
        if await role_in_chat(session, locked.id, actor_id, superusers) < Role.COMMITTEE:
            raise DomainError("errors.committee_only")
        await _require_manage(session, unit, actor_id, superusers)
    locked.unit_id = None
    await session.flush()
    _audit(session, "unit_unbind", actor_id, f"unit={unit.id}", locked.id)
    return unit


async def may_create_branch_for_chat(
    session: AsyncSession, chat: Chat, actor_id: int, superusers: frozenset[int]
) -> bool:
    """The one-tap branch is for an unbound group, offered to its own secretary (the Telegram creator, or a
    secretary granted in the group) and to superusers."""
    if chat.unit_id is not None:
        return False
    if actor_id in superusers:
        return True
    return "secretary" in await people_store.roles_of(session, chat.id, actor_id)


async def create_branch_for_chat(
    session: AsyncSession, chat: Chat, actor_id: int, superusers: frozenset[int], now: datetime
) -> Unit:
    """One tap for a new branch: a root 支部 named after the group, the actor its secretary, the group bound."""
    locked = await _lock(session, chat)
    if locked.unit_id is not None:
        current = await org_store.get_unit(session, locked.unit_id)
        raise DomainError("org.already_bound", id=locked.unit_id, name=current.name if current else "?")
    if not await may_create_branch_for_chat(session, locked, actor_id, superusers):
        raise DomainError("org.owner_only")
    name = name_from_title(locked.title)
    if await people_store.get_user(session, actor_id) is None:
        raise DomainError("org.unknown_user")
    unit = await org_store.add_unit(session, name, "branch", None, actor_id)
    await org_store.set_unit_role(session, unit.id, actor_id, "secretary", actor_id, now)
    locked.unit_id = unit.id
    await session.flush()
    _audit(session, "unit_create", actor_id, f"unit={unit.id} kind=branch parent=None name={name}", locked.id)
    _audit(session, "role_grant", actor_id, f"user={actor_id} role=secretary unit={unit.id}", locked.id)
    _audit(session, "unit_bind", actor_id, f"unit={unit.id} previous=None", locked.id)
    return unit


async def _lock(session: AsyncSession, chat: Chat) -> Chat:
    locked = await org_store.lock_chat(session, chat.id)
    if locked is None:
        raise DomainError("errors.button_expired")
    return locked


# --- roles granted in a group ---------------------------------------------------------------------


async def _require_granter(session: AsyncSession, chat: Chat, actor_id: int, superusers: frozenset[int]) -> Unit | None:
    """Secretaries of the group may grant and revoke. In a bound group the role is held on the unit, so it
    reaches every group below that unit: there the actor must also be a secretary of the unit or above it."""
    unit = await org_store.get_unit(session, chat.unit_id)
    if actor_id in superusers:
        return unit
    if await role_in_chat(session, chat.id, actor_id, superusers) < Role.SECRETARY:
        raise DomainError("org.secretary_only")
    if unit is not None and not await can_manage(session, unit.id, actor_id, superusers):
        raise DomainError("org.unit_secretary_only", id=unit.id, name=unit.name)
    return unit


async def find_user(session: AsyncSession, username: str) -> User | None:
    return await people_store.find_user_by_username(session, username)


async def grant_role(
    session: AsyncSession,
    chat: Chat,
    actor_id: int,
    superusers: frozenset[int],
    target_id: int,
    role: str,
    now: datetime,
) -> RoleChange:
    """In a bound group the role is held on the group's unit; in an unbound group it is a chat role."""
    if role not in ROLES:
        raise DomainError("org.bad_role", value=role[:20])
    unit = await _require_granter(session, chat, actor_id, superusers)
    if await people_store.get_user(session, target_id) is None:
        raise DomainError("org.unknown_user")
    if unit is not None:
        await org_store.set_unit_role(session, unit.id, target_id, role, actor_id, now)
        where = f"unit={unit.id}"
    else:
        await people_store.set_granted_chat_role(session, chat.id, target_id, role, actor_id, now)
        where = "chat"
    _audit(session, "role_grant", actor_id, f"user={target_id} role={role} {where}", chat.id)
    await session.flush()
    return RoleChange(role, unit)


async def revoke_role(
    session: AsyncSession, chat: Chat, actor_id: int, superusers: frozenset[int], target_id: int
) -> RoleChange:
    """Remove the role granted here: on the group's unit, and the group's own granted role. Roles that come
    from Telegram's admin list or from a unit above cannot be removed here."""
    unit = await _require_granter(session, chat, actor_id, superusers)
    by_source = await people_store.chat_roles_by_source(session, chat.id, target_id)
    unit_role = await org_store.unit_role(session, unit.id, target_id) if unit is not None else None
    chat_role = by_source.get("granted")
    if unit_role is None and chat_role is None:
        if "telegram_admin" in by_source:
            raise DomainError("org.revoke_telegram_admin")
        if unit is not None:
            above = await org_store.roles_on_units_above(session, unit.id, target_id)
            if above:
                holder = await org_store.get_unit(session, above[0][0])
                raise DomainError("org.revoke_inherited", id=holder.id, name=holder.name)
        raise DomainError("org.nothing_to_revoke")
    removed = []
    if unit_role is not None:
        await org_store.delete_unit_role(session, unit.id, target_id)
        removed.append(f"unit={unit.id}:{unit_role}")
    if chat_role is not None:
        await people_store.delete_granted_chat_role(session, chat.id, target_id)
        removed.append(f"chat:{chat_role}")
    _audit(session, "role_revoke", actor_id, f"user={target_id} removed={','.join(removed)}", chat.id)
    await session.flush()
    strongest = "secretary" if "secretary" in (unit_role, chat_role) else "committee"
    return RoleChange(strongest, unit if unit_role is not None else None, by_source.get("telegram_admin"))
