"""Users and the roster the bot builds from what it sees (Telegram gives bots no member list)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from storage import people as people_store
from storage.models import AuditLog


@dataclass(frozen=True)
class Person:
    """The parts of a Telegram user that we keep."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or str(self.id)


def _user_row(person: Person) -> dict:
    return {
        "id": person.id,
        "first_name": person.first_name[:255],
        "last_name": (person.last_name or None) and person.last_name[:255],
        "username": person.username,
        "language_code": person.language_code,
    }


async def remember_person(session: AsyncSession, person: Person, now: datetime) -> None:
    await people_store.upsert_users(session, [_user_row(person)], now)


async def observe_in_chat(session: AsyncSession, chat_pk: int, user_id: int, now: datetime) -> None:
    await people_store.observe_member(session, chat_pk, user_id, now)


async def mark_left(session: AsyncSession, chat_pk: int, user_id: int, now: datetime) -> None:
    """The member left or was removed: their roles in the group go with them (a former 委员 must not keep
    receiving lists that name members). Roles on the group's unit are the unit's to take away."""
    await people_store.observe_member(session, chat_pk, user_id, now, status="left")
    if await people_store.delete_chat_roles(session, chat_pk, user_id):
        session.add(AuditLog(chat_id=chat_pk, actor_id=None, action="roles_dropped", detail=f"{user_id} left"))


async def mark_started(session: AsyncSession, user_id: int) -> None:
    await people_store.set_user_flags(session, user_id, started_bot=True, blocked_bot=False)


async def mark_blocked(session: AsyncSession, user_id: int) -> None:
    await people_store.set_user_flags(session, user_id, blocked_bot=True)


async def roster_size(session: AsyncSession, chat_pk: int) -> int:
    return await people_store.count_members(session, chat_pk)


async def reachable_users(session: AsyncSession, user_ids: set[int] | list[int]) -> list:
    """Of these users, the ones the bot may message privately (they started it and did not block it)."""
    users = await people_store.get_users(session, sorted(set(user_ids)))
    return [user for user in users if user.started_bot and not user.blocked_bot]


async def get_user(session: AsyncSession, user_id: int):
    return await people_store.get_user(session, user_id)


async def record_sightings(
    session: AsyncSession,
    people: list[Person],
    memberships: list[tuple[int, int, datetime]],
    started: list[int],
    now: datetime,
) -> None:
    """What the bot saw in many updates at once: who they are, which groups they are in, who started it."""
    await people_store.upsert_users(session, [_user_row(person) for person in people], now)
    await people_store.observe_members(session, memberships)
    await people_store.mark_many_started(session, started)


async def expect_input(session: AsyncSession, user_id: int, kind: str, ref: str) -> None:
    """The bot asked this user for a free-text answer in private (one at a time: the latest wins)."""
    from storage import identity as identity_store

    await identity_store.set_pending_input(session, user_id, kind, ref)


async def awaits_input(session: AsyncSession, user_id: int) -> bool:
    from storage import identity as identity_store

    return await identity_store.get_pending_input(session, user_id) is not None


async def drop_input(session: AsyncSession, user_id: int, kind: str, ref: str) -> None:
    """Stop waiting for an answer the bot asked for, if it is still that one."""
    from storage import identity as identity_store

    pending = await identity_store.get_pending_input(session, user_id)
    if pending is not None and (pending.kind, pending.ref) == (kind, ref):
        await identity_store.clear_pending_input(session, user_id)


async def awaited_input(session: AsyncSession, user_id: int) -> tuple[str, str] | None:
    """The answer the bot waits for from this user, as (kind, ref), left in place."""
    from storage import identity as identity_store

    pending = await identity_store.get_pending_input(session, user_id)
    return (pending.kind, pending.ref) if pending is not None else None
