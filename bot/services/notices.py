"""Notices with one-tap acknowledgement: drafts, publishing (to one group or down the organisation
tree), confirmations, who has not confirmed, nudges.

A notice reaches each group as a ``NoticePost``; the message itself is planned in the outbox, so that
it goes out once, rate-limited, and survives restarts. Confirmations are one row per member and post.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import chats as chat_service
from bot.services import outbox as outbox_service
from bot.services import roster as roster_service
from bot.services import timephrase
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.outbox import Planned
from bot.services.text import is_blank
from storage import notices as notice_store
from storage import organisation as org_store
from storage.models import AuditLog, Chat, Notice, NoticePost

KINDS = ("text", "photo", "document")
MAX_TEXT_LENGTH = 4000  # a user's message is at most 4096 characters; leave room for the command
MAX_CAPTION_LENGTH = 1000  # Telegram allows 1024 for a caption, and the post adds a title
MAX_SCHEDULE_AHEAD = timedelta(days=366)
NUDGE_INTERVAL = timedelta(minutes=30)
MENTIONS_PER_MESSAGE = 30
TITLE_LENGTH = 30
NOT_A_DRAFT = {"published": "notices.already_published", "cancelled": "notices.already_cancelled"}
BROADCAST_ROLES = ("committee", "secretary")


@dataclass(frozen=True)
class Composed:
    """What a committee member wants to send, before it becomes a draft."""

    kind: str
    text: str
    file_id: str | None = None
    send_at: datetime | None = None


@dataclass(frozen=True)
class AckResult:
    new: bool
    acked: int
    audience: int


@dataclass(frozen=True)
class PostStatus:
    post: NoticePost
    notice: Notice
    confirmed: list[roster_service.RosterEntry]
    unconfirmed: list[roster_service.RosterEntry]


@dataclass(frozen=True)
class NudgeResult:
    mentioned: int
    private: int
    at: datetime | None  # set when quiet hours put the nudge off until then


@dataclass(frozen=True)
class GroupReport:
    chat: Chat
    delivered: bool
    acked: int
    audience: int


def title_of(text: str, length: int = TITLE_LENGTH) -> str:
    first = (text or "").strip().split("\n", 1)[0].strip()
    return first if len(first) <= length else first[: length - 1] + "…"


def validate_text(text: str | None, kind: str) -> str:
    text = (text or "").strip()
    if kind == "text" and is_blank(text):
        raise DomainError("notices.empty")
    limit = MAX_TEXT_LENGTH if kind == "text" else MAX_CAPTION_LENGTH
    if len(text) > limit:
        raise DomainError("notices.too_long", limit=limit, length=len(text))
    return text


def parse_send_at(phrase: str, zone: ZoneInfo, now: datetime) -> datetime:
    """A one-off time phrase ("明天下午3点", "12月5日 19:30", "tomorrow 15:00") in the group's time zone, in
    the future and within a year. A recurring phrase belongs to /schedule."""
    return timephrase.moment_of(phrase, now=now, zone=zone, within=MAX_SCHEDULE_AHEAD, errors="notices")


def split_schedule(args: str, zone: ZoneInfo, now: datetime) -> tuple[str | None, str]:
    """``"明天下午3点 | text"`` → (time phrase, text). The part before "|" counts as a time only when it
    reads as one, or was clearly meant as one (a clock time, an impossible date); otherwise a "|" inside
    a notice ("第一党支部 | 通知", "周五前交材料 | …") is left alone."""
    head, sep, tail = args.partition("|")
    if sep and len(head.strip()) <= 40 and _meant_as_time(head, zone, now):
        return head.strip(), tail.strip()
    return None, args.strip()


def _meant_as_time(text: str, zone: ZoneInfo, now: datetime) -> bool:
    try:
        timephrase.parse(text, now=now, zone=zone)
    except timephrase.PhraseError as error:
        return error.key != "timephrase.not_understood" or any(role == "time" for role, _ in error.understood)
    return True


async def create_draft(
    session: AsyncSession, author_id: int, origin_chat_pk: int | None, composed: Composed, now: datetime
) -> Notice:
    if composed.kind not in KINDS:
        raise DomainError("notices.unsupported")
    notice = Notice(
        author_id=author_id,
        origin_chat_id=origin_chat_pk,
        kind=composed.kind,
        text=validate_text(composed.text, composed.kind),
        file_id=composed.file_id,
        send_at=composed.send_at,
        status="draft",
        created_at=now,
    )
    session.add(notice)
    await session.flush()
    return notice


async def get_notice(session: AsyncSession, notice_id: int) -> Notice | None:
    return await notice_store.get_notice(session, notice_id)


async def _draft(session: AsyncSession, notice_id: int, actor_id: int) -> Notice:
    notice = await notice_store.get_notice(session, notice_id)
    if notice is None or notice.author_id != actor_id:
        raise DomainError("notices.not_yours")
    if notice.status != "draft":
        raise DomainError(NOT_A_DRAFT.get(notice.status, "errors.button_expired"))
    return notice


def post_key(notice_id: int, chat_pk: int) -> str:
    return f"notice:{notice_id}:chat:{chat_pk}"


def broadcast_key_prefix(notice_id: int) -> str:
    return f"notice:{notice_id}:chat:"


async def _publish_to(
    session: AsyncSession, notice: Notice, chat_pks: list[int], now: datetime, *, key: str | None = None
) -> None:
    """One post per group, each planned in the outbox (under ``key`` when the caller names the message:
    a scheduled firing)."""
    posts = await notice_store.add_posts(session, notice.id, chat_pks)
    await outbox_service.plan(
        session,
        [
            Planned(
                key=key or post_key(notice.id, chat_pk),
                kind="notice_post",
                args={"post_id": post_id, "notice_id": notice.id},
                chat_pk=chat_pk,
                not_before=notice.send_at,
            )
            for post_id, chat_pk in posts
        ],
        now,
    )
    notice.status = "published"
    notice.published_at = now


async def publish(
    session: AsyncSession, notice_id: int, actor_id: int, chat_pk: int, *, pin: bool, now: datetime
) -> Notice:
    """Post a draft to the group it was written in (now, or at its scheduled time)."""
    notice = await _draft(session, notice_id, actor_id)
    if notice.origin_chat_id != chat_pk:
        raise DomainError("notices.not_yours")
    chat = await chat_service.get_chat_by_pk(session, chat_pk)
    if chat is None or not chat.is_active:
        raise DomainError("errors.chat_gone")
    notice.pin = pin
    await _publish_to(session, notice, [chat.id], now)
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="notice_published", detail=str(notice.id)))
    await session.flush()
    return notice


async def post_announcement(
    session: AsyncSession,
    chat_pk: int,
    author_id: int | None,
    text: str,
    *,
    key: str,
    now: datetime,
    not_before: datetime | None,
) -> None:
    """A scheduled announcement that carries the "✅ 收到" button: a published notice of its own, so that
    confirmations, lists and nudges work as for any notice. ``key`` says which firing it is."""
    notice = Notice(
        author_id=author_id,
        origin_chat_id=chat_pk,
        kind="text",
        text=text,
        send_at=not_before,
        created_at=now,
    )
    session.add(notice)
    await session.flush()
    await _publish_to(session, notice, [chat_pk], now, key=key)


async def discard(session: AsyncSession, notice_id: int, actor_id: int) -> None:
    notice = await _draft(session, notice_id, actor_id)
    notice.status = "cancelled"
    await session.flush()


async def cancel_scheduled(session: AsyncSession, notice_id: int, actor_id: int, chat_pk: int, now: datetime) -> Notice:
    """Stop a notice that has not gone out yet (its posts still waiting for their time)."""
    notice = await notice_store.get_notice(session, notice_id)
    if notice is None or notice.status != "published" or notice.origin_chat_id != chat_pk:
        raise DomainError("errors.button_expired")
    if notice.send_at is None or notice.send_at <= now:
        raise DomainError("notices.already_sent")
    posts = await notice_store.posts_of(session, notice.id)
    await outbox_service.cancel(session, [post_key(notice.id, post.chat_id) for post, _ in posts])
    notice.status = "cancelled"
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="notice_cancelled", detail=str(notice.id)))
    await session.flush()
    return notice


async def acknowledge(
    session: AsyncSession, post_id: int, user_id: int, chat_pk: int | None, now: datetime
) -> AckResult:
    """A member's "✅ 收到". ``chat_pk`` is the group the button was pressed in (None: in private, where
    the nudge carries the button; then the member must belong to the notice's group)."""
    post = await notice_store.get_post(session, post_id)
    if post is None or (chat_pk is not None and post.chat_id != chat_pk):
        raise DomainError("errors.button_expired")
    if chat_pk is None and not await roster_service.is_member(session, post.chat_id, user_id):
        raise DomainError("notices.not_member")
    notice = await notice_store.get_notice(session, post.notice_id)
    if notice is None or notice.status != "published":
        raise DomainError("errors.button_expired")
    new = await notice_store.add_ack(session, post_id, user_id, now)
    acked, audience = (await notice_store.ack_counts(session, [post_id]))[post_id]
    return AckResult(new, acked, audience)


