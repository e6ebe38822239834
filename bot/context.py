"""What a handler needs to know about the update it is handling, in one object (``ctx``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from bot.delivery import Replies
from bot.i18n import Translator
from bot.services.chats import GroupSettings
from bot.services.clock import Clock
from bot.services.people import Person
from bot.services.roles import Role, role_in_chat
from storage.models import Chat


@dataclass
class RequestContext:
    session: AsyncSession
    replies: Replies
    clock: Clock
    t: Translator
    person: Person | None
    chat: Chat | None  # the group's record; None in private chats
    group_settings: GroupSettings
    superusers: frozenset[int]
    _role: Role | None = field(default=None, repr=False)

    async def role(self) -> Role:
        if self._role is None:
            if self.person is None:
                return Role.MEMBER
            chat_pk = self.chat.id if self.chat is not None else None
            self._role = await role_in_chat(self.session, chat_pk, self.person.id, self.superusers)
        return self._role

    async def is_committee(self) -> bool:
        return (await self.role()).is_committee
