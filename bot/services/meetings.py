"""Meetings (三会一课, 主题党日, 组织生活会): drafts (one line or guided), the group post with 参加 / 请假 /
待定, leave with a reason and the committee's decision, edits and cancellation that tell everyone who
answered, and reminders before the start to the group and to those who have not answered.

A meeting's timed steps are one-off schedules (``ref`` "meeting:<id>"): each reminder, opening sign-in
at the start and closing it at the end. They fire through the scheduler and plan their messages in the
outbox, so none is lost or sent twice across restarts; a moved or cancelled meeting drops them.
Sign-in, the summary and make-up study are in ``bot.services.attendance``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import chats as chat_service
from bot.services import outbox as outbox_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services import roster as roster_service
from bot.services import schedules as schedule_service
from bot.services import timephrase
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.outbox import Planned
from bot.services.roster import RosterEntry
from bot.services.text import is_blank
from storage import meetings as meeting_store
from storage.models import AuditLog, Chat, Meeting, MeetingAnswer, Schedule

KINDS = ("general", "committee", "group", "lecture", "theme_day", "life", "other")
# What members type for a type, in either language (compared without case and spaces).
KIND_NAMES = {
    "支部党员大会": "general",
    "党员大会": "general",
    "general": "general",
    "generalmeeting": "general",
    "支部委员会": "committee",
    "支委会": "committee",
    "委员会": "committee",
    "committee": "committee",
    "党小组会": "group",
    "党小组": "group",
    "小组会": "group",
    "group": "group",
    "党课": "lecture",
    "lecture": "lecture",
    "partylecture": "lecture",
    "主题党日": "theme_day",
    "党日": "theme_day",
    "themeday": "theme_day",
    "theme_day": "theme_day",
    "theme": "theme_day",
    "组织生活会": "life",
    "生活会": "life",
    "life": "life",
    "其他": "other",
    "其它": "other",
    "other": "other",
}
ANSWERS = ("yes", "leave", "maybe")
CHECKIN_MODES = ("both", "button", "code")
GUIDED_STEPS = ("title", "time", "place", "agenda")
EDITABLE = GUIDED_STEPS
NO_AGENDA = frozenset({"无", "没有", "跳过", "-", "none", "skip", "no"})
DEFAULT_DURATION = timedelta(hours=2)
DURATIONS = (60, 90, 120, 180, 240)  # minutes a meeting may last: sign-in closes at its end
LATE_AFTER = (5, 10, 15, 30)  # minutes after the start from which a sign-in counts as late
DEFAULT_REMINDERS = (1440, 60)  # minutes before the start
MAX_REMINDERS = 3
MIN_REMINDER, MAX_REMINDER = 5, 7 * 1440
MAX_AHEAD = timedelta(days=366)
TITLE_LENGTH, PLACE_LENGTH, AGENDA_LENGTH, REASON_LENGTH = 60, 200, 1500, 200
LEAVE_REVIEWERS = 3
DRAFT_LIFETIME = timedelta(days=1)

REMINDER, OPEN, CLOSE = "meeting_reminder", "meeting_open", "meeting_close"


@dataclass(frozen=True)
class Details:
    kind: str
    title: str
    starts_at: datetime
    place: str
    agenda: str = ""


@dataclass(frozen=True)
class Counts:
    yes: int
    leave: int
    maybe: int

    def key(self) -> str:
        return f"{self.yes}/{self.leave}/{self.maybe}"


@dataclass(frozen=True)
class AnswerResult:
    changed: bool
    answer: str
    counts: Counts


# ------------------------------------------------------------------------------------------ details


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def kind_of(text: str) -> str:
    kind = KIND_NAMES.get(_compact(text))
    if kind is None:
        raise DomainError("meetings.unknown_kind", value=text.strip()[:20])
    return kind


def _bounded(text: str, limit: int, empty_key: str, field: str) -> str:
    text = (text or "").strip()
    if is_blank(text):
        raise DomainError(empty_key)
    if len(text) > limit:
        raise DomainError("meetings.too_long", field=field, limit=limit, length=len(text))
    return text


def validate_title(text: str) -> str:
    return _bounded(text, TITLE_LENGTH, "meetings.title_empty", "title")


def validate_place(text: str) -> str:
    return _bounded(text, PLACE_LENGTH, "meetings.place_empty", "place")


def validate_agenda(text: str) -> str:
    text = (text or "").strip()
    if _compact(text) in NO_AGENDA:
        return ""
    if len(text) > AGENDA_LENGTH:
        raise DomainError("meetings.too_long", field="agenda", limit=AGENDA_LENGTH, length=len(text))
    return text


def parse_start(phrase: str, zone: ZoneInfo, now: datetime) -> datetime:
    """When a meeting starts: a one-off phrase ("周五 19:30", "12月5日下午3点") in the group's zone."""
    return timephrase.moment_of(phrase, now=now, zone=zone, within=MAX_AHEAD, errors="meetings")


