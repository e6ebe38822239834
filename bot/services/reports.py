"""The monthly report (台账) of a group, and of a unit's groups: what was held against what is required,
who attended, who confirmed notices, who studied. The figures follow the rules the rest of the bot
uses: who is expected at a meeting is what the meeting's own summary says, a notice or a lesson is due
from those in the group when it went out, and those who have left are no longer listed."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import organisation as org_service
from bot.services import outbox as outbox_service
from bot.services import people as people_service
from bot.services import points as points_service
from bot.services import roster as roster_service
from bot.services import schedules as schedule_service
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.outbox import Planned
from bot.services.report_model import (
    GroupReport,
    Learner,
    LessonRow,
    MeetingRow,
    MemberRow,
    NoticeRow,
    RequiredRow,
    UnitReport,
)
from bot.services.roster import RosterEntry
from bot.services.timephrase import Rule
from storage import people as people_store
from storage import reports as report_store
from storage import vanguard as vanguard_store
from storage.models import AuditLog, Chat, Schedule

log = logging.getLogger(__name__)
TOP_LEARNERS = 5
EXCERPT_LENGTH = 40
EARLIEST_MONTH = date(2020, 1, 1)
_MONTH = re.compile(r"(\d{4})\s*[-./年]\s*(\d{1,2})\s*月?")


def month_of(moment: datetime, zone: ZoneInfo, months_back: int = 0) -> date:
    """The first day of the month ``months_back`` before the one holding ``moment`` in ``zone``."""
    first = moment.astimezone(zone).date().replace(day=1)
    for _ in range(months_back):
        first = (first - timedelta(days=1)).replace(day=1)
    return first


def parse_month(text: str, now: datetime, zone: ZoneInfo) -> date:
    """ "2026-11", "2026年11月", "2026.11"; "上月"/"last" and "本月"/"this" also do. Not a month to come."""
    text = (text or "").strip().lower()
    if text in ("", "本月", "this", "this month"):
        return month_of(now, zone)
    if text in ("上月", "上个月", "last", "last month"):
        return month_of(now, zone, 1)
    match = _MONTH.fullmatch(text)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise DomainError("reports.bad_month", value=text[:20])
    if int(match.group(1)) < EARLIEST_MONTH.year:  # before date(): "0000-01" names no date at all
        raise DomainError("reports.month_out_of_range", value=text[:20])
    month = date(int(match.group(1)), int(match.group(2)), 1)
    if month > month_of(now, zone) or month < EARLIEST_MONTH:
        raise DomainError("reports.month_out_of_range", value=text[:20])
    return month


def next_month(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def month_end(month: date, zone: ZoneInfo) -> datetime:
    """The moment the month is over, in the group's zone."""
    return _midnight(next_month(month), zone)


async def group_report(
    session: AsyncSession, chat: Chat, month: date, zone: ZoneInfo, now: datetime, *, hidden_name: str
) -> GroupReport:
    """The group's figures for ``month`` (its first day), counted up to the month's end or ``now``.
    ``hidden_name`` stands in for members who asked not to be named on boards (top learners only)."""
    start = _midnight(month, zone)
    end = min(_midnight(next_month(month), zone), now)
    roster = await roster_service.roster_of(session, chat.id)
    # Those who left are no longer the group's to report on; those first seen after the month were not there.
    people = [
        entry
        for entry in roster.entries
        if entry.section != "left" and (entry.first_seen is None or entry.first_seen < end)
    ]
    meetings, attendance = await _meetings(session, chat.id, start, end)
    notices, acks = await _notices(session, chat.id, start, end, people)
    lessons, studies = await _lessons(session, chat.id, month, zone, people)
    board = await points_service.board(session, [chat.id], "month", zone, end - timedelta(microseconds=1))
    points = {row.user_id: row.points for row in board.standings}
    members = [
        MemberRow(
            user_id=entry.user_id,
            name=entry.name,
            section=entry.section,
            member_type=entry.member_type,
            meetings_expected=attendance.get(entry.user_id, {}).get("expected", 0),
            meetings_present=attendance.get(entry.user_id, {}).get("present", 0),
            meetings_late=attendance.get(entry.user_id, {}).get("late", 0),
            meetings_leave=attendance.get(entry.user_id, {}).get("leave", 0),
            notices_due=acks.get(entry.user_id, (0, 0))[0],
            notices_acked=acks.get(entry.user_id, (0, 0))[1],
            lessons_due=studies.get(entry.user_id, (0, 0))[0],
            lessons_studied=studies.get(entry.user_id, (0, 0))[1],
            points=points.get(entry.user_id, 0),
        )
        for entry in people
    ]
    names = {entry.user_id: entry.name for entry in people}  # as the ledger names them: 亮身份 first
    learners = [
        Learner(row.rank, hidden_name if row.hidden else names.get(row.user_id, row.name), row.points)
        for row in board.standings[:TOP_LEARNERS]
    ]
    unit = await org_service.get_unit(session, chat.unit_id) if chat.unit_id is not None else None
    return GroupReport(
        chat_pk=chat.id,
        title=chat.title or "",
        unit_name=unit.name if unit else None,
        month=month,
        timezone=zone.key,
        generated_at=now,
        required=await _required(session, chat, month, zone, end),
        meetings=meetings,
        members=members,
        notices=notices,
        lessons=lessons,
        top_learners=learners,
    )


async def _required(session: AsyncSession, chat: Chat, month: date, zone: ZoneInfo, end: datetime) -> list[RequiredRow]:
    """Each required meeting type with what was held in its period (the month, or the quarter or year
    around it) up to the report's end."""
    rows = []
    for kind, period in attendance_service.rules_of(chat).items():
        first, end_day = attendance_service.period_of(month, period)
        held = await report_store.held_by_kind(session, chat.id, _midnight(first, zone), end)
        rows.append(RequiredRow(kind, period, first, end_day, held.get(kind, 0)))
    return rows


async def _meetings(
    session: AsyncSession, chat_pk: int, start: datetime, end: datetime
) -> tuple[list[MeetingRow], dict[int, dict[str, int]]]:
    rows, per_member = [], {}

    def count(user_id: int, *fields: str) -> None:
        tally = per_member.setdefault(user_id, {})
        for name in ("expected", *fields):
            tally[name] = tally.get(name, 0) + 1

    for meeting_id in await vanguard_store.held_meetings(session, chat_pk, start, end):
        state = await attendance_service.attendance(session, meeting_id, chat_pk)
        meeting = state.meeting
        rows.append(
            MeetingRow(
                meeting.id,
                meeting.kind,
                meeting.title,
                meeting.starts_at,
                state.expected,
                len(state.on_time),
                len(state.late),
                len(state.leave),
                len(state.absent),
            )
        )
        for person, _ in state.on_time:
            count(person.user_id, "present")
        for person, _ in state.late:
            count(person.user_id, "present", "late")
        for person, _ in state.leave:
            count(person.user_id, "leave")
        for person in state.absent:
            count(person.user_id)
    return rows, per_member


def _one_line(text: str) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= EXCERPT_LENGTH else line[: EXCERPT_LENGTH - 1] + "…"


async def _notices(
    session: AsyncSession, chat_pk: int, start: datetime, end: datetime, people: list[RosterEntry]
) -> tuple[list[NoticeRow], dict[int, tuple[int, int]]]:
    """Per notice: those in the group when it went out (or who confirmed anyway), and who confirmed."""
    posts = await vanguard_store.notice_posts(session, chat_pk, start, end)
    ids = [post_id for post_id, _ in posts]
    acked = await vanguard_store.acks_on(session, ids)
    texts = await report_store.notice_texts(session, ids)
    rows, per_member = [], {}
    for post_id, posted_at in posts:
        expected = confirmed = 0
        for entry in people:
            did = (post_id, entry.user_id) in acked
            if did or entry.first_seen is None or entry.first_seen <= posted_at:
                expected, confirmed = expected + 1, confirmed + did
                due, done = per_member.get(entry.user_id, (0, 0))
                per_member[entry.user_id] = (due + 1, done + did)
        rows.append(NoticeRow(post_id, posted_at, _one_line(texts.get(post_id, "")), expected, confirmed))
    return rows, per_member


async def _lessons(
    session: AsyncSession, chat_pk: int, month: date, zone: ZoneInfo, people: list[RosterEntry]
) -> tuple[list[LessonRow], dict[int, tuple[int, int]]]:
    """Per pushed lesson: those in the group that day (or who studied it anyway), who studied it, and
    the quiz answers."""
    pushes = await vanguard_store.lesson_pushes(session, chat_pk, month, next_month(month))
    ids = [push_id for push_id, _ in pushes]
    studied = await vanguard_store.studies_on(session, ids)
    titles = await report_store.lesson_titles(session, ids)
    answers = await report_store.quiz_answers(session, ids)
    rows, per_member = [], {}
    for push_id, day in pushes:
        members = learners = 0
        for entry in people:
            since = entry.first_seen.astimezone(zone).date() if entry.first_seen is not None else None
            did = (push_id, entry.user_id) in studied
            if did or since is None or since <= day:
                members, learners = members + 1, learners + did
                due, done = per_member.get(entry.user_id, (0, 0))
                per_member[entry.user_id] = (due + 1, done + did)
        answered = [correct for answer_push, _, correct in answers if answer_push == push_id]
        rows.append(LessonRow(push_id, day, titles.get(push_id, ""), members, learners, len(answered), sum(answered)))
    return rows, per_member


async def unit_report(
    session: AsyncSession, chat: Chat, month: date, now: datetime, *, default_timezone: str, hidden_name: str
) -> UnitReport:
    """One report per group bound to the group's unit or a unit below it, each in its own time zone."""
    unit = await org_service.get_unit(session, chat.unit_id) if chat.unit_id is not None else None
    if unit is None:
        raise DomainError("reports.not_bound")
    nodes = await org_service.descendants(session, unit.id)
    bound = await org_service.bound_chats(session, [node.id for node in nodes])
    groups = []
    for node in nodes:
        for group in bound.get(node.id, []):
            zone = chat_service.zone_or_default(group.timezone, default_timezone)
            groups.append(await group_report(session, group, month, zone, now, hidden_name=hidden_name))
    return UnitReport(unit.name, month, now, groups)


# ------------------------------------------------------------------------------------------ the monthly post

MONTHLY = "monthly_report"
DEFAULT_MONTHLY = Rule(kind="monthly_day", day=1, hour=9)  # the 1st at 09:00, last month's report
LATEST_DAY = 28  # a day every month has


def parse_monthly(text: str) -> Rule | None:
    """ "1 09:00", "1日 9:00", "3号 18:30"; "off"/"关" → None."""
    text = (text or "").strip().lower()
    if text in ("off", "关", "关闭", "不发送"):
        return None
    match = re.fullmatch(r"(?:每月)?\s*(\d{1,2})\s*(?:[日号]\s*|\s+)(\d{1,2})[:：](\d{2})", text)
    if match is None:
        raise DomainError("reports.bad_schedule", value=text[:20])
    day, hour, minute = (int(part) for part in match.groups())
    if not 1 <= day <= LATEST_DAY or hour > 23 or minute > 59:
        raise DomainError("reports.bad_schedule", value=text[:20])
    return Rule(kind="monthly_day", day=day, hour=hour, minute=minute)


async def set_monthly(
    session: AsyncSession, chat_pk: int, actor_id: int, rule: Rule | None, settings: GroupSettings, now: datetime
) -> None:
    # Made first if the group has none yet, so that "off" is kept and housekeeping does not turn it on.
    await ensure_monthly_for(session, chat_pk, settings, now)
    await schedule_service.set_routine(session, chat_pk, MONTHLY, rule, settings, now)
    if rule is None:  # nor a report still waiting out quiet hours
        await outbox_service.cancel_all(session, f"{MONTHLY}:{chat_pk}:")
    detail = rule.canonical() if rule else "off"
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="monthly_report", detail=detail))
    await session.flush()


async def monthly_of(session: AsyncSession, chat_pk: int) -> Schedule | None:
    schedule = await schedule_service.routine_of(session, chat_pk, MONTHLY)
    return schedule if schedule is not None and schedule.status == "active" else None


@schedule_service.register_routine
async def ensure_monthly_for(session: AsyncSession, chat_pk: int, settings: GroupSettings, now: datetime) -> bool:
    """Made once: a group that turned it off stays off."""
    return await schedule_service.ensure_recurring(session, chat_pk, MONTHLY, DEFAULT_MONTHLY, settings, now)


async def recipients_of(session: AsyncSession, chat_pk: int) -> list[int]:
    """The group's own secretaries the bot can reach, else its own committee. Roles on the unit above are
    left out: a park's secretary would otherwise get every branch's report."""
    roles = await people_store.chat_roles_in(session, chat_pk)
    for wanted in ("secretary", "committee"):
        holders = {user_id for user_id, role in roles if role == "secretary" or role == wanted}
        reachable = sorted(user.id for user in await people_service.reachable_users(session, holders))
        if reachable:
            return reachable
    return []


async def _plan_monthly(
    session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
) -> None:
    """Last month's report, privately to the secretaries the bot can reach (else the committee): it names
    members, so it never goes to the group. Chart and ledger are two messages, each planned once."""
    recipients = await recipients_of(session, schedule.chat_id)
    if not recipients:
        log.info("group %s: nobody on the committee started the bot; no monthly report sent", schedule.chat_id)
        return
    month = month_of(due_at, settings.zone, 1)
    # Keyed by the month, not the firing: a new day, time or time zone that brings the schedule round
    # again in the same month does not send that month twice.
    key = f"{MONTHLY}:{schedule.chat_id}:{month:%Y%m}"
    not_before = chat_service.quiet_hours_end(settings, now)
    planned = [
        Planned(
            key=f"{key}:user:{user_id}:{part}",
            kind=MONTHLY,
            args={"month": month.isoformat(), "part": part},
            chat_pk=schedule.chat_id,
            user_id=user_id,
            not_before=not_before,
        )
        for user_id in recipients
        for part in ("chart", "ledger")
    ]
    await outbox_service.plan(session, planned, now)


# Sent days late it is still the month's report; a week late, the next one is near.
schedule_service.register_kind(MONTHLY, _plan_monthly, grace=timedelta(days=3))
