"""Tells in-process caches which tables a committed transaction changed.

Every session of ours is a TrackedSession: it notes the tables touched by a flush or by an ORM
INSERT/UPDATE/DELETE statement and, once the transaction has committed, hands their names to the
listeners. Caches use it to drop what might be stale.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from itertools import chain

from sqlalchemy import event
from sqlalchemy.orm import Session

ChangeListener = Callable[[frozenset[str]], None]
# Held weakly: a listener (a cache's bound method) goes away with its cache, so building many
# applications in one process (tests) leaves no stale listeners behind.
_listeners: list[weakref.WeakMethod] = []


def on_committed_changes(listener: ChangeListener) -> None:
    _listeners.append(weakref.WeakMethod(listener))


class TrackedSession(Session):
    pass


def _touched(session: Session) -> set[str]:
    return session.info.setdefault("touched_tables", set())


@event.listens_for(TrackedSession, "after_flush")
def _after_flush(session: Session, _context) -> None:
    for instance in chain(session.new, session.dirty, session.deleted):
        table = getattr(instance, "__tablename__", None)
        if table:
            _touched(session).add(table)


@event.listens_for(TrackedSession, "do_orm_execute")
def _on_statement(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if table is not None:
            _touched(session=state.session).add(table.name)


@event.listens_for(TrackedSession, "after_commit")
def _after_commit(session: Session) -> None:
    tables = session.info.pop("touched_tables", None)
    if tables:
        frozen = frozenset(tables)
        for reference in list(_listeners):
            listener = reference()
            if listener is None:
                _listeners.remove(reference)
            else:
                listener(frozen)


@event.listens_for(TrackedSession, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("touched_tables", None)
