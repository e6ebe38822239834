"""Storage and services against a real database (SQLite, and PostgreSQL when TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, inspect, select

from bot.services import chats as chat_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services.errors import DomainError
from bot.services.people import Person
from bot.services.roles import Admin, Role
from storage.db import Database
from storage.migrate import upgrade_to_head
from storage.models import AuditLog, ChatMember, ChatRole, ProcessedUpdate, User
from storage.updates import claim_update

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


async def test_migrations_create_every_table_and_are_repeatable(db: Database) -> None:
    await upgrade_to_head(db.engine)  # a second run is a no-op

    def tables(connection):
        return set(inspect(connection).get_table_names())

    async with db.engine.connect() as connection:
        names = await connection.run_sync(tables)
    assert {"chats", "users", "chat_members", "chat_roles", "processed_updates", "audit_log"} <= names


async def test_an_update_is_claimed_once(db: Database) -> None:
    async with db.transaction() as session:
        assert await claim_update(session, 42) is True
    async with db.transaction() as session:
        assert await claim_update(session, 42) is False
        assert await claim_update(session, 43) is True


async def test_a_rolled_back_update_can_be_processed_again(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await claim_update(session, 7)
            raise RuntimeError("handler crashed")
    async with db.transaction() as session:
        assert await claim_update(session, 7) is True


async def test_many_concurrent_writers_lose_nothing(db: Database) -> None:
    async def one_update(update_id: int) -> None:
        async with db.transaction() as session:
            assert await claim_update(session, update_id)
            await people_service.remember_person(session, Person(update_id, f"成员{update_id}"), NOW)

    await asyncio.gather(*(one_update(i) for i in range(1, 301)))
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 300
        assert await session.scalar(select(func.count()).select_from(User)) == 300


async def test_two_engines_on_one_sqlite_file_never_report_locked(sqlite_url: str) -> None:
    # Two engines stand for two processes: they do not share the in-process lock, only SQLite's.
    first, second = Database(sqlite_url), Database(sqlite_url)
    await upgrade_to_head(first.engine)

    async def writer(database: Database, offset: int) -> None:
        for i in range(100):
            async with database.transaction() as session:
                # Read first, then write: the pattern that fails without BEGIN IMMEDIATE.
                await session.scalar(select(func.count()).select_from(ProcessedUpdate))
                await claim_update(session, offset + i)

    try:
        await asyncio.gather(*(writer(first if n % 2 else second, n * 1000) for n in range(6)))
        async with first.transaction() as session:
            assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 600
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_writer_cancelled_while_waiting_for_another_process_leaves_no_lock_behind(sqlite_url: str) -> None:
    first, second = Database(sqlite_url), Database(sqlite_url)
    await upgrade_to_head(first.engine)
    try:
        holding, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with first.transaction() as session:
                await claim_update(session, 1)
                holding.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()

        async def write(database: Database, update_id: int) -> None:
            async with database.transaction() as session:
                await claim_update(session, update_id)

        waiting = asyncio.create_task(write(second, 2))
        await asyncio.sleep(0.2)  # it waits for the other "process"
        assert not waiting.done()
        waiting.cancel()
        release.set()
        await holder
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # The lock the cancelled writer's thread got later was given back: both can write again.
        await asyncio.wait_for(write(first, 3), 5)
        await asyncio.wait_for(write(second, 4), 5)
        async with first.transaction(read_only=True) as session:
            assert await session.scalar(select(func.count()).select_from(ProcessedUpdate)) == 3
    finally:
        await first.dispose()
        await second.dispose()


async def test_group_lifecycle_register_leave_return(db: Database) -> None:
    async with db.transaction() as session:
        result = await chat_service.register_chat(session, -100123, "supergroup", "一支部")
        assert result.is_new
    async with db.transaction() as session:
        assert await chat_service.deactivate_chat(session, -100123)
        assert not await chat_service.deactivate_chat(session, -100123)
    async with db.transaction() as session:
        result = await chat_service.register_chat(session, -100123, "supergroup", "第一支部")
        assert not result.is_new and result.was_inactive
        assert result.chat.is_active and result.chat.title == "第一支部"


async def _group_with_member_and_admin(db: Database, telegram_id: int) -> int:
    async with db.transaction() as session:
        chat = (await chat_service.register_chat(session, telegram_id, "group", "党小组")).chat
        await people_service.remember_person(session, Person(1, "张三"), NOW)
        await people_service.observe_in_chat(session, chat.id, 1, NOW)
        await role_service.sync_admins(session, chat.id, [Admin(Person(2, "李书记"), is_creator=True)], NOW)
        return chat.id


async def test_migrated_group_keeps_its_records(db: Database) -> None:
    chat_pk = await _group_with_member_and_admin(db, -500)
    async with db.transaction() as session:
        migrated = await chat_service.migrate_chat(session, -500, -100500)
        assert migrated.id == chat_pk and migrated.type == "supergroup"
    async with db.transaction() as session:
        assert await chat_service.get_chat(session, -500) is None
        chat = await chat_service.get_chat(session, -100500)
        assert chat.id == chat_pk and chat.previous_telegram_id == -500
        assert await people_service.roster_size(session, chat.id) == 2
        assert await role_service.role_in_chat(session, chat.id, 2, frozenset()) == Role.SECRETARY
        # The second migration message (seen in the new supergroup) changes nothing.
        again = await chat_service.migrate_chat(session, -500, -100500)
        assert again.id == chat_pk


async def test_migration_folds_a_supergroup_seen_first_under_its_new_id(db: Database) -> None:
    chat_pk = await _group_with_member_and_admin(db, -600)
    async with db.transaction() as session:
        early = (await chat_service.register_chat(session, -100600, "supergroup", "党小组")).chat
        await people_service.remember_person(session, Person(3, "王五"), NOW)
        await people_service.observe_in_chat(session, early.id, 3, NOW)
        await people_service.observe_in_chat(session, early.id, 1, NOW)  # clashes with the old chat's row
    async with db.transaction() as session:
        chat = await chat_service.migrate_chat(session, -600, -100600)
        assert chat.id == chat_pk
    async with db.transaction() as session:
        members = set(
            (await session.execute(select(ChatMember.user_id).where(ChatMember.chat_id == chat_pk))).scalars()
        )
        assert members == {1, 2, 3}


async def test_admin_sync_sets_committee_and_secretary_and_follows_demotion(db: Database) -> None:
    chat_pk = await _group_with_member_and_admin(db, -700)
    async with db.transaction() as session:
        admins = [
            Admin(Person(2, "李书记"), True),
            Admin(Person(4, "赵委员"), False),
            Admin(Person(9, "bot"), False, True),
        ]
        assert await role_service.sync_admins(session, chat_pk, admins, NOW) == 2
    async with db.transaction() as session:
        assert await role_service.role_in_chat(session, chat_pk, 4, frozenset()) == Role.COMMITTEE
        assert await role_service.role_in_chat(session, chat_pk, 1, frozenset()) == Role.MEMBER
        assert await role_service.role_in_chat(session, chat_pk, 1, frozenset({1})) == Role.SUPERUSER
        await role_service.sync_admins(session, chat_pk, [Admin(Person(2, "李书记"), True)], NOW)
    async with db.transaction() as session:
        assert await role_service.role_in_chat(session, chat_pk, 4, frozenset()) == Role.MEMBER
        roles = (await session.execute(select(ChatRole).where(ChatRole.chat_id == chat_pk))).scalars().all()
        assert [(r.user_id, r.role) for r in roles] == [(2, "secretary")]


async def test_settings_change_is_audited_and_bad_values_change_nothing(db: Database) -> None:
    async with db.transaction() as session:
        chat = (await chat_service.register_chat(session, -800, "supergroup", "支部")).chat
        await chat_service.change_settings(
            session, chat, 2, language="en", timezone="Europe/Berlin", quiet_hours=("23:00", "06:30")
        )
    for bad in (
        {"language": "fr"},
        {"timezone": "Mars/Olympus"},
        {"quiet_hours": ("25:00", "07:00")},
        {"quiet_hours": ("22:00", "22:00")},
        {"quiet_hours": ("22:00", None)},
    ):
        with pytest.raises(DomainError):
            async with db.transaction() as session:
                chat = await chat_service.get_chat(session, -800)
                await chat_service.change_settings(session, chat, 2, **bad)
    async with db.transaction() as session:
        chat = await chat_service.get_chat(session, -800)
        settings = chat_service.settings_of(chat, default_language="zh", default_timezone="Asia/Shanghai")
        assert (settings.language, settings.timezone, settings.quiet_start, settings.quiet_end) == (
            "en",
            "Europe/Berlin",
            "23:00",
            "06:30",
        )
        assert (
            await session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "settings")) == 1
        )
        await chat_service.change_settings(session, chat, 2, quiet_hours=(None, None))
    async with db.transaction() as session:
        chat = await chat_service.get_chat(session, -800)
        settings = chat_service.settings_of(chat, default_language="zh", default_timezone="Asia/Shanghai")
        assert settings.quiet_start is None and not chat_service.is_quiet_time(settings, NOW)


def test_quiet_hours_wrap_past_midnight_in_the_group_timezone() -> None:
    settings = chat_service.GroupSettings("zh", "Asia/Shanghai", "22:00", "07:00")
    assert chat_service.is_quiet_time(settings, datetime(2026, 11, 22, 14, 30, tzinfo=UTC))  # 22:30 in Shanghai
    assert chat_service.is_quiet_time(settings, datetime(2026, 11, 22, 22, 59, tzinfo=UTC))  # 06:59
    assert not chat_service.is_quiet_time(settings, datetime(2026, 11, 22, 23, 0, tzinfo=UTC))  # 07:00
    assert not chat_service.is_quiet_time(settings, datetime(2026, 11, 22, 13, 59, tzinfo=UTC))  # 21:59
    daytime = chat_service.GroupSettings("zh", "Asia/Shanghai", "12:00", "13:30")
    assert chat_service.is_quiet_time(daytime, datetime(2026, 11, 22, 4, 0, tzinfo=UTC))
    assert not chat_service.is_quiet_time(daytime, datetime(2026, 11, 22, 5, 30, tzinfo=UTC))


async def test_old_update_ids_are_pruned(db: Database) -> None:
    from datetime import timedelta

    from bot.services.maintenance import prune_processed_updates

    async with db.transaction() as session:
        session.add(ProcessedUpdate(update_id=1, processed_at=NOW - timedelta(days=3)))
        session.add(ProcessedUpdate(update_id=2, processed_at=NOW - timedelta(hours=3)))
    async with db.transaction() as session:
        assert await prune_processed_updates(session, NOW) == 1
        assert await claim_update(session, 2) is False


async def test_migrations_match_the_models(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    def diff(connection):
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        changes = compare_metadata(context, Base.metadata)
        if connection.dialect.name == "sqlite":
            # SQLite keeps no name for a reference added with ALTER TABLE ADD COLUMN (migration 0002),
            # so the same constraint shows as "unnamed removed, named added".
            changes = [c for c in changes if not (c[0] in ("remove_fk", "add_fk") and c[1].table.name == "chats")]
        return changes

    async with db.engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_upgrading_an_existing_database_keeps_its_rows(sqlite_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from storage.migrate import alembic_config

    database = Database(sqlite_url)

    def upgrade_to(connection, revision: str) -> None:
        config = alembic_config(database.url)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with database.engine.connect() as connection:
            await connection.run_sync(upgrade_to, "0001")
            await connection.commit()
        async with database.transaction() as session:  # rows as the 0001 schema had them
            stamp = {"now": NOW.replace(tzinfo=None)}
            await session.execute(
                text(
                    "INSERT INTO chats (id, telegram_id, type, title, is_active, bot_is_admin, created_at, updated_at)"
                    " VALUES (1, -900, 'supergroup', '老支部', 1, 0, :now, :now)"
                ),
                stamp,
            )
            await session.execute(
                text(
                    "INSERT INTO users (id, first_name, started_bot, blocked_bot, created_at, updated_at)"
                    " VALUES (1, '张三', 0, 0, :now, :now)"
                ),
                stamp,
            )
            await session.execute(
                text(
                    "INSERT INTO chat_members (chat_id, user_id, status, is_admin, first_seen_at, last_seen_at)"
                    " VALUES (1, 1, 'member', 0, :now, :now)"
                ),
                stamp,
            )
        await upgrade_to_head(database.engine)
        async with database.transaction() as session:
            assert (await session.execute(text("SELECT count(*) FROM chat_members"))).scalar_one() == 1
            assert (await session.execute(text("SELECT unit_id FROM chats"))).scalar_one() is None
    finally:
        await database.dispose()