def parse_one_line(args: str, zone: ZoneInfo, now: datetime) -> Details:
    """``类型 | 标题 | 时间 | 地点或链接 [| 议程]``."""
    parts = [part.strip() for part in args.split("|")]
    if len(parts) < 4:
        raise DomainError("meetings.usage")
    kind, title, phrase, place = parts[:4]
    agenda = "|".join(parts[4:])
    return Details(
        kind=kind_of(kind),
        title=validate_title(title),
        starts_at=parse_start(phrase, zone, now),
        place=validate_place(place),
        agenda=validate_agenda(agenda),
    )


# ------------------------------------------------------------------------------------------ drafts


async def create_draft(session: AsyncSession, chat_pk: int, author_id: int, details: Details, now: datetime) -> Meeting:
    meeting = Meeting(
        chat_id=chat_pk,
        kind=details.kind,
        title=details.title,
        starts_at=details.starts_at,
        ends_at=details.starts_at + DEFAULT_DURATION,
        place=details.place,
        agenda=details.agenda,
        status="draft",
        created_by=author_id,
        created_at=now,
        updated_at=now,
    )
    session.add(meeting)
    await session.flush()
    return meeting


async def start_guided(session: AsyncSession, chat_pk: int, author_id: int, kind: str, now: datetime) -> Meeting:
    """A draft whose type was chosen with a button; its details come next, one reply each."""
    if kind not in KINDS:
        raise DomainError("errors.button_expired")
    meeting = Meeting(
        chat_id=chat_pk, kind=kind, status="draft", step=GUIDED_STEPS[0], created_by=author_id, created_at=now
    )
    session.add(meeting)
    await session.flush()
    return meeting


async def fill_guided(
    session: AsyncSession, meeting_id: int, chat_pk: int, step: str, text: str, zone: ZoneInfo, now: datetime
) -> Meeting:
    """The answer to a guided draft's question; the draft then asks the next (``step``), or none."""
    meeting = await _in_chat(session, meeting_id, chat_pk)
    if meeting.status != "draft" or meeting.step != step:
        raise DomainError("meetings.step_done")
    _apply(meeting, step, text, zone, now)
    following = GUIDED_STEPS.index(step) + 1
    meeting.step = GUIDED_STEPS[following] if following < len(GUIDED_STEPS) else None
    meeting.updated_at = now
    await session.flush()
    return meeting


def _apply(meeting: Meeting, field: str, text: str, zone: ZoneInfo, now: datetime) -> None:
    if field == "title":
        meeting.title = validate_title(text)
    elif field == "time":
        starts_at = parse_start(text, zone, now)
        meeting.starts_at, meeting.ends_at = starts_at, starts_at + DEFAULT_DURATION
    elif field == "place":
        meeting.place = validate_place(text)
    elif field == "agenda":
        meeting.agenda = validate_agenda(text)
    else:
        raise DomainError("errors.button_expired")