async def counts(session: AsyncSession, post_ids: list[int]) -> dict[int, tuple[int, int]]:
    return await notice_store.ack_counts(session, post_ids)


async def post_for(session: AsyncSession, post_id: int) -> tuple[NoticePost, Notice, Chat] | None:
    post = await notice_store.get_post(session, post_id)
    if post is None:
        return None
    notice = await notice_store.get_notice(session, post.notice_id)
    chat = await chat_service.get_chat_by_pk(session, post.chat_id)
    if notice is None or chat is None:
        return None
    return post, notice, chat


async def awaits_ack_from(session: AsyncSession, post: NoticePost, user_id: int) -> bool:
    """Whether the member is (still) in the notice's group and has not confirmed it."""
    if not await roster_service.is_member(session, post.chat_id, user_id):
        return False
    return user_id not in await notice_store.acked_user_ids(session, post.id)


async def record_posted(session: AsyncSession, post_id: int, message_id: int) -> bool:
    """Remember the post's message; returns whether the notice asked to be pinned."""
    post = await notice_store.get_post(session, post_id)
    if post is None:
        return False
    post.message_id = message_id
    notice = await notice_store.get_notice(session, post.notice_id)
    return notice is not None and notice.pin


async def record_shown(session: AsyncSession, post_id: int, acked: int) -> None:
    post = await notice_store.get_post(session, post_id)
    if post is not None:
        post.shown_acks = acked


