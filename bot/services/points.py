"""Learning points, streaks and the 学习达人榜.

Points are worked out from the records themselves (lessons marked 已学, quizzes answered right, meetings
signed in on time, notices confirmed), never kept as a running total: a record counts once because it is
one row, a restart or a repeated update cannot add to it, and /forgetme leaves nothing behind. Each kind
has a daily cap, counted in the group's time zone, so tapping through a backlog of lessons cannot farm
the board."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from weakref import WeakKeyDictionary
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import chats as chat_service
from bot.services import organisation as org_service
from bot.services import outbox as outbox_service
from bot.services import schedules as schedule_service
from bot.services.chats import GroupSettings
from bot.services.errors import DomainError
from bot.services.outbox import Planned
from bot.services.timephrase import Rule
from storage import people as people_store
from storage import points as points_store
from storage.models import AuditLog, Schedule


@dataclass(frozen=True)
class Award:
    points: int
    daily_cap: int  # how many of this kind count per member per day


AWARDS = {
    "study": Award(2, 2),  # today's lesson and one caught up
    "quiz": Award(1, 2),
    "sign_in": Award(3, 2),  # on time, by the member themself
    "ack": Award(1, 3),
}
PERIODS = ("week", "month")
BOARD_SIZE = 10  # places shown (members tied at the last place shown are all shown)
UNIT_POSTED = 5  # the unit's leaders under a group's posted board
STREAK_LOOKBACK = timedelta(days=400)

WEEKLY_POST = "rank_week"
MONTHLY_POST = "rank_month"
BOARD_POST = "rank_board"  # the outbox kind of both
# The weekly board on Sunday evening, the monthly one on the month's last evening.
DEFAULT_WEEKLY = Rule(kind="weekly", weekdays=(6,), hour=20)


@dataclass
class Tally:
    points: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)  # counted events per kind


@dataclass(frozen=True)
class Standing:
    rank: int
    user_id: int
    name: str
    hidden: bool
    points: int


@dataclass(frozen=True)
class Board:
    period: str
    first_day: date
    last_day: date
    standings: list[Standing]  # everyone with points, best first
    members: int


@dataclass(frozen=True)
class Mine:
    week: Standing | None
    month: Standing | None
    today: dict[str, int]  # counted events per kind today
    streak: int
    best_streak: int
    hidden: bool


def period_bounds(period: str, moment: datetime, zone: ZoneInfo) -> tuple[date, date]:
    """The local days of the week (Monday first) or month that contain ``moment``."""
    day = moment.astimezone(zone).date()
    if period == "week":
        first = day - timedelta(days=day.weekday())
        return first, first + timedelta(days=6)
    if period == "month":
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1)
    raise DomainError("errors.button_expired")


def midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), zone)


def tally(events: list[points_store.Event], zone: ZoneInfo) -> dict[int, Tally]:
    """Points per member, each kind capped per local day; the earliest events of a day are the ones counted,
    and one lesson, meeting or notice earns once however many of the member's groups it reached."""
    counted: dict[tuple[int, date, str], int] = defaultdict(int)
    seen: set[tuple[int, str, int]] = set()
    tallies: dict[int, Tally] = defaultdict(Tally)
    for user_id, kind, at, source in sorted(events, key=lambda event: event[2]):
        if (user_id, kind, source) in seen:
            continue
        seen.add((user_id, kind, source))
        key = (user_id, at.astimezone(zone).date(), kind)
        award = AWARDS[kind]
        if counted[key] >= award.daily_cap:
            continue
        counted[key] += 1
        entry = tallies[user_id]
        entry.points += award.points
        entry.by_kind[kind] = entry.by_kind.get(kind, 0) + 1
    return dict(tallies)


def streaks(days: set[date], today: date) -> tuple[int, int]:
    """(current, best) runs of consecutive days; the current run may end yesterday (today is not over)."""
    best = run = 0
    previous = None
    for day in sorted(days):
        run = run + 1 if previous is not None and day - previous == timedelta(days=1) else 1
        best, previous = max(best, run), day
    end = today if today in days else today - timedelta(days=1)
    current = 0
    while end - timedelta(days=current) in days:
        current += 1
    return current, best


def _name(user) -> str:
    return " ".join(part for part in (user.first_name, user.last_name) if part) or str(user.id)