async def next_checkin_mode(session: AsyncSession, meeting_id: int, chat_pk: int) -> Meeting:
    """Button + code → button → code → …, until sign-in opens."""
    meeting = await _in_chat(session, meeting_id, chat_pk)
    if meeting.status not in ("draft", "scheduled") or meeting.checkin_opened_at:
        raise DomainError("errors.button_expired")
    meeting.checkin_mode = CHECKIN_MODES[(CHECKIN_MODES.index(meeting.checkin_mode) + 1) % len(CHECKIN_MODES)]
    await session.flush()
    return meeting


def _next_in(options: tuple[int, ...], current: int) -> int:
    return options[(options.index(current) + 1) % len(options)] if current in options else options[0]


async def cycle_timing(session: AsyncSession, meeting_id: int, chat_pk: int, what: str) -> Meeting:
    """A draft's length (when sign-in closes) or its late mark, stepped to the next offered value."""
    meeting = await _in_chat(session, meeting_id, chat_pk)
    if meeting.status != "draft" or meeting.starts_at is None:
        raise DomainError("meetings.already_published")
    if what == "duration":
        minutes = int((meeting.ends_at - meeting.starts_at).total_seconds() // 60)
        meeting.ends_at = meeting.starts_at + timedelta(minutes=_next_in(DURATIONS, minutes))
    elif what == "late":
        meeting.late_minutes = _next_in(LATE_AFTER, meeting.late_minutes)
    else:
        raise DomainError("errors.button_expired")
    await session.flush()
    return meeting


async def discard(session: AsyncSession, meeting_id: int, chat_pk: int) -> None:
    meeting = await _in_chat(session, meeting_id, chat_pk)
    if meeting.status != "draft":
        raise DomainError("meetings.already_published")
    await session.delete(meeting)
    await session.flush()


async def forget_stale_drafts(session: AsyncSession, now: datetime) -> int:
    return await meeting_store.delete_drafts_before(session, now - DRAFT_LIFETIME)


async def _in_chat(session: AsyncSession, meeting_id: int, chat_pk: int) -> Meeting:
    """The group's own meeting (locked for the transaction on PostgreSQL); anything else is a stale button.
    Its timed steps are locked first, in the order a firing takes them (step, then meeting), so that a
    change and a firing wait for each other instead of deadlocking."""
    await schedule_service.lock_all(session, ref_of(meeting_id))
    meeting = await meeting_store.get(session, meeting_id, lock=True)
    if meeting is None or meeting.chat_id != chat_pk:
        raise DomainError("errors.button_expired")
    return meeting


async def get(session: AsyncSession, meeting_id: int) -> Meeting | None:
    return await meeting_store.get(session, meeting_id)


async def visible_to(session: AsyncSession, meeting_id: int, user_id: int, chat_pk: int | None) -> Meeting:
    """A published meeting as a member sees it: pressed in its own group, or in private by one of its
    group's members."""
    meeting = await meeting_store.get(session, meeting_id)
    if meeting is None or meeting.status == "draft" or (chat_pk is not None and meeting.chat_id != chat_pk):
        raise DomainError("errors.button_expired")
    if chat_pk is None and not await roster_service.is_member(session, meeting.chat_id, user_id):
        raise DomainError("meetings.not_member")
    return meeting


async def get_in_chat(session: AsyncSession, meeting_id: int, chat_pk: int) -> Meeting:
    return await _in_chat(session, meeting_id, chat_pk)


# ------------------------------------------------------------------------------------------ publishing


def ref_of(meeting_id: int) -> str:
    return f"meeting:{meeting_id}"


def key_prefix(meeting_id: int) -> str:
    return f"meeting:{meeting_id}:"


async def publish(
    session: AsyncSession, meeting_id: int, chat_pk: int, actor_id: int, settings: GroupSettings, now: datetime
) -> Meeting:
    """Post a finished draft to its group and set its reminders and sign-in on the timetable."""
    meeting = await _in_chat(session, meeting_id, chat_pk)
    if meeting.status != "draft":
        raise DomainError("meetings.already_published")
    if meeting.step is not None or meeting.starts_at is None:
        raise DomainError("meetings.not_finished")
    if meeting.starts_at <= now:
        raise DomainError("meetings.time_past", value=_local(meeting.starts_at, settings.zone))
    chat = await chat_service.get_chat_by_pk(session, chat_pk)
    if chat is None or not chat.is_active:
        raise DomainError("errors.chat_gone")
    meeting.status, meeting.updated_at = "scheduled", now
    meeting.checkin_code = await _new_code(session)
    await outbox_service.plan(
        session,
        [
            Planned(
                key=key_prefix(meeting.id) + "post",
                kind="meeting_post",
                args={"meeting_id": meeting.id},
                chat_pk=chat_pk,
            )
        ],
        now,
    )
    await _plan_steps(session, meeting, reminders_of(chat), settings.zone, now)
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="meeting_published", detail=str(meeting.id)))
    await session.flush()
    return meeting


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


