"""In-process caches for what nearly every update reads: the group's record and the sender's role.

They make an update that changes nothing cost no database round trip. Entries are dropped as soon
as a committed transaction of this process touches their tables (storage.changes), and expire after
CACHE_SECONDS anyway so that several processes sharing one PostgreSQL database agree within that
time. A read that raced with a change is not stored (generation check).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from storage.changes import on_committed_changes

CACHE_SECONDS = 30.0
MAX_ENTRIES = 100_000

V = TypeVar("V")


class TableCache(Generic[V]):
    def __init__(self, tables: frozenset[str], *, seconds: float = CACHE_SECONDS) -> None:
        self.tables = tables
        self.seconds = seconds
        self._entries: dict[Hashable, tuple[V, float]] = {}
        self._generation = 0
        on_committed_changes(self._on_change)

    def _on_change(self, tables: frozenset[str]) -> None:
        if tables & self.tables:
            self.clear()

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    async def get(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is not None and entry[1] > now:
            return entry[0]
        generation = self._generation
        value = await load()
        if generation == self._generation:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (value, now + self.seconds)
        return value


def chat_cache() -> TableCache:
    return TableCache(frozenset({"chats"}))


def role_cache() -> TableCache:
    return TableCache(frozenset({"chats", "chat_roles", "unit_roles", "units"}))
