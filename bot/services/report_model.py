"""What a monthly report holds: plain figures, computed once (``bot.services.reports``) and drawn many ways
(the chart, the Excel 台账, the CSV files, the text summary). Nothing here touches the database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


def ratio(done: float, due: float) -> float | None:
    """done / due, or None when nothing was due (shown as "—", never as 0 %)."""
    return done / due if due else None


@dataclass(frozen=True)
class RequiredRow:
    """A meeting type the group must hold, and whether it did in the period around the report's month."""

    kind: str  # general | committee | group | lecture (see meetings.KINDS)
    period: str  # month | quarter | year
    first_day: date  # the period's first day
    end_day: date  # the first day after the period
    held: int  # meetings of the kind held (closed) in the period up to the report month's end

    @property
    def met(self) -> bool:
        return self.held > 0


@dataclass(frozen=True)
class MeetingRow:
    meeting_id: int
    kind: str
    title: str
    starts_at: datetime  # aware
    expected: int
    on_time: int
    late: int
    leave: int
    absent: int

    @property
    def present(self) -> int:
        return self.on_time + self.late

    @property
    def rate(self) -> float | None:
        return ratio(self.present, self.expected)


@dataclass(frozen=True)
class MemberRow:
    user_id: int
    name: str
    section: str  # verified | pending | rejected | undeclared (亮身份)
    member_type: str | None  # full | probationary | activist | masses
    meetings_expected: int  # of the month's meetings, those the member was expected at (on leave included)
    meetings_present: int  # on time or late
    meetings_late: int
    meetings_leave: int
    notices_due: int
    notices_acked: int
    lessons_due: int
    lessons_studied: int
    points: int  # the month's 学习达人榜 points

    @property
    def attendance_rate(self) -> float | None:
        return ratio(self.meetings_present, self.meetings_expected)

    @property
    def ack_rate(self) -> float | None:
        return ratio(self.notices_acked, self.notices_due)

    @property
    def study_rate(self) -> float | None:
        return ratio(self.lessons_studied, self.lessons_due)


@dataclass(frozen=True)
class NoticeRow:
    post_id: int
    posted_at: datetime  # aware
    excerpt: str  # the notice's first words, one line
    expected: int  # members in the group when it went out
    acked: int

    @property
    def rate(self) -> float | None:
        return ratio(self.acked, self.expected)


@dataclass(frozen=True)
class LessonRow:
    push_id: int
    pushed_on: date  # the group's day
    title: str
    members: int  # members in the group that day
    studied: int
    quiz_answered: int
    quiz_correct: int

    @property
    def rate(self) -> float | None:
        return ratio(self.studied, self.members)


@dataclass(frozen=True)
class Learner:
    rank: int
    name: str  # already replaced by the "name hidden" text for members who asked
    points: int


@dataclass(frozen=True)
class GroupReport:
    chat_pk: int
    title: str  # the group's title
    unit_name: str | None  # the unit it is bound to
    month: date  # the month's first day
    timezone: str
    generated_at: datetime  # aware; the figures count up to min(month end, this moment)
    required: list[RequiredRow] = field(default_factory=list)
    meetings: list[MeetingRow] = field(default_factory=list)
    members: list[MemberRow] = field(default_factory=list)
    notices: list[NoticeRow] = field(default_factory=list)
    lessons: list[LessonRow] = field(default_factory=list)
    top_learners: list[Learner] = field(default_factory=list)  # the month's best, at most 5

    @property
    def undeclared(self) -> list[MemberRow]:
        return [member for member in self.members if member.section == "undeclared"]

    @property
    def attendance_rate(self) -> float | None:
        """Present / expected over all the month's meetings: 到会率 as each meeting's summary gives it
        (those on leave were expected; the ledger lists them beside)."""
        return ratio(sum(row.present for row in self.meetings), sum(row.expected for row in self.meetings))

    @property
    def ack_rate(self) -> float | None:
        return ratio(sum(row.acked for row in self.notices), sum(row.expected for row in self.notices))

    @property
    def learning_participation(self) -> float | None:
        """Members who studied at least one of the month's lessons / members who had one to study."""
        due = [member for member in self.members if member.lessons_due]
        return ratio(sum(1 for member in due if member.lessons_studied), len(due))

    @property
    def required_met(self) -> int:
        return sum(1 for row in self.required if row.met)


@dataclass(frozen=True)
class UnitReport:
    """The park-level view: the unit's groups (its own and those of the units below), one row each."""

    unit_name: str
    month: date
    generated_at: datetime
    groups: list[GroupReport] = field(default_factory=list)

    @property
    def attendance_rate(self) -> float | None:
        meetings = [row for group in self.groups for row in group.meetings]
        return ratio(sum(row.present for row in meetings), sum(row.expected for row in meetings))

    @property
    def ack_rate(self) -> float | None:
        notices = [row for group in self.groups for row in group.notices]
        return ratio(sum(row.acked for row in notices), sum(row.expected for row in notices))

    @property
    def learning_participation(self) -> float | None:
        due = [member for group in self.groups for member in group.members if member.lessons_due]
        return ratio(sum(1 for member in due if member.lessons_studied), len(due))