async def _new_code(session: AsyncSession) -> str:
    """A four-digit sign-in code, different from those of the other meetings still to be held."""
    taken = await meeting_store.codes_in_use(session)
    for _ in range(50):
        code = f"{secrets.randbelow(9000) + 1000}"
        if code not in taken:
            return code
    return f"{secrets.randbelow(900000) + 100000}"  # thousands of meetings at once: a longer code


async def _plan_steps(
    session: AsyncSession, meeting: Meeting, reminders: tuple[int, ...], zone: ZoneInfo, now: datetime
) -> None:
    ref = ref_of(meeting.id)
    for minutes in reminders:
        await schedule_service.plan_once(
            session, meeting.chat_id, REMINDER, ref, meeting.starts_at - timedelta(minutes=minutes), zone, now
        )
    await schedule_service.plan_once(session, meeting.chat_id, OPEN, ref, meeting.starts_at, zone, now)
    await schedule_service.plan_once(session, meeting.chat_id, CLOSE, ref, meeting.ends_at, zone, now)


async def record_posted(session: AsyncSession, meeting_id: int, message_id: int) -> None:
    meeting = await meeting_store.get(session, meeting_id)
    if meeting is not None:
        meeting.message_id = message_id


async def record_shown(session: AsyncSession, meeting_id: int, shown: str) -> None:
    meeting = await meeting_store.get(session, meeting_id)
    if meeting is not None:
        meeting.shown_counts = shown


async def stale_counts(session: AsyncSession) -> list[int]:
    """Open meetings whose messages show counts that are no longer true (an edit lost to a restart). A
    message never edited shows what it was sent with: nothing answered or signed yet."""
    stale = []
    for meeting_id, (shown, figures, signed) in (await meeting_store.shown_counts_of_live(session)).items():
        now_true = Counts(figures.get("yes", 0), figures.get("leave", 0), figures.get("maybe", 0))
        if (shown or "0/0/0/0") != f"{now_true.key()}/{signed}":
            stale.append(meeting_id)
    return stale


# ------------------------------------------------------------------------------------------ answers


async def counts(session: AsyncSession, meeting_id: int) -> Counts:
    figures = await meeting_store.answer_counts(session, meeting_id)
    return Counts(figures.get("yes", 0), figures.get("leave", 0), figures.get("maybe", 0))


async def _scheduled(session: AsyncSession, meeting_id: int) -> Meeting:
    # Locked (PostgreSQL): two taps of one member handled by two workers must not both insert.
    meeting = await meeting_store.get(session, meeting_id, lock=True)
    if meeting is None or meeting.status == "draft":
        raise DomainError("errors.button_expired")
    if meeting.status == "cancelled":
        raise DomainError("meetings.cancelled")
    return meeting