def rank(tallies: dict[int, Tally], users: list) -> list[Standing]:
    """Members with points, best first; equal points share a rank (1, 2, 2, 4)."""
    by_id = {user.id: user for user in users}
    scored = sorted(
        ((tally_.points, user_id) for user_id, tally_ in tallies.items() if user_id in by_id and tally_.points),
        key=lambda item: (-item[0], item[1]),
    )
    standings: list[Standing] = []
    for index, (points, user_id) in enumerate(scored):
        place = standings[-1].rank if standings and standings[-1].points == points else index + 1
        user = by_id[user_id]
        standings.append(Standing(place, user_id, _name(user), bool(user.rank_hidden), points))
    return standings


@dataclass(frozen=True)
class UnitScope:
    name: str
    chat_pks: list[int]


async def unit_of(session: AsyncSession, chat) -> UnitScope | None:
    """The unit the group is bound to, with the groups of it and its sub-units (None: not bound)."""
    if chat is None or chat.unit_id is None:
        return None
    unit = await org_service.get_unit(session, chat.unit_id)
    if unit is None:
        return None
    units = [node.id for node in await org_service.descendants(session, unit.id)]
    bound = await org_service.bound_chats(session, units)
    return UnitScope(unit.name, sorted({group.id for groups in bound.values() for group in groups} | {chat.id}))


async def board(
    session: AsyncSession,
    chat_pks: list[int],
    period: str,
    zone: ZoneInfo,
    now: datetime,
    *,
    within: datetime | None = None,
) -> Board:
    """The board of the period holding ``within`` (default: ``now``) up to ``now``, for the groups' members."""
    first, last = period_bounds(period, within or now, zone)
    events = await points_store.events(session, chat_pks, midnight(first, zone), now)
    users = await points_store.members(session, chat_pks)
    return Board(period, first, last, rank(tally(events, zone), users), len(users))


# Every group of a unit posts its board at the same moment with the unit's leaders under it: the unit's
# board for that moment is worked out once per database, not once per group (figures up to a past
# moment do not change). Kept per engine, so that it goes with the engine.
_posted_unit_boards: WeakKeyDictionary = WeakKeyDictionary()
POSTED_UNIT_BOARDS_KEPT = 256


async def posted_unit_board(
    session: AsyncSession, chat_pks: list[int], period: str, zone: ZoneInfo, until: datetime, within: datetime
) -> Board:
    cache = _posted_unit_boards.setdefault(session.get_bind(), {})
    key = (tuple(sorted(chat_pks)), period, zone.key, until, within)
    if key in cache:  # worked out, or being worked out for another group's post right now
        return await asyncio.shield(cache[key])
    if len(cache) >= POSTED_UNIT_BOARDS_KEPT:
        cache.clear()
    future = cache[key] = asyncio.get_running_loop().create_future()
    try:
        future.set_result(await board(session, chat_pks, period, zone, until, within=within))
    except BaseException as error:
        cache.pop(key, None)
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)
            future.exception()  # retrieved: those waiting get it; nobody else should hear of it
        raise
    return future.result()


async def mine(session: AsyncSession, chat_pk: int, user_id: int, zone: ZoneInfo, now: datetime) -> Mine:
    """A member's standing in the group this week and month, what today has counted, and their streaks."""
    standings = {}
    for period in PERIODS:
        found = await board(session, [chat_pk], period, zone, now)
        standings[period] = next((row for row in found.standings if row.user_id == user_id), None)
    today = now.astimezone(zone).date()
    todays = await points_store.events(session, [chat_pk], midnight(today, zone), now, user_id)
    counted = tally(todays, zone).get(user_id, Tally())
    history = await points_store.events(session, [chat_pk], now - STREAK_LOOKBACK, now, user_id)
    study_days = {at.astimezone(zone).date() for _, kind, at, _ in history if kind == "study"}
    current, best = streaks(study_days, today)
    user = await people_store.get_user(session, user_id)
    hidden = bool(user and user.rank_hidden)
    return Mine(standings["week"], standings["month"], counted.by_kind, current, best, hidden)


async def set_hidden(session: AsyncSession, user_id: int, hidden: bool) -> None:
    """Whether the member's name is left off the boards (their place and points still show)."""
    await people_store.set_user_flags(session, user_id, rank_hidden=hidden)


