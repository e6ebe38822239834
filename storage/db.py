"""Engine, sessions and the one-transaction-per-unit-of-work helper.

SQLite is the default store. Two of its habits shape this module:

* a transaction that starts as a read and later writes fails at once with "database is locked"
  (it cannot wait for busy_timeout), so every transaction here starts with ``BEGIN IMMEDIATE``;
* SQLite's own busy handler sleeps in growing steps (up to 100 ms), which wastes throughput when
  many coroutines of one process want to write. Writers of this process therefore queue on an
  asyncio lock first. Between processes (a second bot by mistake, the CLI beside the bot), a writer
  polling every 100 ms keeps losing to newcomers that poll every few milliseconds, and can wait past
  any busy_timeout; so writers also take an OS lock on a file beside the database, which wakes the
  next waiter the moment it is free. busy_timeout stays as the safety net for anything else.

PostgreSQL needs neither trick: its transactions run concurrently.

Most updates only read (a /help, a tap on a button that needs no change). A transaction opened with
``read_only=True`` takes no lock and starts a plain (deferred) BEGIN, so such updates run side by
side; if one tries to write after all, ``WriteNeeded`` is raised before the statement reaches the
database, and the caller runs the work again as a write transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.changes import TrackedSession

SQLITE_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY: ContextVar[bool] = ContextVar("read_only_transaction", default=False)
_READ_PREFIXES = ("SELECT", "WITH", "BEGIN", "PRAGMA", "SAVEPOINT", "RELEASE", "ROLLBACK", "COMMIT", "SHOW", "SET")


def in_read_only_transaction() -> bool:
    return _READ_ONLY.get()


class WriteNeeded(Exception):
    """A read-only transaction was about to write; nothing was written. Run it again to write."""


def normalize_database_url(url: str) -> str:
    """Accept the URLs people write (``sqlite:///x.db``, ``postgres://…``) and pick the async driver."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"unsupported database backend {backend!r} (use sqlite or postgresql)")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_file(url: str) -> Path | None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(database).expanduser()
    return None


def _ensure_sqlite_directory(url: str) -> None:
    path = _sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


class _WriterFileLock:
    """An exclusive flock on ``<database>-writer.lock`` held for a write transaction, shared by every
    process (and every engine) that writes the file. Uncontended, it costs one system call; contended,
    the wait happens in a worker thread and the kernel hands the lock over as soon as it is released."""

    def __init__(self, path: Path) -> None:
        self._path = path.with_name(path.name + "-writer.lock")
        self._fd: int | None = None

    async def __aenter__(self) -> None:
        import fcntl

        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fd = self._fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
        try:
            await asyncio.shield(waiting)
        except asyncio.CancelledError:
            # The thread cannot be stopped: once it gets the lock, give it back, or nobody ever writes again.
            waiting.add_done_callback(lambda done: done.cancelled() or done.exception() or self._release())
            raise

    async def __aexit__(self, *exc) -> None:
        self._release()

    def _release(self) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _writer_file_lock(url: str):
    """The cross-process writer lock where the OS has flock and the database is a file; else nothing."""
    path = _sqlite_file(url)
    if path is None or os.name != "posix":
        return contextlib.nullcontext()
    return _WriterFileLock(path)


def _install_sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised by every test
        # Take BEGIN away from the driver so that we can emit BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection):  # pragma: no cover - exercised by every test
        connection.exec_driver_sql("BEGIN" if _READ_ONLY.get() else "BEGIN IMMEDIATE")


def _install_write_guard(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _guard(connection, cursor, statement, parameters, context, executemany):
        if _READ_ONLY.get() and not statement.lstrip().upper().startswith(_READ_PREFIXES):
            raise WriteNeeded(statement.split(None, 1)[0])


class _SessionOnDemand:
    """Stands in for an AsyncSession and makes the real one on first use, so that an update that
    needs nothing from the database (a cached group, a cached role) costs no session at all."""

    def __init__(self, sessionmaker: async_sessionmaker) -> None:
        self._sessionmaker = sessionmaker
        self.made: AsyncSession | None = None

    def __getattr__(self, name: str):
        if self.made is None:
            self.made = self._sessionmaker()
        return getattr(self.made, name)

    async def finish(self, failed: bool) -> None:
        if self.made is None:
            return
        try:
            if failed:
                await self.made.rollback()
            else:
                await self.made.commit()
        finally:
            await self.made.close()


class Database:
    """Owns the engine; hands out sessions that are one transaction each."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_database_url(url)
        self.is_sqlite = is_sqlite(self.url)
        kwargs: dict = {"echo": echo}
        if self.is_sqlite:
            _ensure_sqlite_directory(self.url)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine)
        _install_write_guard(self.engine)
        self.sessionmaker = async_sessionmaker(
            self.engine, expire_on_commit=False, autoflush=True, sync_session_class=TrackedSession
        )
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._writer_file_lock = _writer_file_lock(self.url) if self.is_sqlite else None

    @asynccontextmanager
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """One session, one transaction: committed when the block ends, rolled back on error.

        ``read_only`` transactions run concurrently and raise WriteNeeded instead of writing.
        """
        token = _READ_ONLY.set(read_only)
        try:
            if read_only:
                session = _SessionOnDemand(self.sessionmaker)
                try:
                    yield session  # type: ignore[misc]
                except BaseException:
                    await session.finish(failed=True)
                    raise
                await session.finish(failed=False)
            elif self._write_lock is None:
                async with self.sessionmaker() as session, session.begin():
                    yield session
            else:
                async with self._write_lock, self._writer_file_lock, self.sessionmaker() as session, session.begin():
                    yield session
        finally:
            _READ_ONLY.reset(token)

    async def ping(self) -> None:
        from sqlalchemy import text

        async with self.transaction() as session:
            await session.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if isinstance(self._writer_file_lock, _WriterFileLock):
            self._writer_file_lock.close()