async def answer(
    session: AsyncSession, meeting_id: int, user_id: int, choice: str, chat_pk: int | None, now: datetime
) -> AnswerResult:
    """A member's 参加 / 请假 / 待定 (``chat_pk``: the group the button was pressed in; None in private,
    where the reminder carries the buttons, and then the member must belong to the meeting's group).
    A leave waits for its reason, asked in private."""
    meeting = await _scheduled(session, meeting_id)
    if choice not in ANSWERS or (chat_pk is not None and meeting.chat_id != chat_pk):
        raise DomainError("errors.button_expired")
    if chat_pk is None and not await roster_service.is_member(session, meeting.chat_id, user_id):
        raise DomainError("meetings.not_member")
    if meeting.status != "scheduled" or now >= meeting.starts_at:
        raise DomainError("meetings.started")
    row = await meeting_store.answer_of(session, meeting_id, user_id)
    unchanged = row is not None and row.answer == choice and not (choice == "leave" and row.leave_status == "awaiting")
    if not unchanged and row is not None and row.leave_status == "awaiting":
        # The reason asked for in private is not wanted any more: the member's next message is their own.
        await people_service.drop_input(session, user_id, "meeting_leave", str(meeting_id))
    if not unchanged:
        if row is None:
            row = MeetingAnswer(meeting_id=meeting_id, user_id=user_id, answer=choice)
            session.add(row)
        row.answer, row.answered_at, row.reviewed_by = choice, now, None
        row.reason = None
        row.leave_status = "awaiting" if choice == "leave" else None
        await session.flush()
    return AnswerResult(not unchanged, choice, await counts(session, meeting_id))


async def answer_of(session: AsyncSession, meeting_id: int, user_id: int) -> MeetingAnswer | None:
    return await meeting_store.answer_of(session, meeting_id, user_id)


async def awaiting_reason(session: AsyncSession, meeting_id: int, user_id: int) -> bool:
    row = await meeting_store.answer_of(session, meeting_id, user_id)
    return row is not None and row.answer == "leave" and row.leave_status == "awaiting"


async def give_leave_reason(
    session: AsyncSession, meeting_id: int, user_id: int, reason: str, now: datetime
) -> Meeting:
    """The reason for a leave, written in private; the committee is asked to decide."""
    reason = _bounded(reason, REASON_LENGTH, "meetings.reason_empty", "reason")
    meeting = await _scheduled(session, meeting_id)
    row = await meeting_store.answer_of(session, meeting_id, user_id)
    if row is None or row.answer != "leave" or row.leave_status not in ("awaiting", "pending"):
        raise DomainError("meetings.leave_not_asked")
    row.reason, row.leave_status = reason, "pending"
    stamp = int(now.timestamp())
    reviewers = await _leave_reviewers(session, meeting, user_id)
    await outbox_service.plan(
        session,
        [
            Planned(
                key=key_prefix(meeting_id) + f"leave:{user_id}:{stamp}:to:{reviewer}",
                kind="meeting_leave_review",
                args={"meeting_id": meeting_id, "user_id": user_id},
                chat_pk=meeting.chat_id,
                user_id=reviewer,
            )
            for reviewer in reviewers
        ],
        now,
    )
    await session.flush()
    return meeting


async def _leave_reviewers(session: AsyncSession, meeting: Meeting, requester: int) -> list[int]:
    """Who is asked to approve a leave: the meeting's author if the bot can reach them, else a few of
    the committee who can be reached. (All of the committee see leaves in the meeting's name list.)"""
    committee = await role_service.committee_user_ids(session, meeting.chat_id)
    reachable = {
        user.id for user in await people_service.reachable_users(session, committee | {meeting.created_by or 0})
    }
    reachable.discard(requester)  # nobody approves their own leave
    if meeting.created_by in reachable:
        return [meeting.created_by]
    return sorted(reachable & committee)[:LEAVE_REVIEWERS]


