"""The 先锋指数 (vanguard index): one figure per member, 0–100, from four rates over a calendar month in
the group's time zone (this month so far, or the last one):

* attendance — meetings attended / meetings the member was expected at, over the meetings held (closed)
  in the period. Who was expected, on time, late or on leave is what the meeting's own summary says
  (``attendance.attendance``). A late arrival counts as LATE_CREDIT of a meeting; a leave the committee
  did not reject (approved, or still pending) is excused: neither attended nor expected.
* acks — notices confirmed / notices posted in the group in the period while the member was there
  (first seen at or before the post).
* learning — lessons marked "已学" (at any time since) / lessons pushed in the period on or after the
  day the member was first seen.
* identity — 亮身份: 1 when the declaration (with its duty post and pledge) is verified, 0.5 while it
  waits for the committee, else 0.

Something the member did counts even when they were first seen later (a silent member's first tap
is what made the bot see them). index = 100 × Σ weight·rate / Σ weight over the components that have
something to count for the member; a component with nothing to count (no meeting held this month) is
left out and the other weights grow in proportion. Figures are rounded half up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import attendance as attendance_service
from bot.services import chats as chat_service
from bot.services import organisation as org_service
from bot.services import roster as roster_service
from bot.services.errors import DomainError
from bot.services.organisation import UnitNode
from bot.services.roster import RosterEntry
from storage import vanguard as vanguard_store
from storage.models import AuditLog, Chat

COMPONENTS = ("attendance", "acks", "learning", "identity")
DEFAULT_WEIGHTS = {"attendance": 40, "acks": 20, "learning": 30, "identity": 10}
MAX_WEIGHT = 100
# Being there late is still being there, but it should cost something: half a meeting.
LATE_CREDIT = 0.5
IDENTITY_RATES = {"verified": 1.0, "pending": 0.5}
PERIODS = (0, 1)  # months back: this month so far, the last one
COMPONENT_NAMES = {
    "attendance": "attendance",
    "出勤": "attendance",
    "到会": "attendance",
    "会议": "attendance",
    "acks": "acks",
    "ack": "acks",
    "acknowledgements": "acks",
    "回执": "acks",
    "收到": "acks",
    "确认": "acks",
    "learning": "learning",
    "study": "learning",
    "学习": "learning",
    "identity": "identity",
    "service": "identity",
    "亮身份": "identity",
    "身份": "identity",
}
RESET_WORDS = ("默认", "恢复默认", "default", "reset")
_WEIGHT = re.compile(r"\d{1,3}", re.ASCII)


# ------------------------------------------------------------------------------------------ weights


def weights_of(chat: Chat | None) -> dict[str, int]:
    """The group's weights per component; the defaults when none were set (or the stored value is unusable)."""
    raw = chat.vanguard_weights if chat is not None else None
    if not raw:
        return dict(DEFAULT_WEIGHTS)
    stored: dict[str, int] = {}
    for part in raw.split(","):
        name, _, value = part.partition("=")
        if name in COMPONENTS and _WEIGHT.fullmatch(value) and int(value) <= MAX_WEIGHT:
            stored[name] = int(value)
    if not any(stored.values()):
        return dict(DEFAULT_WEIGHTS)
    return {component: stored.get(component, 0) for component in COMPONENTS}


def parse_weights(text: str, current: dict[str, int]) -> dict[str, int] | None:
    """ "出勤=40 回执=20 学习=30 亮身份=10" (or attendance/acks/learning/identity): changes to ``current``;
    "默认"/"default": back to the defaults (None). Each weight 0–100, at least one above 0."""
    pieces = [piece for piece in re.split(r"[,，、;；\s]+", (text or "").strip()) if piece]
    if not pieces:
        raise DomainError("vanguard.bad_weights", value="")
    if len(pieces) == 1 and pieces[0].lower() in RESET_WORDS:
        return None
    weights = dict(current)
    for piece in pieces:
        name, sep, value = piece.replace("：", "=").replace(":", "=").partition("=")
        component = COMPONENT_NAMES.get(name.strip().lower())
        value = value.strip().removesuffix("%")
        if not sep or component is None or not _WEIGHT.fullmatch(value) or int(value) > MAX_WEIGHT:
            raise DomainError("vanguard.bad_weights", value=piece[:30])
        weights[component] = int(value)
    if not any(weights.values()):
        raise DomainError("vanguard.weights_all_zero")
    return weights


