"""The roster a group's committee sees: who declared (verified / pending), who was seen but has not
declared (the 口袋党员 to reach), and who left. Telegram gives bots no member list; this is ours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from storage import roster as roster_store
from storage.models import AuditLog

SECTIONS = ("verified", "pending", "rejected", "undeclared", "left")


@dataclass(frozen=True)
class RosterEntry:
    user_id: int
    name: str
    username: str | None
    section: str
    member_type: str | None
    unit_id: int | None
    started_bot: bool
    first_seen: datetime | None = None  # when the bot first saw them in the group


@dataclass(frozen=True)
class Roster:
    entries: list[RosterEntry]

    def section(self, name: str) -> list[RosterEntry]:
        return [entry for entry in self.entries if entry.section == name]

    def counts(self) -> dict[str, int]:
        return {name: len(self.section(name)) for name in SECTIONS}


async def roster_of(
    session: AsyncSession, chat_pk: int, *, member_type: str | None = None, unit_id: int | None = None
) -> Roster:
    entries = []
    for member, user, identity in await roster_store.members_with_identities(session, chat_pk):
        if member.status != "member":
            section = "left"
        elif identity is None:
            section = "undeclared"
        else:
            section = identity.status
        if member_type and (identity is None or identity.member_type != member_type):
            continue
        if unit_id and (identity is None or identity.unit_id != unit_id):
            continue
        name = identity.real_name if identity else " ".join(p for p in (user.first_name, user.last_name) if p)
        entries.append(
            RosterEntry(
                user_id=user.id,
                name=name or str(user.id),
                username=user.username,
                section=section,
                member_type=identity.member_type if identity else None,
                unit_id=identity.unit_id if identity else None,
                started_bot=user.started_bot and not user.blocked_bot,
                first_seen=member.first_seen_at,
            )
        )
    return Roster(entries)


async def undeclared(session: AsyncSession, chat_pk: int) -> list[RosterEntry]:
    return (await roster_of(session, chat_pk)).section("undeclared")


NUDGE_INTERVAL = timedelta(minutes=10)


async def claim_nudge(session: AsyncSession, chat_pk: int, actor_id: int, now: datetime) -> timedelta | None:
    """Record a reminder to the undeclared, unless one went out less than NUDGE_INTERVAL ago (then: wait)."""
    last = await roster_store.last_action_at(session, chat_pk, "declare_nudge")
    if last is not None and now - last < NUDGE_INTERVAL:
        return NUDGE_INTERVAL - (now - last)
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="declare_nudge", created_at=now))
    await session.flush()
    return None


async def is_member(session: AsyncSession, chat_pk: int, user_id: int) -> bool:
    return await roster_store.is_member(session, chat_pk, user_id)


async def groups_of(session: AsyncSession, user_id: int) -> list[int]:
    """The groups the member is in, as far as the bot has seen."""
    return await roster_store.groups_of(session, user_id)
