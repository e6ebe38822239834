"""Attendance at meetings: sign-in (a button in the group, a code sent in private, or by proxy), late
marks, the summary (到会 / 迟到 / 请假 / 缺席), minutes, make-up study (补学) for those who missed it, and
the warning to the secretary when a required meeting has not been held this period.

Sign-in opens at the start (or earlier, when the committee opens it) and closes at the end; each member
signs in once, whatever way and however often they try.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import chats as chat_service
from bot.services import meetings as meeting_service
from bot.services import outbox as outbox_service
from bot.services import people as people_service
from bot.services import roles as role_service
from bot.services import roster as roster_service
from bot.services import schedules as schedule_service
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.outbox import Planned
from bot.services.roles import Role
from bot.services.roster import RosterEntry
from bot.services.timephrase import Rule
from storage import meetings as meeting_store
from storage.models import AuditLog, Chat, Meeting, MeetingAnswer, MeetingSignIn, Schedule

NOTE_LENGTH = 100
MINUTES_LENGTH, CAPTION_LENGTH = 3500, 1000
CODE_ATTEMPTS = 5  # wrong codes a member may send in CODE_WINDOW: a four-digit code must not be guessed
CODE_WINDOW = timedelta(minutes=10)
CODE_SEARCH = timedelta(days=7)  # meetings whose code a member may be sending: those around now


# ------------------------------------------------------------------------------------------ opening, closing


def key_prefix(meeting_id: int) -> str:
    return meeting_service.key_prefix(meeting_id)


async def open_checkin(session: AsyncSession, meeting: Meeting, now: datetime, actor_id: int | None = None) -> bool:
    """Open sign-in (at the start, or earlier by the committee): the "签到" message in the group and the
    code, privately, to the meeting's author and to whoever opened it. False when it was open already."""
    if meeting.status != "scheduled":
        raise DomainError("meetings.checkin_closed" if meeting.status == "closed" else "meetings.not_editable")
    if meeting.checkin_opened_at is not None:
        return False
    meeting.checkin_opened_at = now
    planned = [
        Planned(
            key=key_prefix(meeting.id) + "signin",
            kind="meeting_signin",
            args={"meeting_id": meeting.id},
            chat_pk=meeting.chat_id,
        )
    ]
    if meeting.checkin_mode != "button":
        wanted = {user_id for user_id in (meeting.created_by, actor_id) if user_id is not None}
        planned += [
            Planned(
                key=key_prefix(meeting.id) + f"code:{user.id}",
                kind="meeting_code",
                args={"meeting_id": meeting.id},
                chat_pk=meeting.chat_id,
                user_id=user.id,
            )
            for user in await people_service.reachable_users(session, wanted)
        ]
    await outbox_service.plan(session, planned, now)
    if actor_id is not None:
        session.add(
            AuditLog(
                chat_id=meeting.chat_id, actor_id=actor_id, action="meeting_checkin_opened", detail=str(meeting.id)
            )
        )
    await session.flush()
    return True


async def close_checkin(session: AsyncSession, meeting: Meeting, now: datetime, actor_id: int | None = None) -> Meeting:
    """Close sign-in and post the summary; those who missed the meeting get the minutes as 补学, now if
    they are attached already, or when they are."""
    if meeting.status != "scheduled":
        raise DomainError("meetings.checkin_closed" if meeting.status == "closed" else "meetings.not_editable")
    meeting.status, meeting.checkin_closed_at, meeting.updated_at = "closed", now, now
    await schedule_service.drop_all(session, meeting_service.ref_of(meeting.id), now)  # closed early: no reminders
    await outbox_service.plan(
        session,
        [
            Planned(
                key=key_prefix(meeting.id) + "summary",
                kind="meeting_summary",
                args={"meeting_id": meeting.id},
                chat_pk=meeting.chat_id,
            )
        ],
        now,
    )
    if meeting.minutes_kind is not None:
        await _assign_makeups(session, meeting, now)
    if actor_id is not None:
        session.add(
            AuditLog(
                chat_id=meeting.chat_id, actor_id=actor_id, action="meeting_checkin_closed", detail=str(meeting.id)
            )
        )
    await session.flush()
    return meeting