# ------------------------------------------------------------------------------------------ posted boards


def monthly_rule(weekly: Rule) -> Rule:
    """The monthly board goes out on the month's last day at the weekly board's time."""
    return Rule(kind="monthly_day", day=-1, hour=weekly.hour, minute=weekly.minute)


POSTING_CHOICES = ("6-2000", "5-2000", "4-1800", "0-0900")  # weekday (0 = Monday) and time offered


def posting_rule(choice: str) -> Rule:
    """ "6-2000" → Sundays at 20:00 (the offered choices only)."""
    if choice not in POSTING_CHOICES:
        raise DomainError("errors.button_expired")
    day, _, at = choice.partition("-")
    return Rule(kind="weekly", weekdays=(int(day),), hour=int(at[:2]), minute=int(at[2:]))


async def set_posting(
    session: AsyncSession, chat_pk: int, actor_id: int, choice: str | None, settings: GroupSettings, now: datetime
) -> None:
    """Post the boards on a weekday and time (the monthly one at that time too), or stop (None)."""
    weekly = posting_rule(choice) if choice is not None else None
    monthly = monthly_rule(weekly) if weekly is not None else None
    # Made first if the group has none yet, so that "off" is kept and housekeeping does not turn it on.
    await ensure_posting_for(session, chat_pk, settings, now)
    for kind, rule in ((WEEKLY_POST, weekly), (MONTHLY_POST, monthly)):
        await schedule_service.set_routine(session, chat_pk, kind, rule, settings, now)
    if weekly is None:  # nor a board still waiting out quiet hours
        await outbox_service.cancel_all(session, board_key_prefix(chat_pk))
    detail = weekly.canonical() if weekly else "off"
    session.add(AuditLog(chat_id=chat_pk, actor_id=actor_id, action="rank_posting", detail=detail))
    await session.flush()


async def posting_of(session: AsyncSession, chat_pk: int) -> Schedule | None:
    """The weekly board's schedule (the monthly one follows it), if it is on."""
    schedule = await schedule_service.routine_of(session, chat_pk, WEEKLY_POST)
    return schedule if schedule is not None and schedule.status == "active" else None


@schedule_service.register_routine
async def ensure_posting_for(session: AsyncSession, chat_pk: int, settings: GroupSettings, now: datetime) -> bool:
    """The group's board posts, made once: a group that turned them off stays off."""
    if not await schedule_service.ensure_recurring(session, chat_pk, WEEKLY_POST, DEFAULT_WEEKLY, settings, now):
        return False
    await schedule_service.ensure_recurring(session, chat_pk, MONTHLY_POST, monthly_rule(DEFAULT_WEEKLY), settings, now)
    return True


def board_key_prefix(chat_pk: int) -> str:
    return f"rank:{chat_pk}:"


def posted_period(period: str, due_at: datetime, zone: ZoneInfo) -> tuple[date, datetime]:
    """The period a posted board closes, and the moment it is counted up to. A board due at the start of a
    period (Monday morning, say) is the one that just ended, not the one hours old."""
    first, last = period_bounds(period, due_at - timedelta(days=1), zone)
    return first, min(due_at, midnight(last + timedelta(days=1), zone))


def _planner(period: str):
    async def plan(
        session: AsyncSession, schedule: Schedule, due_at: datetime, settings: GroupSettings, now: datetime
    ) -> None:
        first, until = posted_period(period, due_at, settings.zone)
        # Keyed by the period, not by the firing: a change of time zone or posting day that brings the
        # schedule round again within the same week does not post that week twice. The board is fixed at
        # ``until``: worked out again after a restart, it reads the same.
        post = Planned(
            key=f"{board_key_prefix(schedule.chat_id)}{period}:{first.isoformat()}",
            kind=BOARD_POST,
            args={"period": period, "first": first.isoformat(), "until": until.isoformat()},
            chat_pk=schedule.chat_id,
            not_before=chat_service.quiet_hours_end(settings, now),
        )
        await outbox_service.plan(session, [post], now)

    return plan


# A board posted hours late still tells the group who learned most; a day late it is old news.
schedule_service.register_kind(WEEKLY_POST, _planner("week"), grace=timedelta(hours=12))
schedule_service.register_kind(MONTHLY_POST, _planner("month"), grace=timedelta(hours=12))
