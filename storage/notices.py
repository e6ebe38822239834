"""Queries on notices, their posts in groups and the members' confirmations."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Chat, ChatMember, Notice, NoticeAck, NoticePost
from storage.upsert import insert_for


async def get_notice(session: AsyncSession, notice_id: int) -> Notice | None:
    return await session.get(Notice, notice_id)


async def add_posts(session: AsyncSession, notice_id: int, chat_pks: list[int]) -> list[tuple[int, int]]:
    """A post of the notice in each group; returns (post id, chat pk) pairs. One statement with many
    parameter sets: a broadcast's thousand posts as ORM objects took a quarter of a second to flush."""
    result = await session.execute(
        insert(NoticePost).returning(NoticePost.id, NoticePost.chat_id),
        [{"notice_id": notice_id, "chat_id": chat_pk, "shown_acks": 0, "nudges": 0} for chat_pk in chat_pks],
    )
    return [(post_id, chat_pk) for post_id, chat_pk in result.all()]


async def get_post(session: AsyncSession, post_id: int) -> NoticePost | None:
    return await session.get(NoticePost, post_id)


async def post_in_chat(session: AsyncSession, notice_id: int, chat_pk: int) -> NoticePost | None:
    result = await session.execute(
        select(NoticePost).where(NoticePost.notice_id == notice_id, NoticePost.chat_id == chat_pk)
    )
    return result.scalar_one_or_none()


async def posts_of(session: AsyncSession, notice_id: int) -> list[tuple[NoticePost, Chat]]:
    result = await session.execute(
        select(NoticePost, Chat)
        .join(Chat, Chat.id == NoticePost.chat_id)
        .where(NoticePost.notice_id == notice_id)
        .order_by(NoticePost.id)
    )
    return [tuple(row) for row in result.all()]


async def add_ack(session: AsyncSession, post_id: int, user_id: int, now: datetime) -> bool:
    """Record a confirmation; False when this member had confirmed already."""
    insert = insert_for(session)
    result = await session.execute(
        insert(NoticeAck)
        .values(post_id=post_id, user_id=user_id, acked_at=now)
        .on_conflict_do_nothing()
        .returning(NoticeAck.user_id)
    )
    return result.first() is not None


async def acked_user_ids(session: AsyncSession, post_id: int) -> set[int]:
    result = await session.execute(select(NoticeAck.user_id).where(NoticeAck.post_id == post_id))
    return set(result.scalars())


async def ack_counts(session: AsyncSession, post_ids: list[int]) -> dict[int, tuple[int, int]]:
    """post id → (confirmations, audience): the group's current members plus anyone who confirmed and left."""
    if not post_ids:
        return {}
    acks = (
        select(NoticeAck.post_id, func.count().label("acked"))
        .where(NoticeAck.post_id.in_(post_ids))
        .group_by(NoticeAck.post_id)
        .subquery()
    )
    members = (
        select(ChatMember.chat_id, func.count().label("members"))
        .where(ChatMember.status == "member")
        .group_by(ChatMember.chat_id)
        .subquery()
    )
    outsiders = (
        select(NoticeAck.post_id, func.count().label("outside"))
        .join(NoticePost, NoticePost.id == NoticeAck.post_id)
        .outerjoin(
            ChatMember,
            and_(
                ChatMember.chat_id == NoticePost.chat_id,
                ChatMember.user_id == NoticeAck.user_id,
                ChatMember.status == "member",
            ),
        )
        .where(NoticeAck.post_id.in_(post_ids), ChatMember.user_id.is_(None))
        .group_by(NoticeAck.post_id)
        .subquery()
    )
    result = await session.execute(
        select(
            NoticePost.id,
            func.coalesce(acks.c.acked, 0),
            func.coalesce(members.c.members, 0) + func.coalesce(outsiders.c.outside, 0),
        )
        .outerjoin(acks, acks.c.post_id == NoticePost.id)
        .outerjoin(members, members.c.chat_id == NoticePost.chat_id)
        .outerjoin(outsiders, outsiders.c.post_id == NoticePost.id)
        .where(NoticePost.id.in_(post_ids))
    )
    return {post_id: (int(acked), int(audience)) for post_id, acked, audience in result.all()}


async def recent_posts_in_chat(session: AsyncSession, chat_pk: int, limit: int) -> list[tuple[NoticePost, Notice]]:
    result = await session.execute(
        select(NoticePost, Notice)
        .join(Notice, Notice.id == NoticePost.notice_id)
        .where(NoticePost.chat_id == chat_pk, Notice.status == "published")
        .order_by(Notice.published_at.desc(), Notice.id.desc())
        .limit(limit)
    )
    return [tuple(row) for row in result.all()]


async def posts_with_stale_counts(session: AsyncSession, since: datetime) -> list[int]:
    """Posts whose message shows a count that is no longer true (e.g. an edit lost to a restart)."""
    acks = select(NoticeAck.post_id, func.count().label("acked")).group_by(NoticeAck.post_id).subquery()
    result = await session.execute(
        select(NoticePost.id)
        .join(Notice, Notice.id == NoticePost.notice_id)
        .join(acks, acks.c.post_id == NoticePost.id)
        .where(Notice.published_at >= since, NoticePost.message_id.is_not(None), acks.c.acked != NoticePost.shown_acks)
    )
    return list(result.scalars())


async def unfinished_broadcasts(session: AsyncSession) -> list[int]:
    result = await session.execute(
        select(Notice.id).where(Notice.unit_id.is_not(None), Notice.status == "published", Notice.finished_at.is_(None))
    )
    return list(result.scalars())


async def acks_of_user(session: AsyncSession, user_id: int) -> list[tuple[NoticeAck, Notice, Chat]]:
    result = await session.execute(
        select(NoticeAck, Notice, Chat)
        .join(NoticePost, NoticePost.id == NoticeAck.post_id)
        .join(Notice, Notice.id == NoticePost.notice_id)
        .join(Chat, Chat.id == NoticePost.chat_id)
        .where(NoticeAck.user_id == user_id)
        .order_by(NoticeAck.acked_at)
    )
    return [tuple(row) for row in result.all()]