async def status_of(session: AsyncSession, post_id: int, chat_pk: int) -> PostStatus:
    found = await post_for(session, post_id)
    if found is None or found[0].chat_id != chat_pk:
        raise DomainError("errors.button_expired")
    post, notice, _ = found
    acked = await notice_store.acked_user_ids(session, post_id)
    roster = await roster_service.roster_of(session, chat_pk)
    members = [entry for entry in roster.entries if entry.section != "left"]
    confirmed = [entry for entry in roster.entries if entry.user_id in acked]
    unconfirmed = [entry for entry in members if entry.user_id not in acked]
    return PostStatus(post, notice, confirmed, unconfirmed)


async def nudge(
    session: AsyncSession, post_id: int, chat_pk: int, actor_id: int, settings: GroupSettings, now: datetime
) -> NudgeResult:
    """Remind only those who have not confirmed: mentions in the group, and a private message to those
    who started the bot. At most once per NUDGE_INTERVAL per notice; in quiet hours it waits for their end."""
    status = await status_of(session, post_id, chat_pk)
    post = status.post
    if post.message_id is None:
        raise DomainError("notices.not_posted_yet")
    if not status.unconfirmed:
        raise DomainError("notices.all_confirmed")
    if post.last_nudge_at is not None and now - post.last_nudge_at < NUDGE_INTERVAL:
        wait = NUDGE_INTERVAL - (now - post.last_nudge_at)
        raise DomainError("notices.nudge_too_soon", minutes=max(1, round(wait.total_seconds() / 60)))
    post.nudges += 1
    post.last_nudge_at = now
    deferred = chat_service.quiet_hours_end(settings, now)
    round_key = f"nudge:{post.id}:{post.nudges}"
    targets = status.unconfirmed
    planned = [
        Planned(
            key=f"{round_key}:group:{start}",
            kind="nudge_group",
            args={
                "post_id": post.id,
                "user_ids": [entry.user_id for entry in targets[start : start + MENTIONS_PER_MESSAGE]],
            },
            chat_pk=chat_pk,
            not_before=deferred,
        )
        for start in range(0, len(targets), MENTIONS_PER_MESSAGE)
    ]
    reachable = [entry for entry in targets if entry.started_bot]
    planned += [
        Planned(
            key=f"{round_key}:user:{entry.user_id}",
            kind="nudge_private",
            args={"post_id": post.id},
            chat_pk=chat_pk,
            user_id=entry.user_id,
            not_before=deferred,
        )
        for entry in reachable
    ]
    await outbox_service.plan(session, planned, now)
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="notice_nudge", detail=str(post.notice_id)))
    await session.flush()
    return NudgeResult(mentioned=len(targets), private=len(reachable), at=deferred)


