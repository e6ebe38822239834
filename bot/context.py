"""What a handler needs to know about the update it is handling, in one object (``ctx``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from bot.caches import TableCache
from bot.delivery import Replies
from bot.i18n import Translator
from bot.services.chats import Chat, ChatInfo, GroupSettings, settings_of
from bot.services.clock import Clock
from bot.services.people import Person
from bot.services.roles import Role, role_in_chat, roles_in_chat


@dataclass
class RequestContext:
    session: AsyncSession
    replies: Replies
    clock: Clock
    t: Translator
    person: Person | None
    chat: ChatInfo | None  # a copy of the group's record; None in private chats
    group_settings: GroupSettings
    superusers: frozenset[int]
    role_cache: TableCache = field(repr=False)
    defaults: tuple[str, str] = ("zh", "Asia/Shanghai")  # the deployment's language and time zone
    _role: Role | None = field(default=None, repr=False)

    def settings_of(self, chat: Chat | ChatInfo | None) -> GroupSettings:
        """Another group's settings (the one a private button or a meeting belongs to), where the group
        has none of its own falling back to the deployment's, not to the chat this update came from."""
        language, timezone = self.defaults
        return settings_of(chat, default_language=language, default_timezone=timezone)

    async def role(self) -> Role:
        if self._role is None:
            if self.person is None:
                return Role.MEMBER
            if self.person.id in self.superusers or self.chat is None:
                chat_pk = self.chat.id if self.chat is not None else None
                self._role = await role_in_chat(self.session, chat_pk, self.person.id, self.superusers)
            else:
                chat_pk = self.chat.id
                holders = await self.role_cache.get(chat_pk, lambda: roles_in_chat(self.session, chat_pk))
                self._role = holders.get(self.person.id, Role.MEMBER)
        return self._role

    async def is_committee(self) -> bool:
        return (await self.role()).is_committee
