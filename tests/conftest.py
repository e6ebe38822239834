from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from storage.db import Database
from storage.migrate import upgrade_to_head

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


async def _create_postgres_database() -> tuple[str, str]:
    import asyncpg

    base = make_url(POSTGRES_URL)
    name = f"branch_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(base))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return base.set(database=name).render_as_string(hide_password=False), name


async def _drop_postgres_database(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(_asyncpg_dsn(make_url(POSTGRES_URL)))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _asyncpg_dsn(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=BACKENDS)
async def database_url(request, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL on each backend under test (PostgreSQL when TEST_POSTGRES_URL is set)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    url, name = await _create_postgres_database()
    try:
        yield url
    finally:
        await _drop_postgres_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await upgrade_to_head(database.engine)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture(autouse=True)
async def _dump_tasks_before_timeout(request) -> AsyncIterator[None]:
    """pytest-timeout shows the threads' stacks, where an asyncio hang is only `select`: a few seconds
    before it fires, print where every task is waiting, so a hang says where it hung."""
    import asyncio
    import sys

    limit = request.config.getini("timeout")
    marker = request.node.get_closest_marker("timeout")
    seconds = float(marker.args[0] if marker and marker.args else request.config.getoption("timeout") or limit or 0)
    if seconds <= 10:
        yield
        return

    def dump() -> None:
        print(f"\n--- asyncio tasks still running after {seconds - 5:.0f} s ---", file=sys.stderr)
        for task in asyncio.all_tasks():
            print(f"{task!r}", file=sys.stderr)
            awaited = task.get_coro()
            while awaited is not None:  # down the chain of awaits to where it really waits
                frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
                if frame is not None:
                    print(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=sys.stderr)
                awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)

    handle = asyncio.get_running_loop().call_later(seconds - 5, dump)
    try:
        yield
    finally:
        handle.cancel()