async def review_leave(
    session: AsyncSession, meeting_id: int, user_id: int, reviewer_id: int, approve: bool, now: datetime
) -> MeetingAnswer:
    """The committee's decision on a leave (permission is the caller's to check); the member is told."""
    if reviewer_id == user_id:
        raise DomainError("meetings.leave_self")
    meeting = await _scheduled(session, meeting_id)
    row = await meeting_store.answer_of(session, meeting_id, user_id, lock=True)  # two reviewers at once
    if row is None or row.answer != "leave" or row.leave_status is None:
        raise DomainError("meetings.leave_withdrawn")
    if row.leave_status in ("approved", "rejected"):
        raise DomainError("meetings.leave_decided")
    row.leave_status, row.reviewed_by = ("approved" if approve else "rejected"), reviewer_id
    await outbox_service.plan(
        session,
        [
            Planned(
                key=key_prefix(meeting_id) + f"verdict:{user_id}:{int(row.answered_at.timestamp())}",
                kind="meeting_leave_verdict",
                args={"meeting_id": meeting_id, "approved": approve},
                chat_pk=meeting.chat_id,
                user_id=user_id,
            )
        ],
        now,
    )
    session.add(
        AuditLog(
            chat_id=meeting.chat_id,
            actor_id=reviewer_id,
            action="meeting_leave_approved" if approve else "meeting_leave_rejected",
            detail=f"{meeting_id} {user_id}",
        )
    )
    await session.flush()
    return row


@dataclass(frozen=True)
class Answers:
    meeting: Meeting
    yes: list[RosterEntry]
    leave: list[tuple[RosterEntry, MeetingAnswer]]
    maybe: list[RosterEntry]
    silent: list[RosterEntry]  # expected, and no answer yet


async def expected(session: AsyncSession, meeting: Meeting) -> list[RosterEntry]:
    """Who should attend: the group's members (not those declared 群众, nor those who joined after the
    meeting); for a committee meeting, its committee."""
    roster = await roster_service.roster_of(session, meeting.chat_id)
    members = [
        entry
        for entry in roster.entries
        if entry.section != "left"
        and entry.member_type != "masses"
        and (entry.first_seen is None or meeting.ends_at is None or entry.first_seen <= meeting.ends_at)
    ]
    if meeting.kind == "committee":
        committee = await role_service.committee_user_ids(session, meeting.chat_id)
        members = [entry for entry in members if entry.user_id in committee]
    return members


async def names_of(session: AsyncSession, chat_pk: int) -> dict[int, RosterEntry]:
    return {entry.user_id: entry for entry in (await roster_service.roster_of(session, chat_pk)).entries}


def entry_of(people: dict[int, RosterEntry], user_id: int) -> RosterEntry:
    """A roster entry, or a bare one for someone the roster no longer has."""
    return people.get(user_id) or RosterEntry(user_id, str(user_id), None, "left", None, None, False)


async def answers(session: AsyncSession, meeting_id: int, chat_pk: int | None = None) -> Answers:
    meeting = await meeting_store.get(session, meeting_id)
    if meeting is None or meeting.status == "draft" or (chat_pk is not None and meeting.chat_id != chat_pk):
        raise DomainError("errors.button_expired")
    people = await names_of(session, meeting.chat_id)
    rows = {row.user_id: row for row in await meeting_store.answers_of(session, meeting_id)}

    def entry(user_id: int) -> RosterEntry:
        return entry_of(people, user_id)

    yes = [entry(uid) for uid, row in rows.items() if row.answer == "yes"]
    leave = [(entry(uid), row) for uid, row in rows.items() if row.answer == "leave"]
    maybe = [entry(uid) for uid, row in rows.items() if row.answer == "maybe"]
    silent = [person for person in await expected(session, meeting) if person.user_id not in rows]
    return Answers(meeting, yes, leave, maybe, silent)


# ------------------------------------------------------------------------------------------ changes