async def _plan_open(
    session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
) -> None:
    meeting = await meeting_service.meeting_of_schedule(session, schedule)
    if meeting is None or meeting.status != "scheduled" or meeting.checkin_opened_at is not None:
        return
    if meeting.ends_at is not None and now >= meeting.ends_at:  # after an outage: closing comes right after
        return
    await open_checkin(session, meeting, now)


async def _plan_close(
    session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
) -> None:
    meeting = await meeting_service.meeting_of_schedule(session, schedule)
    if meeting is not None and meeting.status == "scheduled":
        await close_checkin(session, meeting, now)


# Opening and closing sign-in change the meeting's state, so after an outage they still happen.
for step, planner in ((meeting_service.OPEN, _plan_open), (meeting_service.CLOSE, _plan_close)):
    schedule_service.register_kind(step, planner, grace=timedelta(days=30), follows_zone=False, changes_state=True)


async def open_now(session: AsyncSession, meeting_id: int, chat_pk: int, actor_id: int, now: datetime) -> Meeting:
    meeting = await meeting_service.get_in_chat(session, meeting_id, chat_pk)
    if not await open_checkin(session, meeting, now, actor_id):
        raise DomainError("meetings.checkin_already_open")
    return meeting


async def close_now(session: AsyncSession, meeting_id: int, chat_pk: int, actor_id: int, now: datetime) -> Meeting:
    meeting = await meeting_service.get_in_chat(session, meeting_id, chat_pk)
    return await close_checkin(session, meeting, now, actor_id)


# ------------------------------------------------------------------------------------------ signing in


@dataclass(frozen=True)
class SignInResult:
    meeting: Meeting
    new: bool
    late: bool
    signed_at: datetime  # when this member signed in (the first time)


def is_late(meeting: Meeting, moment: datetime) -> bool:
    return moment > meeting.starts_at + timedelta(minutes=meeting.late_minutes)


def _check_open(meeting: Meeting | None, method: str) -> Meeting:
    if meeting is None or meeting.status == "draft":
        raise DomainError("errors.button_expired")
    if meeting.status == "cancelled":
        raise DomainError("meetings.cancelled")
    if meeting.status == "closed" or meeting.checkin_closed_at is not None:
        raise DomainError("meetings.checkin_closed")
    if meeting.checkin_opened_at is None:
        raise DomainError("meetings.checkin_not_open")
    if method == "button" and meeting.checkin_mode == "code":
        raise DomainError("meetings.code_only")
    if method == "code" and meeting.checkin_mode == "button":
        raise DomainError("meetings.button_only")
    return meeting


async def _record(
    session: AsyncSession,
    meeting: Meeting,
    user_id: int,
    method: str,
    now: datetime,
    *,
    by: int | None = None,
    note: str | None = None,
) -> SignInResult:
    # The committee vouches for a proxy sign-in (someone in the room without a phone): not late.
    late = is_late(meeting, now) if method != "proxy" else False
    new = await meeting_store.add_sign_in(
        session,
        {
            "meeting_id": meeting.id,
            "user_id": user_id,
            "signed_at": now,
            "late": late,
            "method": method,
            "proxy_by": by,
            "note": note,
        },
    )
    if new:
        return SignInResult(meeting, True, late, now)
    earlier = await meeting_store.sign_in_of(session, meeting.id, user_id)
    return SignInResult(meeting, False, earlier.late, earlier.signed_at)