async def recent_in_chat(
    session: AsyncSession, chat_pk: int, limit: int = 10
) -> list[tuple[NoticePost, Notice, int, int]]:
    """The group's latest notices, each with (confirmations, audience)."""
    rows = await notice_store.recent_posts_in_chat(session, chat_pk, limit)
    figures = await notice_store.ack_counts(session, [post.id for post, _ in rows])
    return [(post, notice, *figures.get(post.id, (0, 0))) for post, notice in rows]


async def stale_counts(session: AsyncSession, now: datetime) -> list[int]:
    return await notice_store.posts_with_stale_counts(session, now - timedelta(days=30))


# ---------------------------------------------------------------------------------------- broadcast


async def broadcast_units(session: AsyncSession, user_id: int, superusers: frozenset[int]) -> list[int]:
    """The units whose deputies may broadcast down the tree: where the user holds a role (all roots for
    a superuser)."""
    if user_id in superusers:
        return [unit.id for unit in await org_store.all_units(session) if unit.parent_id is None]
    return await org_store.units_with_role(session, user_id, BROADCAST_ROLES)


async def broadcast_groups(session: AsyncSession, unit_id: int) -> list[Chat]:
    """Every active group bound to the unit or to a unit below it."""
    units = [unit.id for unit, _ in await org_store.descendants(session, [unit_id])]
    bound = await org_store.bound_chats(session, units)
    return sorted((chat for chats in bound.values() for chat in chats), key=lambda chat: chat.id)


async def _require_broadcaster(session: AsyncSession, unit_id: int, user_id: int, superusers: frozenset[int]) -> None:
    if user_id in superusers:
        return
    roles = await org_store.roles_on_units_above(session, unit_id, user_id)
    if not any(role in BROADCAST_ROLES for _, role, _ in roles):
        raise DomainError("broadcast.not_your_unit")


async def broadcast(
    session: AsyncSession,
    notice_id: int,
    actor_id: int,
    unit_id: int,
    superusers: frozenset[int],
    panel: tuple[int, int],
    now: datetime,
) -> tuple[Notice, int]:
    """Send a draft to every active group below the unit; ``panel`` is the message that reports progress."""
    notice = await _draft(session, notice_id, actor_id)
    await _require_broadcaster(session, unit_id, actor_id, superusers)
    chats = await broadcast_groups(session, unit_id)
    if not chats:
        raise DomainError("broadcast.no_groups")
    notice.unit_id = unit_id
    notice.panel_chat_id, notice.panel_message_id = panel
    await _publish_to(session, notice, [chat.id for chat in chats], now)
    session.add(
        AuditLog(actor_id=actor_id, action="broadcast", detail=f"notice={notice.id} unit={unit_id} groups={len(chats)}")
    )
    await session.flush()
    return notice, len(chats)


async def broadcast_progress(session: AsyncSession, notice_id: int) -> outbox_service.Progress:
    return await outbox_service.progress(session, broadcast_key_prefix(notice_id))


async def finish_broadcast(session: AsyncSession, notice_id: int, now: datetime) -> bool:
    """Mark a broadcast whose every post is sent or given up as finished; True the first time only."""
    notice = await notice_store.get_notice(session, notice_id)
    if notice is None or notice.finished_at is not None:
        return False
    if (await broadcast_progress(session, notice_id)).remaining:
        return False
    notice.finished_at = now
    recipient = notice.panel_chat_id
    if recipient is not None:
        chat = await chat_service.get_chat(session, recipient) if recipient < 0 else None
        await outbox_service.plan(
            session,
            [
                Planned(
                    key=f"broadcast-summary:{notice_id}",
                    kind="broadcast_summary",
                    args={"notice_id": notice_id},
                    chat_pk=chat.id if chat is not None else None,
                    user_id=None if chat is not None else recipient,
                )
            ],
            now,
        )
    await session.flush()
    return True


async def unfinished_broadcasts(session: AsyncSession) -> list[int]:
    return await notice_store.unfinished_broadcasts(session)


async def broadcast_report(session: AsyncSession, notice_id: int) -> list[GroupReport]:
    posts = await notice_store.posts_of(session, notice_id)
    figures = await notice_store.ack_counts(session, [post.id for post, _ in posts])
    return [GroupReport(chat, post.message_id is not None, *figures.get(post.id, (0, 0))) for post, chat in posts]


async def acknowledgements_of(session: AsyncSession, user_id: int) -> list[dict]:
    """For /mydata: the notices this member confirmed."""
    return [
        {"notice": title_of(notice.text), "group": chat.title, "at": ack.acked_at.isoformat()}
        for ack, notice, chat in await notice_store.acks_of_user(session, user_id)
    ]