async def edit(
    session: AsyncSession,
    meeting_id: int,
    chat_pk: int,
    actor_id: int,
    field: str,
    text: str,
    settings: GroupSettings,
    now: datetime,
) -> Meeting:
    """Change one detail of a published meeting; everyone who answered is told, and a new time moves
    the reminders and the sign-in."""
    meeting = await _in_chat(session, meeting_id, chat_pk)
    if meeting.status != "scheduled":
        raise DomainError("meetings.not_editable")
    if field == "time" and (meeting.checkin_opened_at is not None or now >= meeting.starts_at):
        raise DomainError("meetings.started")
    _apply(meeting, field, text, settings.zone, now)
    meeting.version += 1
    meeting.updated_at = now
    if field == "time":
        await schedule_service.drop_all(session, ref_of(meeting.id), now)
        chat = await chat_service.get_chat_by_pk(session, chat_pk)
        await _plan_steps(session, meeting, reminders_of(chat), settings.zone, now)
    await _tell_everyone_who_answered(session, meeting, f"v{meeting.version}", "meeting_changed", {"field": field}, now)
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="meeting_edited", detail=f"{meeting.id} {field}"))
    await session.flush()
    return meeting


async def cancel(session: AsyncSession, meeting_id: int, chat_pk: int, actor_id: int, now: datetime) -> Meeting:
    """Call a meeting off: its reminders and sign-in stop, and everyone who answered is told."""
    meeting = await _in_chat(session, meeting_id, chat_pk)
    if meeting.status != "scheduled":
        raise DomainError("meetings.not_editable")
    meeting.status, meeting.updated_at = "cancelled", now
    meeting.version += 1
    await schedule_service.drop_all(session, ref_of(meeting.id), now)
    await outbox_service.cancel_all(session, key_prefix(meeting.id))  # a reminder or review still waiting
    await _tell_everyone_who_answered(session, meeting, "cancelled", "meeting_cancelled", {}, now)
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="meeting_cancelled", detail=str(meeting.id)))
    await session.flush()
    return meeting


async def _tell_everyone_who_answered(
    session: AsyncSession, meeting: Meeting, tag: str, kind: str, args: dict, now: datetime
) -> None:
    """A note in the group under the post, and a private message to each member who answered."""
    answered = [row.user_id for row in await meeting_store.answers_of(session, meeting.id)]
    reachable = sorted(user.id for user in await people_service.reachable_users(session, answered))
    base = {"meeting_id": meeting.id, **args}
    planned = [Planned(key=key_prefix(meeting.id) + f"{tag}:group", kind=kind, args=base, chat_pk=meeting.chat_id)]
    planned += [
        Planned(
            key=key_prefix(meeting.id) + f"{tag}:user:{user_id}",
            kind=kind,
            args={**base, "private": True},
            chat_pk=meeting.chat_id,
            user_id=user_id,
        )
        for user_id in reachable
    ]
    await outbox_service.plan(session, planned, now)


# ------------------------------------------------------------------------------------------ listing


async def listed(session: AsyncSession, chat_pk: int, now: datetime) -> tuple[list[Meeting], list[Meeting]]:
    """Upcoming meetings (soonest first) and those of the last 90 days that are over (latest first)."""
    upcoming = await meeting_store.upcoming(session, chat_pk, now, 10)
    recent = await meeting_store.recent(session, chat_pk, now, now - timedelta(days=90), 5)
    return upcoming, recent


# ------------------------------------------------------------------------------------------ reminders


def reminders_of(chat: Chat | None) -> tuple[int, ...]:
    """The group's reminder offsets in minutes, largest first."""
    raw = chat.meeting_reminders if chat is not None else None
    if raw is None:
        return DEFAULT_REMINDERS
    return tuple(int(part) for part in raw.split(",") if part)


_OFFSET = re.compile(r"(\d+)\s*(d|day|days|天|h|hr|hour|hours|小时|个小时|时|m|min|mins|minute|minutes|分钟|分)", re.I)
_UNIT_MINUTES = {"d": 1440, "天": 1440, "h": 60, "小时": 60, "个小时": 60, "时": 60, "m": 1, "分钟": 1, "分": 1}