async def sign_in(session: AsyncSession, meeting_id: int, user_id: int, chat_pk: int, now: datetime) -> SignInResult:
    """The "签到" button in the group (pressing it there shows the member is in the group)."""
    meeting = _check_open(await meeting_store.get(session, meeting_id), "button")
    if meeting.chat_id != chat_pk:
        raise DomainError("errors.button_expired")
    return await _record(session, meeting, user_id, "button", now)


async def sign_in_by_code(session: AsyncSession, user_id: int, code: str, now: datetime) -> list[SignInResult]:
    """A code sent to the bot in private: signs the member in to the open meeting(s) of their groups
    that show this code. Wrong codes are counted, and after a few the member must wait."""
    since = now - CODE_WINDOW
    if await meeting_store.count_actions_since(session, user_id, "meeting_wrong_code", since) >= CODE_ATTEMPTS:
        raise DomainError("meetings.code_attempts", minutes=int(CODE_WINDOW.total_seconds() // 60))
    found = await meeting_store.with_code_for_member(session, code, user_id, now - CODE_SEARCH, now + CODE_SEARCH)
    if not found:
        session.add(AuditLog(actor_id=user_id, action="meeting_wrong_code", detail=code[:16], created_at=now))
        raise DomainError("meetings.wrong_code")
    results, refusal = [], None
    for meeting in found:
        try:
            _check_open(meeting, "code")
        except DomainError as error:
            refusal = refusal or error
            continue
        results.append(await _record(session, meeting, user_id, "code", now))
    if not results:
        raise refusal
    return results


async def proxy_sign_in(
    session: AsyncSession, meeting_id: int, chat_pk: int, actor_id: int, user_id: int, note: str, now: datetime
) -> SignInResult:
    """代签: the committee signs a member in, with a note saying why (permission is the caller's to check).
    Allowed from the opening on, also after the end (someone who came but could not sign in)."""
    note = (note or "").strip()
    if not note:
        raise DomainError("meetings.note_empty")
    if len(note) > NOTE_LENGTH:
        raise DomainError("meetings.too_long", field="note", limit=NOTE_LENGTH, length=len(note))
    meeting = await meeting_store.get(session, meeting_id)
    if meeting is None or meeting.chat_id != chat_pk or meeting.status == "draft":
        raise DomainError("errors.button_expired")
    if meeting.status == "cancelled":
        raise DomainError("meetings.cancelled")
    if meeting.checkin_opened_at is None and meeting.status != "closed":
        raise DomainError("meetings.checkin_not_open")
    if not await roster_service.is_member(session, chat_pk, user_id):
        raise DomainError("meetings.not_member_of_group")
    result = await _record(session, meeting, user_id, "proxy", now, by=actor_id, note=note)
    if result.new:
        await meeting_store.drop_unstudied_makeup(session, meeting_id, user_id)  # they were there after all
        session.add(
            AuditLog(
                chat_id=chat_pk, actor_id=actor_id, action="meeting_proxy_sign_in", detail=f"{meeting_id} {user_id}"
            )
        )
    return result


async def record_signin_posted(session: AsyncSession, meeting_id: int, message_id: int) -> None:
    meeting = await meeting_store.get(session, meeting_id)
    if meeting is not None:
        meeting.signin_message_id = message_id


async def signed_count(session: AsyncSession, meeting_id: int) -> int:
    return await meeting_store.count_sign_ins(session, meeting_id)


async def not_signed(session: AsyncSession, meeting_id: int, chat_pk: int) -> list[RosterEntry]:
    """The expected attendees who have not signed in: whom the committee may sign in by proxy."""
    meeting = await meeting_service.get_in_chat(session, meeting_id, chat_pk)
    signed = {row.user_id for row in await meeting_store.sign_ins_of(session, meeting_id)}
    return [person for person in await meeting_service.expected(session, meeting) if person.user_id not in signed]


# ------------------------------------------------------------------------------------------ the summary


@dataclass(frozen=True)
class Attendance:
    meeting: Meeting
    on_time: list[tuple[RosterEntry, MeetingSignIn]]
    late: list[tuple[RosterEntry, MeetingSignIn]]
    leave: list[tuple[RosterEntry, MeetingAnswer]]
    absent: list[RosterEntry]
    guests: list[tuple[RosterEntry, MeetingSignIn]]  # signed in without being expected

    @property
    def present(self) -> int:
        return len(self.on_time) + len(self.late)

    @property
    def expected(self) -> int:
        return self.present + len(self.leave) + len(self.absent)


def on_leave(row: MeetingAnswer | None) -> bool:
    """A leave counts once its reason is given, unless the committee rejected it."""
    return row is not None and row.answer == "leave" and row.leave_status in ("pending", "approved")


async def attendance(session: AsyncSession, meeting_id: int, chat_pk: int | None = None) -> Attendance:
    meeting = await meeting_store.get(session, meeting_id)
    if meeting is None or meeting.status == "draft" or (chat_pk is not None and meeting.chat_id != chat_pk):
        raise DomainError("errors.button_expired")
    people = await meeting_service.names_of(session, meeting.chat_id)

    def people_entry(user_id: int) -> RosterEntry:
        return meeting_service.entry_of(people, user_id)

    signed = {row.user_id: row for row in await meeting_store.sign_ins_of(session, meeting_id)}
    answers = {row.user_id: row for row in await meeting_store.answers_of(session, meeting_id)}

    expected = await meeting_service.expected(session, meeting)
    wanted = {person.user_id for person in expected}
    # Figures are of those expected; someone else who signed in (a member at a committee meeting) is a
    # guest, listed but not counted.
    on_time = [(people_entry(uid), row) for uid, row in signed.items() if not row.late and uid in wanted]
    late = [(people_entry(uid), row) for uid, row in signed.items() if row.late and uid in wanted]
    guests = [(people_entry(uid), row) for uid, row in signed.items() if uid not in wanted]
    missing = [person for person in expected if person.user_id not in signed]
    leave = [(person, answers[person.user_id]) for person in missing if on_leave(answers.get(person.user_id))]
    absent = [person for person in missing if not on_leave(answers.get(person.user_id))]
    return Attendance(meeting, on_time, late, leave, absent, guests)


# ------------------------------------------------------------------------------------------ minutes, 补学


@dataclass(frozen=True)
class MinutesResult:
    meeting: Meeting
    assigned: int  # make-up study given out now
    reached: int  # of those, sent privately


async def attach_minutes(
    session: AsyncSession,
    meeting_id: int,
    chat_pk: int,
    actor_id: int,
    kind: str,
    text: str,
    file_id: str | None,
    now: datetime,
) -> MinutesResult:
    """Minutes (text, or a document or photo with a caption). Once the meeting is over, those who missed
    it get them privately as 补学; replacing the minutes later does not send them again."""
    meeting = await meeting_service.get_in_chat(session, meeting_id, chat_pk)
    if meeting.status not in ("scheduled", "closed"):
        raise DomainError("meetings.not_editable")
    text = (text or "").strip()
    if kind == "text" and not text:
        raise DomainError("meetings.minutes_empty")
    if kind not in ("text", "document", "photo"):
        raise DomainError("meetings.minutes_kind")
    limit = MINUTES_LENGTH if kind == "text" else CAPTION_LENGTH
    if len(text) > limit:
        raise DomainError("meetings.too_long", field="minutes", limit=limit, length=len(text))
    meeting.minutes_kind, meeting.minutes_text, meeting.minutes_file_id = kind, text, file_id
    meeting.updated_at = now
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="meeting_minutes", detail=str(meeting.id)))
    assigned = reached = 0
    if meeting.status == "closed":
        assigned, reached = await _assign_makeups(session, meeting, now)
    await session.flush()
    return MinutesResult(meeting, assigned, reached)