async def set_weights(session: AsyncSession, chat_pk: int, actor_id: int, weights: dict[str, int] | None) -> Chat:
    chat = await chat_service.get_chat_by_pk(session, chat_pk)
    if chat is None:
        raise DomainError("errors.chat_gone")
    chat.vanguard_weights = (
        None if weights is None else ",".join(f"{component}={weights[component]}" for component in COMPONENTS)
    )
    session.add(
        AuditLog(
            chat_id=chat_pk, actor_id=actor_id, action="settings", detail=f"vanguard_weights={chat.vanguard_weights}"
        )
    )
    await session.flush()
    return chat


# ------------------------------------------------------------------------------------------ periods


@dataclass(frozen=True)
class Period:
    months_back: int
    zone: ZoneInfo
    first_day: date
    end_day: date  # the first day after the month
    start: datetime
    end: datetime  # the month's end, or now for the month under way

    @property
    def last_day(self) -> date:
        """The last day counted: today for the month under way."""
        return (self.end - timedelta(microseconds=1)).astimezone(self.zone).date()

    @property
    def under_way(self) -> bool:
        return self.end < _midnight(self.end_day, self.zone)


def period_of(now: datetime, zone: ZoneInfo, months_back: int = 0) -> Period:
    if months_back not in PERIODS:
        raise DomainError("errors.button_expired")
    today = now.astimezone(zone).date()
    first = date(today.year, today.month, 1)
    for _ in range(months_back):
        first = (first - timedelta(days=1)).replace(day=1)
    _, end_day = attendance_service.period_of(first, "month")
    return Period(months_back, zone, first, end_day, _midnight(first, zone), min(_midnight(end_day, zone), now))


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


# ------------------------------------------------------------------------------------------ the index


def round_half_up(value: float) -> int:
    # round() rounds halves to even: 62.5 would show as 62 on one line and 63.5 as 64 on the next.
    return int(value + 0.5 + 1e-9)


@dataclass(frozen=True)
class MemberScore:
    entry: RosterEntry
    rates: dict[str, float | None]  # component → 0..1; None: nothing to count for this member
    score: float | None  # 0..100; None when no weighted component has anything to count

    @property
    def index(self) -> int | None:
        return None if self.score is None else round_half_up(self.score)


def score_of(rates: dict[str, float | None], weights: dict[str, int]) -> float | None:
    counted = [component for component in COMPONENTS if rates.get(component) is not None and weights[component] > 0]
    total = sum(weights[component] for component in counted)
    if not total:
        return None
    return 100 * sum(weights[component] * rates[component] for component in counted) / total


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class GroupIndex:
    chat: Chat
    period: Period
    weights: dict[str, int]
    members: list[MemberScore]  # best first; those with no figure last

    @property
    def average(self) -> float | None:
        return _mean([member.score for member in self.members if member.score is not None])

    def component_average(self, component: str) -> float | None:
        return _mean([member.rates[component] for member in self.members if member.rates[component] is not None])

    @property
    def left_out(self) -> list[str]:
        """Weighted components with nothing to count for anyone (e.g. no meeting held): renormalised away."""
        return [
            component
            for component in COMPONENTS
            if self.weights[component] > 0 and self.component_average(component) is None
        ]

    @property
    def partly_counted(self) -> bool:
        """Whether some members' figures leave out a component that others have (a newcomer, say)."""
        return any(
            member.rates[component] is None
            for member in self.members
            for component in COMPONENTS
            if self.weights[component] > 0 and component not in self.left_out
        )


@dataclass
class _Tally:
    done: float = 0.0
    due: int = 0

    def add(self, done: float) -> None:
        self.done += done
        self.due += 1

    @property
    def rate(self) -> float | None:
        return self.done / self.due if self.due else None


@dataclass
class _Tallies:
    by_user: dict[int, _Tally] = field(default_factory=dict)

    def add(self, user_id: int, done: float) -> None:
        self.by_user.setdefault(user_id, _Tally()).add(done)

    def rate(self, user_id: int) -> float | None:
        tally = self.by_user.get(user_id)
        return tally.rate if tally is not None else None


