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
# A listener registered for one database hears only that database's commits: applications built one after
# another in one process (tests) must not act on each other's (until the garbage collector runs).
_databases: dict[weakref.WeakMethod, object] = {}


def on_committed_changes(listener: ChangeListener, database: object | None = None) -> None:
    """``database``: the engine (``AsyncEngine.sync_engine``) whose commits to hear; None: every one."""
    reference = weakref.WeakMethod(listener)
    _listeners.append(reference)
    if database is not None:
        _databases[reference] = database


def off_committed_changes(listener: ChangeListener) -> None:
    for reference in [reference for reference in _listeners if reference() in (None, listener)]:
        _listeners.remove(reference)
        _databases.pop(reference, None)


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
        engine = session.get_bind().engine  # the session may be bound to a connection of it
        for reference in list(_listeners):
            listener = reference()
            if listener is None:
                _listeners.remove(reference)
                _databases.pop(reference, None)
            elif _databases.get(reference, engine) is not engine:
                continue
            else:
                listener(frozen)


@event.listens_for(TrackedSession, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("touched_tables", None)