async def _assign_makeups(session: AsyncSession, meeting: Meeting, now: datetime) -> tuple[int, int]:
    state = await attendance(session, meeting.id)
    missed = [(person, "leave") for person, _ in state.leave] + [(person, "absent") for person in state.absent]
    assigned, planned = 0, []
    for person, reason in missed:
        if not await meeting_store.add_makeup(session, meeting.id, person.user_id, reason, now):
            continue
        assigned += 1
        if person.started_bot:
            planned.append(
                Planned(
                    key=key_prefix(meeting.id) + f"makeup:{person.user_id}",
                    kind="meeting_makeup",
                    args={"meeting_id": meeting.id},
                    chat_pk=meeting.chat_id,
                    user_id=person.user_id,
                )
            )
    await outbox_service.plan(session, planned, now)
    return assigned, len(planned)


async def makeup_for(session: AsyncSession, meeting_id: int, user_id: int):
    """The meeting and this member's 补学 record, or a refusal when they have none."""
    meeting = await meeting_store.get(session, meeting_id)
    makeup = await meeting_store.makeup_of(session, meeting_id, user_id)
    if meeting is None or makeup is None or meeting.minutes_kind is None:
        raise DomainError("meetings.no_makeup")
    return meeting, makeup


async def mark_studied(session: AsyncSession, meeting_id: int, user_id: int, now: datetime) -> bool:
    """Record that the member studied the materials; False when they had already."""
    _, makeup = await makeup_for(session, meeting_id, user_id)
    if makeup.studied_at is not None:
        return False
    makeup.studied_at = now
    session.add(AuditLog(actor_id=user_id, action="meeting_makeup_studied", detail=str(meeting_id)))
    await session.flush()
    return True