async def group_index(
    session: AsyncSession, chat: Chat, now: datetime, zone: ZoneInfo, months_back: int = 0
) -> GroupIndex:
    period = period_of(now, zone, months_back)
    roster = await roster_service.roster_of(session, chat.id)
    # Those who left are no longer the group's to assess; those first seen after the month were not there.
    people = [
        entry
        for entry in roster.entries
        if entry.section != "left" and (entry.first_seen is None or entry.first_seen < period.end)
    ]
    attendance = await _attendance(session, chat.id, period)
    acks = await _acks(session, chat.id, period, people)
    learning = await _learning(session, chat.id, period, people)
    weights = weights_of(chat)
    members = []
    for entry in people:
        rates = {
            "attendance": attendance.rate(entry.user_id),
            "acks": acks.rate(entry.user_id),
            "learning": learning.rate(entry.user_id),
            "identity": IDENTITY_RATES.get(entry.section, 0.0),
        }
        members.append(MemberScore(entry, rates, score_of(rates, weights)))
    members.sort(key=lambda member: (member.score is None, -(member.score or 0), member.entry.name))
    return GroupIndex(chat, period, weights, members)


async def _attendance(session: AsyncSession, chat_pk: int, period: Period) -> _Tallies:
    tallies = _Tallies()
    for meeting_id in await vanguard_store.held_meetings(session, chat_pk, period.start, period.end):
        state = await attendance_service.attendance(session, meeting_id, chat_pk)
        for person, _ in state.on_time:
            tallies.add(person.user_id, 1.0)
        for person, _ in state.late:
            tallies.add(person.user_id, LATE_CREDIT)
        for person in state.absent:
            tallies.add(person.user_id, 0.0)
    return tallies


async def _acks(session: AsyncSession, chat_pk: int, period: Period, people: list[RosterEntry]) -> _Tallies:
    posts = await vanguard_store.notice_posts(session, chat_pk, period.start, period.end)
    acked = await vanguard_store.acks_on(session, [post_id for post_id, _ in posts])
    tallies = _Tallies()
    for entry in people:
        for post_id, posted_at in posts:
            did = (post_id, entry.user_id) in acked
            if did or entry.first_seen is None or entry.first_seen <= posted_at:
                tallies.add(entry.user_id, 1.0 if did else 0.0)
    return tallies


async def _learning(session: AsyncSession, chat_pk: int, period: Period, people: list[RosterEntry]) -> _Tallies:
    pushes = await vanguard_store.lesson_pushes(session, chat_pk, period.first_day, period.end_day)
    studied = await vanguard_store.studies_on(session, [push_id for push_id, _ in pushes])
    tallies = _Tallies()
    for entry in people:
        # Pushes are dated by the group's day: whoever was there that day could still study it.
        since = entry.first_seen.astimezone(period.zone).date() if entry.first_seen is not None else None
        for push_id, day in pushes:
            did = (push_id, entry.user_id) in studied
            if did or since is None or since <= day:
                tallies.add(entry.user_id, 1.0 if did else 0.0)
    return tallies


# ------------------------------------------------------------------------------------------ per unit


@dataclass(frozen=True)
class UnitRow:
    unit: UnitNode
    index: GroupIndex


@dataclass(frozen=True)
class UnitIndex:
    unit: UnitNode  # the group's own unit; the rows are its groups and those of the units below it
    period: Period
    rows: list[UnitRow]

    @property
    def scores(self) -> list[float]:
        return [member.score for row in self.rows for member in row.index.members if member.score is not None]

    @property
    def average(self) -> float | None:
        """Over the members of all the groups, not over the groups: a group of 40 weighs more than one of 4."""
        return _mean(self.scores)


async def unit_index(
    session: AsyncSession, chat: Chat, now: datetime, *, default_timezone: str, months_back: int = 0
) -> UnitIndex:
    """The 先锋指数 of every group bound to the group's unit or a unit below it, each in its own time zone
    and with its own weights."""
    if chat.unit_id is None:
        raise DomainError("vanguard.not_bound")
    nodes = await org_service.descendants(session, chat.unit_id)
    if not nodes:
        raise DomainError("vanguard.not_bound")
    bound = await org_service.bound_chats(session, [node.id for node in nodes])
    rows = []
    for node in nodes:
        for group in bound.get(node.id, []):
            zone = chat_service.zone_or_default(group.timezone, default_timezone)
            rows.append(UnitRow(node, await group_index(session, group, now, zone, months_back)))
    own_zone = chat_service.zone_or_default(chat.timezone, default_timezone)
    return UnitIndex(nodes[0], period_of(now, own_zone, months_back), rows)