def parse_reminders(text: str) -> tuple[int, ...]:
    """ "1d,1h" / "1天 1小时" / "2h, 30m" / "off" → minutes before the start, largest first."""
    text = (text or "").strip().lower()
    if text in ("off", "关", "关闭", "无", "none"):
        return ()
    pieces = [piece for piece in re.split(r"[,，、;；\s]+", text) if piece]
    minutes = set()
    for piece in pieces:
        found = _OFFSET.fullmatch(piece)
        if found is None:
            raise DomainError("meetings.bad_reminders", value=piece[:20])
        unit = found.group(2)
        unit = unit[0] if unit[0] in "dhm" else unit
        value = int(found.group(1)) * _UNIT_MINUTES[unit]
        if not MIN_REMINDER <= value <= MAX_REMINDER:
            raise DomainError("meetings.bad_reminders", value=piece[:20])
        minutes.add(value)
    if not minutes or len(minutes) > MAX_REMINDERS:
        raise DomainError("meetings.bad_reminders", value=text[:20])
    return tuple(sorted(minutes, reverse=True))


async def set_reminders(session: AsyncSession, chat_pk: int, actor_id: int, minutes: tuple[int, ...]) -> Chat:
    """New offsets apply to meetings published from now on."""
    chat = await chat_service.get_chat_by_pk(session, chat_pk)
    if chat is None:
        raise DomainError("errors.chat_gone")
    chat.meeting_reminders = ",".join(str(value) for value in minutes)
    session.add(
        AuditLog(
            chat_id=chat_pk, actor_id=actor_id, action="settings", detail=f"meeting_reminders={chat.meeting_reminders}"
        )
    )
    await session.flush()
    return chat


@dataclass(frozen=True)
class Reminder:
    meeting: Meeting
    minutes: int  # before the start


async def meeting_of_schedule(session: AsyncSession, schedule: Schedule) -> Meeting | None:
    if not schedule.ref or not schedule.ref.startswith("meeting:"):
        return None
    return await meeting_store.get(session, int(schedule.ref.split(":", 1)[1]))


async def _plan_reminder(
    session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
) -> None:
    """A reminder in the group, and in private to the members who have not answered and can be reached.
    Quiet hours hold it back only when they end before the meeting starts."""
    meeting = await meeting_of_schedule(session, schedule)
    if meeting is None or meeting.status != "scheduled" or now >= meeting.starts_at:
        return
    quiet_end = chat_service.quiet_hours_end(settings, now)
    not_before = quiet_end if quiet_end is not None and quiet_end < meeting.starts_at else None
    key = schedule_service.firing_key(schedule.id, due_at)
    args = {"meeting_id": meeting.id}
    planned = [Planned(key=key, kind="meeting_reminder", args=args, chat_pk=meeting.chat_id, not_before=not_before)]
    state = await answers(session, meeting.id)
    planned += [
        Planned(
            key=f"{key}:user:{person.user_id}",
            kind="meeting_reminder_private",
            args=args,
            chat_pk=meeting.chat_id,
            user_id=person.user_id,
            not_before=not_before,
        )
        for person in state.silent
        if person.started_bot
    ]
    await outbox_service.plan(session, planned, now)


schedule_service.register_kind(REMINDER, _plan_reminder, grace=timedelta(hours=6), follows_zone=False)


async def of_user(session: AsyncSession, user_id: int) -> list[dict]:
    """For /mydata: the member's answers and sign-ins."""
    return [
        {
            "meeting": meeting.title,
            "starts_at": meeting.starts_at.isoformat() if meeting.starts_at else None,
            "answer": row.answer if row else None,
            "leave_reason": row.reason if row else None,
            "signed_in_at": signed.signed_at.isoformat() if signed else None,
            "late": signed.late if signed else None,
        }
        for meeting, row, signed in await meeting_store.of_user(session, user_id)
    ]
