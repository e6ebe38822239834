"""INSERT … ON CONFLICT for the backend in use (SQLite and PostgreSQL spell it the same way)."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def insert_for(session: AsyncSession):
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert
