"""Schedules: recurring announcements now, and the timetable that meetings and lessons will share.

The database holds the truth: each schedule's rule (as a canonical phrase, read in the group's time
zone of the moment) and its ``next_run_at``. A firing advances ``next_run_at`` and plans its outbox
message keyed by (schedule, due time) in the same transaction, so a restart can neither lose a firing
nor send it twice. Firings missed while the process was down are sent once if they are still inside
their kind's grace window, otherwise skipped and logged; of several missed runs only the latest is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import chats as chat_service
from bot.services import notices as notice_service
from bot.services import outbox as outbox_service
from bot.services import timephrase
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.outbox import Planned
from bot.services.timephrase import Rule
from storage import schedules as schedule_store
from storage.models import AuditLog, Chat, Schedule

log = logging.getLogger(__name__)

ANNOUNCEMENT = "announcement"
MIN_INTERVAL = timedelta(hours=1)  # a group allows ~20 bot messages a minute; posts are not a chat
MAX_PER_CHAT = 30
MAX_AHEAD = timedelta(days=366)
PREVIEW_RUNS = 3
CHECKED_RUNS = 6  # for the interval and the quiet-hours warning
RULE_LENGTH = 200  # the parser reads at most 200 characters; the column holds 255
MAX_TEXT_LENGTH = notice_service.MAX_TEXT_LENGTH
LISTED = ("active", "paused")
DRAFT_LIFETIME = timedelta(days=1)
_CATCH_UP_LIMIT = 1000  # runs walked one by one after an outage; beyond that, jump to now


@dataclass(frozen=True)
class Preview:
    """What a schedule will do, shown before it is saved."""

    schedule: Schedule
    rule: Rule
    runs: list[datetime]
    in_quiet_hours: bool  # some of the runs fall in the group's quiet hours
    workday_fallback: bool  # 工作日 in a year the holiday calendar does not cover yet


# What one firing of a kind plans: (session, schedule, due time, group settings, now) → outbox rows,
# keyed with ``firing_key(schedule.id, due time)``.
Planner = Callable[[AsyncSession, Schedule, datetime, GroupSettings, datetime], Awaitable[None]]


@dataclass(frozen=True)
class ScheduleKind:
    plan: Planner
    grace: timedelta  # how late a missed firing may still go out
    # Whether the rule is a wall-clock time in the group's zone (an announcement "every day 08:00") that
    # moves with a change of zone, or stands for a fixed moment (a meeting's reminder) that does not.
    follows_zone: bool = True
    # Whether a firing changes state that must change even in a group the bot has left (a meeting's
    # sign-in closing), rather than only posting something there.
    changes_state: bool = False


KINDS: dict[str, ScheduleKind] = {}


# What each group has on its timetable from the day the bot joins (the meeting check, the board posts, the
# monthly report): a feature registers how to make its routine once, and a group that turned one off keeps
# it off. Returns whether something was made.
RoutineMaker = Callable[[AsyncSession, int, GroupSettings, datetime], Awaitable[bool]]
ROUTINES: list[RoutineMaker] = []


def register_routine(make: RoutineMaker) -> RoutineMaker:
    ROUTINES.append(make)
    return make


async def ensure_routines(session: AsyncSession, chat_pk: int, settings: GroupSettings, now: datetime) -> int:
    """The group's routines, those it lacks made (when the bot joins; housekeeping for older groups)."""
    made = 0
    for make in ROUTINES:
        made += await make(session, chat_pk, settings, now)
    return made


async def ensure_group_routines(
    session: AsyncSession, chat_pk: int, now: datetime, *, default_language: str, default_timezone: str
) -> int:
    """A group's routines in its own settings (housekeeping calls this for every active group, one
    transaction each, so that no write waits for all the groups to be done)."""
    chat = await chat_service.get_chat_by_pk(session, chat_pk)
    settings = chat_service.settings_of(chat, default_language=default_language, default_timezone=default_timezone)
    return await ensure_routines(session, chat_pk, settings, now)


async def ensure_routines_everywhere(
    session: AsyncSession, now: datetime, *, default_language: str, default_timezone: str
) -> int:
    """Every active group's routines, in one transaction."""
    made = 0
    for chat_pk in await chat_service.active_group_ids(session):
        made += await ensure_group_routines(
            session, chat_pk, now, default_language=default_language, default_timezone=default_timezone
        )
    return made


def register_kind(
    name: str, plan: Planner, *, grace: timedelta, follows_zone: bool = True, changes_state: bool = False
) -> None:
    """Each feature that runs on the timetable (announcements; meeting reminders, lesson pushes) says
    what a firing of its schedules plans, and how late it may still be sent."""
    KINDS[name] = ScheduleKind(plan, grace, follows_zone, changes_state)


@dataclass(frozen=True)
class Firing:
    schedule_id: int
    sent: datetime | None  # the due time that was sent (None: nothing sent)
    skipped: tuple[datetime, ...]  # due times missed beyond the grace window, or coalesced


@lru_cache(maxsize=4096)
def rule_of(canonical: str) -> Rule:
    """A stored rule. Canonical phrases are absolute, so the moment and zone given to the parser do not
    matter; they are fixed to keep this a pure function."""
    return timephrase.parse(canonical, now=datetime(2000, 1, 1, tzinfo=ZoneInfo("UTC")), zone=ZoneInfo("UTC"))


def parse_rule(phrase: str, settings: GroupSettings, now: datetime) -> Rule:
    return timephrase.parse(phrase, now=now, zone=settings.zone)


def check_rule(rule: Rule, settings: GroupSettings, now: datetime) -> list[datetime]:
    """The next few runs of a rule fit to be saved; refuses one that never runs, runs too often or too far
    ahead, or whose stored form would be too long to read back."""
    if len(rule.canonical()) > RULE_LENGTH:
        raise DomainError("schedules.rule_too_long")
    runs = rule.upcoming(now, settings.zone, CHECKED_RUNS)
    if not runs:
        raise DomainError("schedules.never_runs")
    if runs[0] - now > MAX_AHEAD:
        raise DomainError("schedules.too_far")
    if any(later - earlier < MIN_INTERVAL for earlier, later in zip(runs, runs[1:], strict=False)):
        raise DomainError("schedules.too_often")
    return runs


def validate_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise DomainError("schedules.empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise DomainError("notices.too_long", limit=MAX_TEXT_LENGTH, length=len(text))
    return text


def _in_quiet_hours(runs: list[datetime], settings: GroupSettings) -> bool:
    return any(chat_service.is_quiet_time(settings, run) for run in runs)


def _preview(schedule: Schedule, rule: Rule, runs: list[datetime], settings: GroupSettings) -> Preview:
    shown = runs[:PREVIEW_RUNS]
    return Preview(
        schedule, rule, shown, _in_quiet_hours(runs, settings), rule.uses_workday_fallback(shown, settings.zone)
    )


async def create_draft(
    session: AsyncSession,
    chat_pk: int,
    author_id: int,
    rule: Rule,
    text: str,
    settings: GroupSettings,
    now: datetime,
    *,
    replaces: Schedule | None = None,
) -> Preview:
    """A schedule to be confirmed (or the edit of ``replaces``, applied when confirmed)."""
    runs = check_rule(rule, settings, now)
    draft = await _add_draft(session, chat_pk, author_id, rule, validate_text(text), now, replaces=replaces)
    return _preview(draft, rule, runs, settings)


async def start_guided(
    session: AsyncSession, chat_pk: int, author_id: int, rule: Rule, settings: GroupSettings, now: datetime
) -> Schedule:
    """A draft whose rule was chosen with buttons; its text comes next, as a reply (``fill_guided``)."""
    check_rule(rule, settings, now)
    return await _add_draft(session, chat_pk, author_id, rule, "", now)


async def _add_draft(
    session: AsyncSession,
    chat_pk: int,
    author_id: int,
    rule: Rule,
    text: str,
    now: datetime,
    *,
    replaces: Schedule | None = None,
) -> Schedule:
    if replaces is None:
        await _check_room(session, chat_pk)
    draft = Schedule(
        chat_id=chat_pk,
        kind=ANNOUNCEMENT,
        rule=rule.canonical(),
        text=text,
        with_ack=replaces.with_ack if replaces else False,
        status="draft",
        replaces_id=replaces.id if replaces else None,
        created_by=author_id,
        created_at=now,
        updated_at=now,
    )
    session.add(draft)
    await session.flush()
    return draft


async def fill_guided(
    session: AsyncSession, draft_id: int, chat_pk: int, text: str, settings: GroupSettings, now: datetime
) -> Preview:
    draft = await get_in_chat(session, draft_id, chat_pk)
    if draft.status != "draft":
        raise DomainError("schedules.already_saved")
    draft.text, draft.updated_at = validate_text(text), now
    rule = rule_of(draft.rule)
    return _preview(draft, rule, check_rule(rule, settings, now), settings)


async def _check_room(session: AsyncSession, chat_pk: int) -> None:
    if await schedule_store.count_listed(session, chat_pk, ANNOUNCEMENT) >= MAX_PER_CHAT:
        raise DomainError("schedules.too_many", limit=MAX_PER_CHAT)


async def edit_draft(
    session: AsyncSession,
    schedule_id: int,
    chat_pk: int,
    author_id: int,
    answer: str,
    settings: GroupSettings,
    now: datetime,
) -> Preview:
    """An edit given as "new time | new text"; an empty side keeps what the schedule has."""
    original = await get_in_chat(session, schedule_id, chat_pk)
    phrase, sep, text = answer.partition("|")
    if not sep:
        raise DomainError("schedules.edit_usage")
    rule = parse_rule(phrase, settings, now) if phrase.strip() else rule_of(original.rule)
    return await create_draft(
        session, chat_pk, author_id, rule, text.strip() or original.text, settings, now, replaces=original
    )


async def get_in_chat(session: AsyncSession, schedule_id: int, chat_pk: int) -> Schedule:
    """The group's own schedule; anything else (another group's, a deleted one) is an expired button.
    The row is locked for the rest of the transaction (PostgreSQL), so a firing and a change never
    interleave."""
    schedule = await session.get(Schedule, schedule_id, with_for_update=True)
    if schedule is None or schedule.chat_id != chat_pk or schedule.status == "deleted" or schedule.kind != ANNOUNCEMENT:
        raise DomainError("errors.button_expired")
    return schedule


async def confirm(
    session: AsyncSession,
    schedule_id: int,
    actor_id: int,
    chat_pk: int,
    settings: GroupSettings,
    now: datetime,
    *,
    with_ack: bool,
    quiet_ok: bool,
) -> Schedule:
    """Save a draft: a new schedule becomes active; an edit is applied to the schedule it replaces."""
    draft = await get_in_chat(session, schedule_id, chat_pk)
    if draft.status != "draft":
        raise DomainError("schedules.already_saved")
    validate_text(draft.text)  # a guided draft has no text until its reply came
    rule = rule_of(draft.rule)
    runs = check_rule(rule, settings, now)  # time has passed since the preview
    if _in_quiet_hours(runs, settings) and not quiet_ok:
        raise DomainError("schedules.quiet_not_confirmed")
    target = draft
    if draft.replaces_id is not None:
        target = await get_in_chat(session, draft.replaces_id, chat_pk)
        if target.status not in LISTED:
            raise DomainError("errors.button_expired")
        target.rule, target.text = draft.rule, draft.text
        draft.status = "deleted"
    else:
        await _check_room(session, chat_pk)  # drafts made side by side must not pass the limit together
        target.status = "active"
    target.with_ack = with_ack
    target.quiet_ok = quiet_ok
    target.updated_at = now
    if target.status == "active":
        target.next_run_at = runs[0]
    action = "schedule_edited" if target is not draft else "schedule_created"
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action=action, detail=f"{target.id} {target.rule}"))
    await session.flush()
    return target


async def discard(session: AsyncSession, schedule_id: int, chat_pk: int) -> None:
    draft = await get_in_chat(session, schedule_id, chat_pk)
    if draft.status != "draft":
        raise DomainError("schedules.already_saved")
    await session.delete(draft)  # a draft has no history worth keeping
    await session.flush()


async def set_paused(
    session: AsyncSession,
    schedule_id: int,
    actor_id: int,
    chat_pk: int,
    settings: GroupSettings,
    now: datetime,
    *,
    paused: bool,
) -> Schedule:
    schedule = await get_in_chat(session, schedule_id, chat_pk)
    if schedule.status not in LISTED:
        raise DomainError("errors.button_expired")
    if paused:
        schedule.status, schedule.next_run_at = "paused", None
        await outbox_service.cancel_all(session, firing_key_prefix(schedule.id))  # e.g. one waiting out quiet hours
    else:
        # Runs missed while paused are not owed: resume from now.
        next_run = rule_of(schedule.rule).next_after(now, settings.zone)
        if next_run is None:
            raise DomainError("schedules.never_runs")
        schedule.status, schedule.next_run_at = "active", next_run
    schedule.updated_at = now
    action = "schedule_paused" if paused else "schedule_resumed"
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action=action, detail=str(schedule.id)))
    await session.flush()
    return schedule


async def delete(session: AsyncSession, schedule_id: int, actor_id: int, chat_pk: int, now: datetime) -> Schedule:
    schedule = await get_in_chat(session, schedule_id, chat_pk)
    schedule.status, schedule.next_run_at, schedule.updated_at = "deleted", None, now
    await outbox_service.cancel_all(session, firing_key_prefix(schedule.id))
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="schedule_deleted", detail=str(schedule.id)))
    await session.flush()
    return schedule


async def listed(session: AsyncSession, chat_pk: int) -> list[Schedule]:
    return await schedule_store.listed(session, chat_pk, LISTED, ANNOUNCEMENT)


async def follow_timezone(session: AsyncSession, chat_pk: int, settings: GroupSettings, now: datetime) -> int:
    """After a group's time zone changed: its rules now read in the new zone, so the next runs move
    (not those that stand for a fixed moment, such as a meeting's reminders)."""
    moved = 0
    for schedule in await schedule_store.active_in_chat(session, chat_pk):
        kind = KINDS.get(schedule.kind)
        if kind is not None and not kind.follows_zone:
            continue
        schedule.next_run_at = rule_of(schedule.rule).next_after(now, settings.zone)
        if schedule.next_run_at is None:
            schedule.status = "done"
        moved += 1
    await session.flush()
    return moved


async def forget_stale_drafts(session: AsyncSession, now: datetime) -> int:
    """Previews nobody saved or cancelled within a day are dropped."""
    return await schedule_store.delete_drafts_before(session, now - DRAFT_LIFETIME)


async def timetable(session: AsyncSession) -> dict[int, datetime]:
    """Every active schedule's next run: what the in-process timer is built from."""
    return await schedule_store.timetable(session)


async def fire_due(
    session: AsyncSession, now: datetime, limit: int, *, default_language: str, default_timezone: str
) -> list[Firing]:
    """Fire up to ``limit`` schedules that are due, earliest first, so that two runs due at once in one
    group are planned (and so sent) in their order. A group the bot has left gets nothing, but its
    schedules still move on."""
    firings = []
    for schedule in await schedule_store.due(session, now, limit):
        chat = await chat_service.get_chat_by_pk(session, schedule.chat_id)
        settings = chat_service.settings_of(chat, default_language=default_language, default_timezone=default_timezone)
        try:
            async with session.begin_nested():  # one broken schedule must not hold back the others
                firing = await fire(session, schedule, settings, now, send=chat is not None and chat.is_active)
        except Exception:
            log.exception("schedule %s could not fire; it is paused for the committee to look at", schedule.id)
            await session.refresh(schedule)
            schedule.status, schedule.next_run_at = "paused", None
            session.add(AuditLog(chat_id=schedule.chat_id, action="schedule_failed", detail=str(schedule.id)))
            firing = Firing(schedule.id, None, ())
        firings.append(firing)
    return firings


async def fire(
    session: AsyncSession, schedule: Schedule, settings: GroupSettings, now: datetime, *, send: bool = True
) -> Firing:
    """Handle a schedule whose ``next_run_at`` has come: plan the latest due run if it is inside the grace
    window, skip the others, and move ``next_run_at`` past ``now``."""
    rule, zone, kind = rule_of(schedule.rule), settings.zone, KINDS[schedule.kind]
    due_runs: list[datetime] = []
    run = schedule.next_run_at
    while run is not None and run <= now and len(due_runs) < _CATCH_UP_LIMIT:
        due_runs.append(run)
        # A one-off runs once, even if its wall-clock time read in a new zone would come again later.
        run = rule.next_after(run, zone) if rule.recurring else None
    if run is not None and run <= now:  # a very long outage: the rest are skipped wholesale
        run = rule.next_after(now, zone)
    latest = due_runs[-1] if due_runs else None
    sent = latest if latest is not None and now - latest <= kind.grace else None
    skipped = tuple(moment for moment in due_runs if moment != sent)
    if sent is not None and not send and not kind.changes_state:
        log.info("schedule %s: group %s is inactive, run %s not sent", schedule.id, schedule.chat_id, sent.isoformat())
        sent = None
    if sent is not None:
        await kind.plan(session, schedule, sent, settings, now)
        schedule.last_run_at = sent
    schedule.next_run_at = run
    if run is None:
        schedule.status = "done"
    if skipped:
        log.warning(
            "schedule %s in chat %s: %s run(s) skipped: past the grace window, or folded into a later run (latest %s)",
            schedule.id,
            schedule.chat_id,
            len(skipped),
            skipped[-1].isoformat(),
        )
        session.add(
            AuditLog(
                chat_id=schedule.chat_id,
                action="schedule_skipped",
                detail=f"{schedule.id} {len(skipped)} {skipped[-1].isoformat()}",
            )
        )
    return Firing(schedule.id, sent, skipped)


async def plan_once(
    session: AsyncSession, chat_pk: int, kind: str, ref: str, at: datetime, zone: ZoneInfo, now: datetime
) -> Schedule | None:
    """A one-off step of something bigger (``ref``, e.g. a meeting's reminder) at a fixed moment; None
    when that moment has passed."""
    if at <= now:
        return None
    local = at.astimezone(zone)
    rule = Rule(kind="once", date=local.date(), hour=local.hour, minute=local.minute)
    schedule = Schedule(
        chat_id=chat_pk, kind=kind, ref=ref, rule=rule.canonical(), status="active", next_run_at=at, created_at=now
    )
    session.add(schedule)
    await session.flush()
    return schedule


async def ensure_recurring(
    session: AsyncSession, chat_pk: int, kind: str, rule: Rule, settings: GroupSettings, now: datetime
) -> bool:
    """The group's one schedule of ``kind`` (a routine check, say), made if it has none; True if made.
    The group's row is locked first (PostgreSQL), so two processes starting at once make one."""
    await session.get(Chat, chat_pk, with_for_update=True)
    if await schedule_store.of_kind_in_chat(session, chat_pk, kind):
        return False
    session.add(
        Schedule(
            chat_id=chat_pk,
            kind=kind,
            ref=kind,
            rule=rule.canonical(),
            status="active",
            next_run_at=rule.next_after(now, settings.zone),
            created_at=now,
        )
    )
    await session.flush()
    return True


async def lock_all(session: AsyncSession, ref: str) -> list[Schedule]:
    """The schedules of ``ref``, locked for the transaction (PostgreSQL)."""
    return await schedule_store.with_ref(session, ref)


async def set_routine(
    session: AsyncSession, chat_pk: int, kind: str, rule: Rule | None, settings: GroupSettings, now: datetime
) -> Schedule | None:
    """Set the group's one schedule of ``kind`` (its daily lesson push, say) to ``rule``, making it if
    need be; ``None`` pauses it."""
    await session.get(Chat, chat_pk, with_for_update=True)
    existing = await schedule_store.of_kind_in_chat(session, chat_pk, kind)
    schedule = existing[0] if existing else None
    if rule is None:
        if schedule is not None:
            schedule.status, schedule.next_run_at, schedule.updated_at = "paused", None, now
        await session.flush()
        return schedule
    if schedule is None:
        schedule = Schedule(chat_id=chat_pk, kind=kind, ref=kind, created_at=now)
        session.add(schedule)
    schedule.rule, schedule.status, schedule.updated_at = rule.canonical(), "active", now
    schedule.next_run_at = rule.next_after(now, settings.zone)
    await session.flush()
    return schedule


async def routine_of(session: AsyncSession, chat_pk: int, kind: str) -> Schedule | None:
    existing = await schedule_store.of_kind_in_chat(session, chat_pk, kind)
    return existing[0] if existing else None


async def drop_all(session: AsyncSession, ref: str, now: datetime) -> int:
    """Stop every schedule that belongs to ``ref`` (a meeting cancelled or moved), and what they planned
    that has not gone out yet."""
    dropped = 0
    for schedule in await schedule_store.with_ref(session, ref):
        if schedule.status in ("active", "paused"):
            schedule.status, schedule.next_run_at, schedule.updated_at = "deleted", None, now
            dropped += 1
        await outbox_service.cancel_all(session, firing_key_prefix(schedule.id))
    await session.flush()
    return dropped


def firing_key_prefix(schedule_id: int) -> str:
    return f"schedule:{schedule_id}:"


def firing_key(schedule_id: int, due_at: datetime) -> str:
    return firing_key_prefix(schedule_id) + due_at.strftime("%Y%m%dT%H%M%SZ")


async def _plan_announcement(
    session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
) -> None:
    # A post that would land in quiet hours waits for their end, unless the committee allowed it.
    not_before = None if schedule.quiet_ok else chat_service.quiet_hours_end(settings, now)
    key = firing_key(schedule.id, due_at)
    if schedule.with_ack:
        await notice_service.post_announcement(
            session, schedule.chat_id, schedule.created_by, schedule.text, key=key, now=now, not_before=not_before
        )
        return
    await outbox_service.plan(
        session,
        [
            Planned(
                key=key,
                kind=ANNOUNCEMENT,
                # The text as it was at the firing, as a post with the button keeps it in its own notice.
                args={"schedule_id": schedule.id, "due": due_at.isoformat(), "text": schedule.text},
                chat_pk=schedule.chat_id,
                not_before=not_before,
            )
        ],
        now,
    )


async def still_wanted(session: AsyncSession, schedule_id: int) -> bool:
    """Whether a planned post should still go out: not if its schedule was paused or deleted meanwhile."""
    schedule = await session.get(Schedule, schedule_id)
    return schedule is not None and schedule.status in ("active", "done")


register_kind(ANNOUNCEMENT, _plan_announcement, grace=timedelta(hours=1))
