"""Who may do what. Telegram group admins are the committee by default; the creator is the secretary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.people import Person, remember_person
from storage import organisation as organisation_store
from storage import people as people_store
from storage.models import AuditLog


class Role(IntEnum):
    MEMBER = 0
    COMMITTEE = 1
    SECRETARY = 2
    SUPERUSER = 3

    @property
    def is_committee(self) -> bool:
        return self >= Role.COMMITTEE


@dataclass(frozen=True)
class Admin:
    person: Person
    is_creator: bool
    is_bot: bool = False


async def role_in_chat(session: AsyncSession, chat_pk: int | None, user_id: int, superusers: frozenset[int]) -> Role:
    if user_id in superusers:
        return Role.SUPERUSER
    if chat_pk is None:
        return Role.MEMBER
    # The strongest of the chat's own roles (Telegram admins, granted) and the roles held on the unit the
    # chat is bound to or on any unit above it.
    names = await people_store.roles_of(session, chat_pk, user_id)
    if "secretary" not in names:
        names += await organisation_store.unit_roles_in_chat(session, chat_pk, user_id)
    return role_of_names(names)


async def roles_in_chat(session: AsyncSession, chat_pk: int) -> dict[int, Role]:
    """Everyone who holds more than the member role in the chat (from the chat or its units), with it.

    One read answers "what may this person do here" for every member of a group, which is what the
    per-group role cache keeps."""
    names: dict[int, list[str]] = {}
    for user_id, role in await people_store.chat_roles_in(session, chat_pk):
        names.setdefault(user_id, []).append(role)
    for user_id, role in await organisation_store.unit_roles_for_chat(session, chat_pk):
        names.setdefault(user_id, []).append(role)
    return {user_id: role_of_names(held) for user_id, held in names.items()}


def role_of_names(names: list[str]) -> Role:
    if "secretary" in names:
        return Role.SECRETARY
    if "committee" in names:
        return Role.COMMITTEE
    return Role.MEMBER


async def committee_user_ids(session: AsyncSession, chat_pk: int) -> set[int]:
    """Everyone whose role in the chat is committee or higher (superusers are not listed)."""
    holders = await people_store.chat_role_holders(session, chat_pk)
    return holders | await organisation_store.unit_role_holders_for_chat(session, chat_pk)


async def sync_admins(session: AsyncSession, chat_pk: int, admins: list[Admin], now: datetime) -> int:
    """Make the committee of a chat follow its Telegram admin list; returns how many people it has."""
    people = [admin for admin in admins if not admin.is_bot]
    for admin in people:
        await remember_person(session, admin.person, now)
    roles = {admin.person.id: ("secretary" if admin.is_creator else "committee") for admin in people}
    await people_store.replace_admin_roles(session, chat_pk, roles, now)
    session.add(AuditLog(chat_id=chat_pk, action="sync_admins", detail=",".join(map(str, sorted(roles)))))
    return len(roles)