async def makeup_progress(session: AsyncSession, meeting_id: int) -> tuple[int, int]:
    """(studied, assigned)."""
    rows = await meeting_store.makeups_of(session, meeting_id)
    return sum(1 for row in rows if row.studied_at is not None), len(rows)


# ------------------------------------------------------------------------------------------ compliance

COMPLIANCE = "meeting_compliance"
PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}
DEFAULT_RULES = {"general": "quarter", "committee": "month", "group": "month", "lecture": "quarter"}
PERIOD_NAMES = {
    "月": "month",
    "每月": "month",
    "month": "month",
    "monthly": "month",
    "季": "quarter",
    "季度": "quarter",
    "每季度": "quarter",
    "quarter": "quarter",
    "quarterly": "quarter",
    "年": "year",
    "每年": "year",
    "year": "year",
    "yearly": "year",
    "关": "off",
    "不要求": "off",
    "off": "off",
}
# Checked on the 15th at 09:00 (group time): a month's or a quarter's last month has two weeks left.
CHECK_RULE = Rule(kind="monthly_day", day=15, hour=9)
WARN_AHEAD = timedelta(days=31)


def rules_of(chat: Chat | None) -> dict[str, str]:
    """How often each meeting type is required: type → month | quarter | year."""
    raw = chat.meeting_rules if chat is not None else None
    if raw is None:
        return dict(DEFAULT_RULES)
    pairs = (part.split("=", 1) for part in raw.split(",") if "=" in part)
    return {kind: period for kind, period in pairs if period in PERIOD_MONTHS}


def parse_rules(text: str, current: dict[str, str]) -> dict[str, str]:
    """ "支委会=月 党课=季度 党小组会=关" (or kind=month|quarter|year|off): changes to ``current``."""
    import re

    rules = dict(current)
    pieces = [piece for piece in re.split(r"[,，、;；\s]+", (text or "").strip()) if piece]
    if not pieces:
        raise DomainError("meetings.bad_rules", value="")
    for piece in pieces:
        name, sep, period = piece.replace("：", "=").replace(":", "=").partition("=")
        period = PERIOD_NAMES.get(period.strip().lower())
        if not sep or period is None:
            raise DomainError("meetings.bad_rules", value=piece[:30])
        kind = meeting_service.kind_of(name)
        if period == "off":
            rules.pop(kind, None)
        else:
            rules[kind] = period
    return rules


async def set_rules(session: AsyncSession, chat_pk: int, actor_id: int, rules: dict[str, str]) -> Chat:
    chat = await chat_service.get_chat_by_pk(session, chat_pk)
    if chat is None:
        raise DomainError("errors.chat_gone")
    chat.meeting_rules = ",".join(f"{kind}={rules[kind]}" for kind in meeting_service.KINDS if kind in rules)
    session.add(
        AuditLog(chat_id=chat_pk, actor_id=actor_id, action="settings", detail=f"meeting_rules={chat.meeting_rules}")
    )
    await session.flush()
    return chat


def period_of(day: date, period: str) -> tuple[date, date]:
    """The calendar period (month, quarter, year) that ``day`` is in: [start, end)."""
    months = PERIOD_MONTHS[period]
    first_month = (day.month - 1) // months * months + 1
    start = date(day.year, first_month, 1)
    end_month = first_month + months
    end = date(day.year + (end_month - 1) // 12, (end_month - 1) % 12 + 1, 1)
    return start, end


@dataclass(frozen=True)
class Missing:
    kind: str
    period: str
    ends: date  # the first day after the period


async def missing(session: AsyncSession, chat: Chat, zone: ZoneInfo, now: datetime) -> list[Missing]:
    """Required meetings not yet held or planned in a period that ends within WARN_AHEAD."""
    today = now.astimezone(zone).date()
    found = []
    for kind, period in rules_of(chat).items():
        start, end = period_of(today, period)
        if _midnight(end, zone) - now > WARN_AHEAD:
            continue
        if not await meeting_store.held_or_planned(
            session, chat.id, kind, _midnight(start, zone), _midnight(end, zone)
        ):
            found.append(Missing(kind, period, end))
    return sorted(found, key=lambda item: meeting_service.KINDS.index(item.kind))


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


async def compliance_recipients(session: AsyncSession, chat_pk: int) -> list[int]:
    """The group's secretaries the bot can reach; else its committee; else nobody (then: the group)."""
    roles = await role_service.roles_in_chat(session, chat_pk)
    for wanted in (Role.SECRETARY, Role.COMMITTEE):
        holders = [user_id for user_id, role in roles.items() if role >= wanted]
        reachable = sorted(user.id for user in await people_service.reachable_users(session, holders))
        if reachable:
            return reachable
    return []


async def _plan_compliance(
    session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
) -> None:
    chat = await chat_service.get_chat_by_pk(session, schedule.chat_id)
    if chat is None:
        return
    gaps = await missing(session, chat, settings.zone, now)
    if not gaps:
        return
    key = schedule_service.firing_key(schedule.id, due_at)
    args = {"missing": [[gap.kind, gap.period, gap.ends.isoformat()] for gap in gaps]}
    recipients = await compliance_recipients(session, chat.id)
    not_before = chat_service.quiet_hours_end(settings, now)
    planned = [
        Planned(
            key=f"{key}:user:{user_id}",
            kind=COMPLIANCE,
            args=args,
            chat_pk=chat.id,
            user_id=user_id,
            not_before=not_before,
        )
        for user_id in recipients
    ] or [Planned(key=key, kind=COMPLIANCE, args=args, chat_pk=chat.id, not_before=not_before)]
    await outbox_service.plan(session, planned, now)


@schedule_service.register_routine
async def ensure_compliance_check(session: AsyncSession, chat_pk: int, settings: GroupSettings, now: datetime) -> bool:
    return await schedule_service.ensure_recurring(session, chat_pk, COMPLIANCE, CHECK_RULE, settings, now)


# The check may run late after an outage, but a warning days late is still worth having.
schedule_service.register_kind(COMPLIANCE, _plan_compliance, grace=timedelta(days=3))
