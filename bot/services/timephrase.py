"""Time phrases: the one parser for every time the bot takes, one-off or recurring, Chinese or English.

``parse("明天下午3点" | "每月最后一个周五 14:00" | "every mon, wed 7:30pm" | "0 9 * * 1-5", now=, zone=)`` gives
a :class:`Rule`. ``Rule.canonical()`` is the ASCII storage form; it parses back to an equal Rule whatever
``now`` and ``zone`` are (one-offs are stored as absolute local dates). ``Rule.next_after`` computes runs in
the group's time zone and returns them in UTC.

Decisions worth knowing:

* 晚上12点 / 今晚0点 / 半夜12点 / "midnight" are refused (``timephrase.ambiguous_midnight``): people mean
  the midnight *after* that evening as often as the one before. 凌晨12点 and "12am" are 00:00.
* English "workdays" / "every workday" / "every working day" are China's official working days (holidays
  off, adjusted Saturdays on); "weekdays" / "every weekday" is simply Monday–Friday, a weekly rule.
* Cron phrases use crontab numbering (0 or 7 = Sunday). APScheduler 3 numbers Monday 0 even in
  ``from_crontab``, so the day-of-week field is translated to day names. As in crontab, a rule that
  restricts both day of month and day of week runs when *either* matches.
* Daylight saving: a wall time that does not exist on some day runs at the same offset as before the
  change (02:30 → 03:30 on spring-forward day); one that happens twice runs once, at the first.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
from apscheduler.triggers.cron import CronTrigger

from bot.services.errors import DomainError

KINDS = ("once", "daily", "workdays", "weekly", "monthly_day", "monthly_nth", "cron")
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_APS_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # APScheduler's names, Monday first
_APS_POSITIONS = {1: "1st", 2: "2nd", 3: "3rd", 4: "4th", -1: "last"}
_ORDINALS = _APS_POSITIONS  # the canonical phrase uses the same words
_EPSILON = timedelta(microseconds=1)
_WORKDAY_SEARCH_DAYS = 60  # China's longest run of days off is about nine days
_MAX_REPEATED_SKIPS = 200  # repeated wall times skipped in one fall-back hour, minute by minute at most
_MAX_LENGTH = 200  # longer input is not a time phrase; refusing it early keeps the scanner cheap
_VALUE_LENGTH = 60  # how much of the input an error message quotes
_YEARS = range(1970, 3000)


class PhraseError(DomainError):
    """A time phrase we cannot use. ``understood`` lists what we did make out, as (role, fragment) with
    role "repeat", "date" or "time"; ``leftover`` is the part we could not read ("" if none)."""

    def __init__(
        self,
        key: str,
        *,
        value: str = "",
        understood: tuple[tuple[str, str], ...] = (),
        leftover: str = "",
    ) -> None:
        super().__init__(key, value=value)
        self.understood = tuple(understood)
        self.leftover = leftover


# ------------------------------------------------------------------------------------------ workdays


@cache
def workdays_covered(year: int) -> bool:
    """Whether the holiday calendar knows this year's official days off and adjusted working days."""
    if not 1 <= year <= 9999:
        return False
    try:
        chinese_calendar.is_workday(date(year, 1, 1))
    except NotImplementedError:
        return False
    return True


def is_workday(day: date) -> bool:
    """China's official working day; Monday–Friday in years the calendar does not cover yet."""
    if workdays_covered(day.year):
        return chinese_calendar.is_workday(day)
    return day.weekday() < 5


# ------------------------------------------------------------------------------------------ the rule


@dataclass(frozen=True)
class Rule:
    kind: str  # one of KINDS
    hour: int = 0
    minute: int = 0
    date: date | None = None  # once: the local date
    weekdays: tuple[int, ...] = ()  # weekly: 0=Mon..6=Sun; monthly_nth: exactly one weekday
    day: int = 0  # monthly_day: 1..31, or -1 = the last day of the month
    nth: int = 0  # monthly_nth: 1..4, or -1 = the last
    cron: str = ""  # cron: five fields, crontab numbering

    def __post_init__(self) -> None:
        # Normalised here so that rules built by hand compare equal to parsed ones.
        object.__setattr__(self, "weekdays", tuple(sorted(set(self.weekdays))))
        object.__setattr__(self, "cron", " ".join(self.cron.lower().split()))
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid {self.kind!r} rule: {problem}")

    def _problem(self) -> str:
        if self.kind not in KINDS:
            return "unknown kind"
        if not (0 <= self.hour <= 23 and 0 <= self.minute <= 59):
            return "time out of range"
        if self.kind == "once" and self.date is None:
            return "no date"
        if any(not 0 <= day <= 6 for day in self.weekdays):
            return "weekday out of range"
        if self.kind == "weekly" and not self.weekdays:
            return "no weekday"
        if self.kind == "monthly_day" and not (1 <= self.day <= 31 or self.day == -1):
            return "day out of range"
        if self.kind == "monthly_nth" and (len(self.weekdays) != 1 or not (1 <= self.nth <= 4 or self.nth == -1)):
            return "needs one weekday and a position 1..4 or -1"
        if self.kind == "cron" and len(self.cron.split()) != 5:
            return "cron needs five fields"
        return ""

    @property
    def recurring(self) -> bool:
        return self.kind != "once"

    def canonical(self) -> str:
        """The storage form: plain English that ``parse`` maps back to an equal Rule."""
        clock = f"{self.hour:02d}:{self.minute:02d}"
        if self.kind == "once":
            return f"{self.date.isoformat()} {clock}"
        if self.kind == "daily":
            return f"every day {clock}"
        if self.kind == "workdays":
            return f"workdays {clock}"
        if self.kind == "weekly":
            return f"every {', '.join(WEEKDAY_NAMES[day] for day in self.weekdays)} {clock}"
        if self.kind == "monthly_day":
            where = "the last day" if self.day == -1 else f"day {self.day}"
            return f"every month on {where} {clock}"
        if self.kind == "monthly_nth":
            return f"every month on the {_ORDINALS[self.nth]} {WEEKDAY_NAMES[self.weekdays[0]]} {clock}"
        return f"cron {self.cron}"

    def next_after(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        """The first run strictly after ``moment`` (aware), reckoned in ``zone``'s local time, in UTC;
        None when there is none (a one-off already past)."""
        if moment.tzinfo is None:
            raise ValueError("moment must be timezone-aware")
        if self.kind == "once":
            run = _at(self.date, self.hour, self.minute, zone)
            return run if run > moment else None
        if self.kind == "workdays":
            return self._next_workday(moment, zone)
        return _next_fire(_triggers(self, zone), moment, zone)

    def upcoming(self, after: datetime, zone: ZoneInfo, count: int) -> list[datetime]:
        runs: list[datetime] = []
        run = after
        while len(runs) < count:
            run = self.next_after(run, zone)
            if run is None:
                break
            runs.append(run)
        return runs

    def uses_workday_fallback(self, runs: list[datetime], zone: ZoneInfo) -> bool:
        """Whether some of these runs were placed by the Monday–Friday guess, not the holiday calendar."""
        return self.kind == "workdays" and any(not workdays_covered(run.astimezone(zone).year) for run in runs)

    def _next_workday(self, moment: datetime, zone: ZoneInfo) -> datetime | None:
        day = moment.astimezone(zone).date()
        for _ in range(_WORKDAY_SEARCH_DAYS):
            if is_workday(day):
                run = _at(day, self.hour, self.minute, zone)
                if run > moment:
                    return run
            if day == date.max:
                break
            day += timedelta(days=1)
        return None


def _at(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    """A local wall time as a UTC instant. fold=0: a repeated time is its first occurrence, and a skipped
    one keeps the offset from before the change (the same choice APScheduler makes)."""
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def _repeated_wall_time(run: datetime, zone: ZoneInfo) -> bool:
    """The second occurrence of a local time that happens twice (the fall-back hour)."""
    local = run.astimezone(zone)
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


def _next_fire(triggers: tuple[CronTrigger, ...], moment: datetime, zone: ZoneInfo) -> datetime | None:
    # get_next_fire_time returns a time >= its start rounded up to the second; runs fall on whole seconds,
    # so starting one microsecond later makes it strictly after ``moment``. The arithmetic is done in UTC:
    # adding to a local time drops its fold and would land back on the first of a repeated hour.
    start = moment.astimezone(UTC)
    for _ in range(_MAX_REPEATED_SKIPS):
        runs = []
        for trigger in triggers:
            try:
                run = trigger.get_next_fire_time(None, start + _EPSILON)
            except (OverflowError, ValueError):  # past the end of datetime's range
                run = None
            if run is not None:
                runs.append(run)
        if not runs:
            return None
        run = min(runs)
        if not _repeated_wall_time(run, zone):  # a wall time runs once, even when the clock shows it twice
            return run.astimezone(UTC)
        start = run.astimezone(UTC)
    return None


def _triggers(rule: Rule, zone: ZoneInfo) -> tuple[CronTrigger, ...]:
    if zone.key is None:  # a zone read from a file has no name to cache by
        return _build_triggers(rule, zone)
    return _cached_triggers(rule, zone.key)


@lru_cache(maxsize=1024)
def _cached_triggers(rule: Rule, zone_key: str) -> tuple[CronTrigger, ...]:
    return _build_triggers(rule, ZoneInfo(zone_key))


def _build_triggers(rule: Rule, zone: ZoneInfo) -> tuple[CronTrigger, ...]:
    if rule.kind == "cron":
        return _cron_triggers(rule.cron, zone)
    at: dict[str, Any] = {"hour": rule.hour, "minute": rule.minute, "timezone": zone}
    if rule.kind == "daily":
        return (CronTrigger(**at),)
    if rule.kind == "weekly":
        return (CronTrigger(day_of_week=",".join(_APS_DAYS[day] for day in rule.weekdays), **at),)
    if rule.kind == "monthly_day":
        return (CronTrigger(day="last" if rule.day == -1 else rule.day, **at),)
    if rule.kind == "monthly_nth":
        return (CronTrigger(day=f"{_APS_POSITIONS[rule.nth]} {_APS_DAYS[rule.weekdays[0]]}", **at),)
    raise ValueError(f"{rule.kind} rules have no cron trigger")


# ------------------------------------------------------------------------------------------ cron

_CRON_NUMBERS = re.compile(r"(?:\*|\d{1,2}(?:-\d{1,2})?)(?:/\d{1,2})?")
_CRON_MONTHS = re.compile(r"(?:\*|\d{1,2}(?:-\d{1,2})?)(?:/\d{1,2})?|[a-z]{3}(?:-[a-z]{3})?")
_CRON_WEEKDAYS = re.compile(r"(?:(?P<all>\*)|(?P<first>\d|[a-z]{3})(?:-(?P<last>\d|[a-z]{3}))?)(?:/(?P<step>\d{1,2}))?")
_CRONTAB_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) = Sunday
_BARE_CRON = re.compile(r"[\d*][\d*/,-]*(?: [\d*][\d*/,-]*){2}(?: [\da-z*][\da-z*/,-]*){2}", re.I | re.A)


def _crontab_day(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if number > 7:
            raise ValueError(f"day of week {number}")
        return number % 7
    return _CRONTAB_DAYS.index(text)  # ValueError for an unknown name


def _cron_weekdays(field: str) -> str:
    """A crontab day-of-week field in APScheduler 3's terms: the days spelled out by name."""
    days: set[int] = set()
    for item in field.split(","):
        match = _CRON_WEEKDAYS.fullmatch(item)
        if match is None:
            raise ValueError(f"day of week {item!r}")
        step = int(match["step"] or 1)
        if step == 0:
            raise ValueError("step 0")
        if match["all"]:
            first, last = 0, 6
        else:
            first = _crontab_day(match["first"])
            last = _crontab_day(match["last"]) if match["last"] else (6 if match["step"] else first)
            if match["last"] and match["last"] in ("7", "sun"):
                last = 7  # "5-7" is Friday to Sunday
            if last < first:
                raise ValueError(f"range {item!r}")
        days |= {number % 7 for number in range(first, last + 1, step)}
    return ",".join(_APS_DAYS[(number + 6) % 7] for number in sorted(days, key=lambda n: (n + 6) % 7))


def _cron_triggers(expr: str, zone: ZoneInfo) -> tuple[CronTrigger, ...]:
    """Triggers for a five-field crontab expression; ValueError when it is not one."""
    fields = expr.lower().split()
    if len(fields) != 5:
        raise ValueError("cron needs five fields")
    minute, hour, day, month, weekday = fields
    checks = ((minute, _CRON_NUMBERS), (hour, _CRON_NUMBERS), (day, _CRON_NUMBERS), (month, _CRON_MONTHS))
    for field, pattern in checks:
        if not all(pattern.fullmatch(item) for item in field.split(",")):
            raise ValueError(f"field {field!r}")
    common: dict[str, Any] = {"minute": minute, "hour": hour, "month": month, "timezone": zone}
    weekday_names = _cron_weekdays(weekday)
    if day.startswith("*") or weekday.startswith("*"):
        return (CronTrigger(day=day, day_of_week=weekday_names, **common),)
    # Crontab runs when either the day of month or the day of week matches; APScheduler wants both.
    return (CronTrigger(day=day, **common), CronTrigger(day_of_week=weekday_names, **common))


# ------------------------------------------------------------------------------------------ scanning
#
# The input is NFKC-normalised (full-width digits and colons become ASCII) and its whitespace collapsed,
# then read left to right: at each position the matchers below are tried in turn, each recognising one
# piece (a repeat, a date, a time of day, a part of the day) in Chinese or English. Numbers are read where
# they stand, so 周一, 一刻 and 第一个 keep their meaning; Chinese numerals go through cn2an one run at a
# time. Whatever no matcher takes is the leftover. Patterns are ASCII-only case-insensitive so that no
# exotic letter can pass for an English word.

_FLAGS = re.I | re.A
_CN = "零〇一二两三四五六七八九十"
_NUM = rf"(?:[0-9]{{1,2}}(?![0-9])|[{_CN}]{{1,4}})"  # a number of up to two digits
_AMPM = r"(?P<ampm>a\.?m\.?|p\.?m\.?)(?![a-z])"
_WEEK = r"(?:周|星期|礼拜|禮拜)"
_ZH_DAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_ZH_DAYS |= {str(number): number - 1 for number in range(1, 8)}
_CLOCK_MARKS = frozenset("点时點時:")

# A part of the day, and what it does to the hour said with it.
_PERIOD_WORDS = {
    "凌晨": "small_hours",
    "清晨": "morning",
    "早上": "morning",
    "早晨": "morning",
    "上午": "morning",
    "早": "morning",
    "中午": "noon",
    "正午": "noon",
    "下午": "afternoon",
    "午后": "afternoon",
    "傍晚": "evening",
    "晚上": "evening",
    "夜里": "evening",
    "夜间": "evening",
    "晚": "evening",
    "深夜": "late",
    "半夜": "late",
    "午夜": "late",
    "morning": "morning",
    "afternoon": "afternoon",
    "evening": "evening",
    "night": "late",
}
_ZH_PERIOD = "|".join(sorted((word for word in _PERIOD_WORDS if not word.isascii()), key=len, reverse=True))


@dataclass
class _Token:
    role: str  # "repeat" | "date" | "time" | "period"
    start: int
    end: int
    value: Any = None
    period: str = ""  # the part of the day it implies: 今晚 → evening
    error: str = ""  # recognised but impossible (2月30日, 25点): the PhraseError key
    incomplete: bool = False  # a beginning without its end (每周 with no weekday)


def _number(text: str) -> int | None:
    """An Arabic or Chinese numeral; None when it is not one (十十)."""
    if text.isascii():
        return int(text) if text.isdigit() else None
    import cn2an  # on first use: importing it costs 0.15-0.3 s of every start

    try:
        value = cn2an.cn2an(text, "smart")
    except Exception:  # cn2an refuses malformed numerals with assorted exception types
        return None
    return int(value) if isinstance(value, int | float) and float(value).is_integer() else None


# --- weekdays


_CN_HOUR_AHEAD = re.compile(rf"([{_CN}]+)\s*[点时點時]")


def _zh_day(text: str, pos: int, *, bare: bool) -> tuple[int, int] | None:
    """A weekday character (一..日/天, 1..7) at pos, as (weekday, end). ``bare`` items follow another
    weekday with no 周 of their own: there 二十点 is an hour, not 二 + 十点."""
    char = text[pos : pos + 1]
    if char not in _ZH_DAYS:
        return None
    after = text[pos + 1 : pos + 2]
    if after in _CLOCK_MARKS or (char.isdigit() and after and (after.isdigit() or after == ".")):
        return None  # 三点, 19:30: the number is a time
    if bare and not char.isdigit():
        hour = _CN_HOUR_AHEAD.match(text, pos)
        if hour and (value := _number(hour[1])) is not None and value <= 24:
            return None
    return _ZH_DAYS[char], pos + 1


_ZH_LIST_SEP = re.compile(r"\s*(?:[、,/&]|和|及|与|或)\s*")
_ZH_RANGE_SEP = re.compile(rf"\s*(?:至|到|-|~|—)\s*{_WEEK}?")
_ZH_WEEK_PREFIX = re.compile(_WEEK)


def _days_between(first: int, last: int) -> list[int]:
    return [(first + step) % 7 for step in range((last - first) % 7 + 1)]


def _zh_weekday_list(text: str, pos: int) -> tuple[list[int], int]:
    """一、三、五 / 一三五 / 一至五 / 一、周三 after 每周: the weekdays and where they end."""
    days: list[int] = []
    end = pos
    while True:
        cursor = end
        if days:
            separator = _ZH_LIST_SEP.match(text, cursor)
            cursor = separator.end() if separator else cursor
        prefix = _ZH_WEEK_PREFIX.match(text, cursor) if days else None
        item = _zh_day(text, prefix.end() if prefix else cursor, bare=bool(days) and prefix is None)
        if item is None:
            return days, end
        first, end = item
        span = _ZH_RANGE_SEP.match(text, end)
        last = _zh_day(text, span.end(), bare=False) if span else None
        if last is not None:
            days += _days_between(first, last[0])
            end = last[1]
        else:
            days.append(first)


_EN_DAY = re.compile(
    r"(?P<name>monday|mon|tuesday|tues|tue|wednesday|weds|wed|thursday|thurs|thur|thu|friday|fri"
    r"|saturday|sat|sunday|sun)(?P<plural>s)?\.?(?![a-z])",
    _FLAGS,
)
_EN_LIST_SEP = re.compile(r"\s*(?:,|/|&|and(?![a-z])|or(?![a-z]))?\s*(?:and\s+)?", _FLAGS)
_EN_RANGE_SEP = re.compile(r"\s*(?:-|–|to|through|thru|till|until)\s*", _FLAGS)


def _en_day_index(match: re.Match[str]) -> int:
    return _APS_DAYS.index(match["name"].lower()[:3])


def _en_weekday_list(text: str, pos: int) -> tuple[list[int], bool, int]:
    """ "mon, wed" / "monday and friday" / "mon-fri": the weekdays, whether any was plural, the end."""
    days: list[int] = []
    plural = False
    end = pos
    while True:
        cursor = _EN_LIST_SEP.match(text, end).end() if days else end
        match = _EN_DAY.match(text, cursor)
        if match is None:
            return days, plural, end
        plural = plural or bool(match["plural"])
        first, end = _en_day_index(match), match.end()
        span = _EN_RANGE_SEP.match(text, end)
        last = _EN_DAY.match(text, span.end()) if span else None
        if last is not None:
            days += _days_between(first, _en_day_index(last))
            end = last.end()
        else:
            days.append(first)


# --- repeats


_ZH_DAILY = re.compile(r"每天|每日|天天|每一天")
_ZH_DAILY_PERIOD = {"每晚": "evening", "每夜": "evening", "每早": "morning"}
_ZH_WORKDAYS = re.compile(r"(?:每(?:一?个)?)?(?:法定)?工作日")
_ZH_WEEKLY = re.compile(rf"每(?:一?个)?{_WEEK}|每逢{_WEEK}")
_ZH_MONTHLY = re.compile(r"每(?:一?个)?月(?:份)?\s*(?:的\s*)?")
_ZH_MONTH_DAY = re.compile(rf"(?P<n>{_NUM})\s*(?:日|号|號)")
_ZH_MONTH_LAST_DAY = re.compile(r"最后一天|最后1天|最末一天|月底|月末")
_ZH_MONTH_NTH = re.compile(
    rf"(?:第\s*(?P<n>{_NUM})\s*个?|(?P<last>最后一个|最后1个|倒数第一个|倒数第1个|最后))\s*{_WEEK}"
)


def _zh_repeat(text: str, pos: int) -> _Token | None:
    if match := _ZH_DAILY.match(text, pos):
        return _Token("repeat", pos, match.end(), {"kind": "daily"})
    if (word := text[pos : pos + 2]) in _ZH_DAILY_PERIOD:
        return _Token("repeat", pos, pos + 2, {"kind": "daily"}, period=_ZH_DAILY_PERIOD[word])
    if match := _ZH_WORKDAYS.match(text, pos):
        return _Token("repeat", pos, match.end(), {"kind": "workdays"})
    if match := _ZH_WEEKLY.match(text, pos):
        if text.startswith("末", match.end()):  # 每周末
            return _Token("repeat", pos, match.end() + 1, {"kind": "weekly", "weekdays": (5, 6)})
        days, end = _zh_weekday_list(text, match.end())
        if not days:
            return _Token("repeat", pos, match.end(), incomplete=True)
        return _Token("repeat", pos, end, {"kind": "weekly", "weekdays": tuple(days)})
    if match := _ZH_MONTHLY.match(text, pos):
        return _zh_monthly(text, pos, match.end())
    return None


def _zh_monthly(text: str, pos: int, cursor: int) -> _Token:
    """What follows 每月: 5日 / 5号 / 最后一天 / 第一个周一 / 最后一个周五."""
    if match := _ZH_MONTH_DAY.match(text, cursor):
        day = _number(match["n"])
        token = _Token("repeat", pos, match.end(), {"kind": "monthly_day", "day": day})
        token.error = "" if day is not None and 1 <= day <= 31 else "timephrase.bad_date"
        return token
    if match := _ZH_MONTH_LAST_DAY.match(text, cursor):
        return _Token("repeat", pos, match.end(), {"kind": "monthly_day", "day": -1})
    if match := _ZH_MONTH_NTH.match(text, cursor):
        weekday = _zh_day(text, match.end(), bare=False)
        if weekday is None:
            return _Token("repeat", pos, match.end(), incomplete=True)
        nth = -1 if match["last"] else _number(match["n"])
        token = _Token("repeat", pos, weekday[1], {"kind": "monthly_nth", "nth": nth, "weekdays": (weekday[0],)})
        token.error = "" if nth == -1 or (nth is not None and 1 <= nth <= 4) else "timephrase.bad_nth"
        return token
    return _Token("repeat", pos, cursor, incomplete=True)


_EN_DAILY = re.compile(r"(?:daily|everyday|(?:every|each)\s+(?:single\s+)?day)(?![a-z])", _FLAGS)
_EN_WORKDAYS = re.compile(
    r"(?:(?:every|each)\s+(?:work\s*day|working\s+day|business\s+day)"
    r"|work\s*days|working\s+days|business\s+days)(?![a-z])",
    _FLAGS,
)
_EN_WEEKDAYS = re.compile(r"(?:(?:every|each)\s+week\s*day|week\s*days)(?![a-z])", _FLAGS)
_EN_WEEKENDS = re.compile(r"(?:(?:every|each)\s+weekend|weekends)(?![a-z])", _FLAGS)
_EN_MONTHLY = re.compile(r"(?:(?:every|each)\s+month|monthly)(?![a-z])", _FLAGS)
_EN_WEEKLY = re.compile(r"(?:(?:every|each)(?:\s+week(?![a-z]))?|weekly)(?![a-z])(?:\s+on(?![a-z]))?\s*", _FLAGS)
_EN_MONTH_FILLER = re.compile(r"\s*(?:on\s+)?(?:the\s+)?", _FLAGS)
_EN_MONTH_DAY = re.compile(r"(?:day\s*(?P<n>\d{1,2})|(?P<th>\d{1,2})(?:st|nd|rd|th))(?![0-9a-z])", _FLAGS)
_EN_MONTH_LAST_DAY = re.compile(r"last\s+day(?![a-z])", _FLAGS)
_EN_MONTH_NTH = re.compile(r"(?P<nth>first|second|third|fourth|fifth|last|1st|2nd|3rd|4th|5th)\s+", _FLAGS)
_EN_OF_THE_MONTH = re.compile(r"\s+of\s+(?:the|each|every)\s+month(?![a-z])", _FLAGS)
_EN_NTH = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
_EN_NTH |= {"1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5}


def _en_repeat(text: str, pos: int) -> _Token | None:
    if match := _EN_DAILY.match(text, pos):
        return _Token("repeat", pos, match.end(), {"kind": "daily"})
    if match := _EN_WORKDAYS.match(text, pos):
        return _Token("repeat", pos, match.end(), {"kind": "workdays"})
    if match := _EN_WEEKDAYS.match(text, pos):
        return _Token("repeat", pos, match.end(), {"kind": "weekly", "weekdays": (0, 1, 2, 3, 4)})
    if match := _EN_WEEKENDS.match(text, pos):
        return _Token("repeat", pos, match.end(), {"kind": "weekly", "weekdays": (5, 6)})
    if match := _EN_MONTHLY.match(text, pos):
        return _en_monthly(text, pos, match.end())
    if match := _EN_WEEKLY.match(text, pos):
        days, _, end = _en_weekday_list(text, match.end())
        if not days:
            return _Token("repeat", pos, match.end(), incomplete=True)
        return _Token("repeat", pos, end, {"kind": "weekly", "weekdays": tuple(days)})
    days, plural, end = _en_weekday_list(text, pos)
    if days and plural:  # "mondays and fridays"
        return _Token("repeat", pos, end, {"kind": "weekly", "weekdays": tuple(days)})
    return None


def _en_monthly(text: str, pos: int, cursor: int) -> _Token:
    """What follows "every month": on day 5 / the 5th / the last day / the 2nd Monday / the last Friday."""
    cursor = _EN_MONTH_FILLER.match(text, cursor).end()
    token: _Token | None = None
    if match := _EN_MONTH_LAST_DAY.match(text, cursor):
        token = _Token("repeat", pos, match.end(), {"kind": "monthly_day", "day": -1})
    elif (match := _EN_MONTH_NTH.match(text, cursor)) and (weekday := _EN_DAY.match(text, match.end())):
        nth = _EN_NTH[match["nth"].lower()]
        value = {"kind": "monthly_nth", "nth": nth, "weekdays": (_en_day_index(weekday),)}
        token = _Token("repeat", pos, weekday.end(), value, error="" if nth <= 4 else "timephrase.bad_nth")
    elif match := _EN_MONTH_DAY.match(text, cursor):
        day = int(match["n"] or match["th"])
        value = {"kind": "monthly_day", "day": day}
        token = _Token("repeat", pos, match.end(), value, error="" if 1 <= day <= 31 else "timephrase.bad_date")
    if token is None:
        return _Token("repeat", pos, cursor, incomplete=True)
    if tail := _EN_OF_THE_MONTH.match(text, token.end):
        token.end = tail.end()
    return token


_CRON_WORD = re.compile(r"cron(?![a-z])\s*", _FLAGS)


def _cron(text: str, pos: int) -> _Token | None:
    """``cron <five fields>``: the rest of the input is the expression."""
    match = _CRON_WORD.match(text, pos)
    if match is None:
        return None
    return _cron_token(text[match.end() :], pos, len(text))


def _cron_token(expr: str, start: int, end: int) -> _Token:
    expr = " ".join(expr.lower().split())
    try:
        triggers = _cron_triggers(expr, UTC)
        # One that never fires (31 February) is as useless as a malformed one.
        ever = any(trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) for trigger in triggers)
    except (ValueError, OverflowError):
        ever = False
    return _Token("repeat", start, end, {"kind": "cron", "cron": expr}, error="" if ever else "timephrase.bad_cron")


# --- dates


_ZH_RELATIVE = {
    "大后天": (3, ""),
    "后天": (2, ""),
    "今天": (0, ""),
    "今日": (0, ""),
    "明天": (1, ""),
    "明日": (1, ""),
    "今早": (0, "morning"),
    "今晨": (0, "morning"),
    "今晚": (0, "evening"),
    "今夜": (0, "evening"),
    "明早": (1, "morning"),
    "明晨": (1, "morning"),
    "明晚": (1, "evening"),
}
_ZH_RELATIVE_RE = re.compile("|".join(sorted(_ZH_RELATIVE, key=len, reverse=True)))
_ISO_DATE = re.compile(r"(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?![0-9])(?:\s*[日号])?(?:t(?=\d))?", _FLAGS)
_ZH_DATE = re.compile(
    rf"(?:(?P<y>[0-9]{{4}}|[零〇一二三四五六七八九]{{4}})\s*年\s*)?(?P<m>{_NUM})\s*月\s*(?P<d>{_NUM})"
    rf"(?:\s*(?:日|号|號)|(?![0-9{_CN}点时點時:]))"
)
_ZH_WEEKDAY_DATE = re.compile(rf"(?P<rel>下个?|下一个|本|这个?|這個?)?{_WEEK}")
_ZH_DAY_OF_MONTH = re.compile(rf"(?P<d>{_NUM})\s*(?:日|号|號)")

_EN_RELATIVE = re.compile(
    r"(?P<word>(?:the\s+)?day\s+after\s+tomorrow|today|tonight|tomorrow|tmrw|tmr)(?![a-z])", _FLAGS
)
_EN_RELATIVE_DAYS = {"today": (0, ""), "tonight": (0, "evening"), "tomorrow": (1, ""), "tmrw": (1, ""), "tmr": (1, "")}
_EN_WEEKDAY_DATE = re.compile(r"(?:(?P<rel>next|this|coming)\s+)?", _FLAGS)
_EN_NEXT = re.compile(r"next(?![a-z])", _FLAGS)
_EN_MONTHS = (
    r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_EN_YEAR = r"(?:\s*,?\s*(?P<y>\d{4})(?![0-9:]))?"
_EN_MONTH_FIRST = re.compile(rf"{_EN_MONTHS}\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?(?![0-9a-z:]){_EN_YEAR}", _FLAGS)
_EN_DAY_FIRST = re.compile(rf"(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_EN_MONTHS}(?![a-z]){_EN_YEAR}", _FLAGS)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_EN_MONTH_NUMBERS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}


def _date_token(start: int, end: int, year: int | None, month: int | None, day: int | None) -> _Token:
    """An absolute date (year given) or a month and day whose year comes from ``now``."""
    valid = month is not None and day is not None and (year is None or year in _YEARS)
    if valid:
        try:
            date(year or 2000, month, day)  # 2000 is a leap year: 2月29日 exists in some year
        except ValueError:
            valid = False
    if not valid:
        return _Token("date", start, end, error="timephrase.bad_date")
    if year is None:
        return _Token("date", start, end, ("month_day", month, day))
    return _Token("date", start, end, ("absolute", date(year, month, day)))


def _zh_date(text: str, pos: int) -> _Token | None:
    if match := _ZH_RELATIVE_RE.match(text, pos):
        offset, period = _ZH_RELATIVE[match[0]]
        return _Token("date", pos, match.end(), ("relative", offset), period=period)
    if match := _ISO_DATE.match(text, pos):
        return _date_token(pos, match.end(), int(match["y"]), int(match["m"]), int(match["d"]))
    if match := _ZH_DATE.match(text, pos):
        year = _number(match["y"]) if match["y"] else None
        if match["y"] and year is None:
            return _Token("date", pos, match.end(), error="timephrase.bad_date")
        return _date_token(pos, match.end(), year, _number(match["m"]), _number(match["d"]))
    if match := _ZH_WEEKDAY_DATE.match(text, pos):
        weekday = _zh_day(text, match.end(), bare=False)
        rel = match["rel"] or ""
        mode = "next_week" if rel.startswith("下") else "this_week" if rel else "ahead"
        if weekday is not None:
            return _Token("date", pos, weekday[1], ("weekday", weekday[0], mode))
        if rel:  # 下周 with no weekday
            return _Token("date", pos, match.end(), incomplete=True)
    if match := _ZH_DAY_OF_MONTH.match(text, pos):
        day = _number(match["d"])
        if day is None or not 1 <= day <= 31:
            return _Token("date", pos, match.end(), error="timephrase.bad_date")
        return _Token("date", pos, match.end(), ("day_of_month", day))
    return None


def _en_date(text: str, pos: int) -> _Token | None:
    if match := _EN_RELATIVE.match(text, pos):
        word = match["word"].lower()
        offset, period = _EN_RELATIVE_DAYS.get(word, (2, ""))  # anything else is "day after tomorrow"
        return _Token("date", pos, match.end(), ("relative", offset), period=period)
    rel = _EN_WEEKDAY_DATE.match(text, pos)
    if weekday := _EN_DAY.match(text, rel.end()):
        mode = "next_week" if (rel["rel"] or "").lower() == "next" else "ahead"
        return _Token("date", pos, weekday.end(), ("weekday", _en_day_index(weekday), mode))
    if match := _EN_NEXT.match(text, pos):  # "next" with no weekday
        return _Token("date", pos, match.end(), incomplete=True)
    if match := _EN_MONTH_FIRST.match(text, pos) or _EN_DAY_FIRST.match(text, pos):
        month = _EN_MONTH_NUMBERS[match["month"].lower()[:3]]
        year = int(match["y"]) if match["y"] else None
        return _date_token(pos, match.end(), year, month, int(match["d"]))
    return None


# --- times of day


_ZH_CLOCK = re.compile(
    rf"(?:(?P<period>{_ZH_PERIOD})\s*)?(?P<h>{_NUM})\s*(?:点钟|点|時|时|點)"
    # minutes end where the number ends, and are not the start of a date: 0点 二〇二六年…
    rf"(?:(?P<half>半)|(?P<q1>[一1]刻)|(?P<q3>[三3]刻)|(?P<m>{_NUM})(?![{_CN}年月日号號])(?P<fen>分钟?)?|整)?"
)
_DIGITAL_CLOCK = re.compile(
    rf"(?:(?P<period>{_ZH_PERIOD})\s*)?(?:at\s+)?(?P<h>[0-9]{{1,2}})\s*[:.]\s*(?P<m>[0-9]{{2}})(?::00)?(?![0-9])"
    rf"(?:\s*{_AMPM})?",
    _FLAGS,
)
_EN_CLOCK = re.compile(rf"(?:at\s+)?(?P<h>[0-9]{{1,2}})\s*{_AMPM}", _FLAGS)
_EN_HOUR = re.compile(  # 8 o'clock, at 8, 8 in the evening: a bare hour only where it cannot be anything else
    r"(?:(?P<h>[0-9]{1,2})\s*o['’]?\s*clock|at\s+(?P<at>[0-9]{1,2})(?![0-9:.])"
    r"|(?P<bare>[0-9]{1,2})(?=\s+(?:in\s+the\s+(?:morning|afternoon|evening)|at\s+night)(?![a-z])))(?![a-z])",
    _FLAGS,
)
_NOON = re.compile(r"(?:(?:at\s+)?12\s*)?(?:noon|midday)(?![a-z])", _FLAGS)
_MIDNIGHT = re.compile(r"(?:at\s+)?midnight(?![a-z])", _FLAGS)
_PERIOD = re.compile(
    rf"{_ZH_PERIOD}|(?:in\s+the\s+|this\s+|at\s+)?(?P<en>morning|afternoon|evening|night)(?![a-z])", _FLAGS
)


@dataclass(frozen=True)
class _Clock:
    hour: int
    minute: int
    period: str = ""  # a category of _PERIOD_WORDS
    ampm: str = ""  # "am" | "pm"


def _time_token(
    start: int, end: int, hour: int | None, minute: int | None, period: str = "", ampm: str | None = ""
) -> _Token:
    meridiem = ampm[:1].lower() + "m" if ampm else ""
    if hour is None or minute is None or hour > 23 or minute > 59 or (meridiem and not 1 <= hour <= 12):
        return _Token("time", start, end, error="timephrase.bad_time")
    return _Token("time", start, end, _Clock(hour, minute, _PERIOD_WORDS[period] if period else "", meridiem))


def _zh_minutes(match: re.Match[str]) -> int | None:
    if match["half"]:
        return 30
    if match["q1"]:
        return 15
    if match["q3"]:
        return 45
    if not match["m"]:
        return 0
    digits = match["m"]
    # 7点30 and 七点三十 / 七点零五 are clear without 分; 七点五 could be 7:05 or 7:50, so it needs 分.
    if not match["fen"] and not (len(digits) == 2 and digits.isdigit()) and not (set(digits) & set("十零〇")):
        return None
    return _number(digits)


def _time(text: str, pos: int) -> _Token | None:
    if match := _DIGITAL_CLOCK.match(text, pos):
        return _time_token(pos, match.end(), int(match["h"]), int(match["m"]), match["period"] or "", match["ampm"])
    if match := _ZH_CLOCK.match(text, pos):
        return _time_token(pos, match.end(), _number(match["h"]), _zh_minutes(match), match["period"] or "")
    if match := _EN_CLOCK.match(text, pos):
        return _time_token(pos, match.end(), int(match["h"]), 0, "", match["ampm"])
    if match := _EN_HOUR.match(text, pos):
        return _time_token(pos, match.end(), int(match["h"] or match["at"] or match["bare"]), 0)
    if match := _NOON.match(text, pos):
        return _time_token(pos, match.end(), 12, 0)
    if match := _MIDNIGHT.match(text, pos):
        return _Token("time", pos, match.end(), error="timephrase.ambiguous_midnight")
    return None


def _period(text: str, pos: int) -> _Token | None:
    if match := _PERIOD.match(text, pos):
        return _Token("period", pos, match.end(), _PERIOD_WORDS[(match["en"] or match[0]).lower()])
    return None


def _clock(clock: _Clock, period: str) -> tuple[int, int] | str:
    """The 24-hour time, or the error key when the hour does not fit what was said with it."""
    hour, minute = clock.hour, clock.minute
    if clock.ampm:
        return hour % 12 + (12 if clock.ampm == "pm" else 0), minute
    period = clock.period or period
    if period in ("evening", "late") and hour in (0, 12):
        return "timephrase.ambiguous_midnight"  # 晚上12点: the midnight before or after?
    if period == "small_hours" and hour == 12:
        hour = 0
    elif period == "morning" and hour > 12:
        return "timephrase.bad_time"
    elif period == "noon":
        if not (1 <= hour <= 5 or 10 <= hour <= 17):
            return "timephrase.bad_time"
        hour += 12 if hour <= 5 else 0
    elif period == "afternoon":
        if hour == 0:
            return "timephrase.bad_time"
        hour += 12 if hour < 12 else 0
    elif period == "evening" or (period == "late" and 7 <= hour <= 11):
        hour += 12 if hour < 12 else 0
    if not 0 <= hour <= 23:
        return "timephrase.bad_time"
    return hour, minute


# --- putting it together

_MATCHERS = (_cron, _zh_repeat, _en_repeat, _zh_date, _en_date, _time, _period)
_SKIP = re.compile(r"[\s,;:.!?、。]+|(?:at|on|the|in|@)(?![a-z])|[的在于]", _FLAGS)
_UNKNOWN = re.compile(r"[a-z0-9]+|.", _FLAGS | re.S)  # a whole word or number, else one character


def _scan(text: str) -> tuple[list[_Token], list[tuple[int, int]]]:
    tokens: list[_Token] = []
    unknown: list[tuple[int, int]] = []
    pos = 0
    while pos < len(text):
        token = next((found for matcher in _MATCHERS if (found := matcher(text, pos))), None)
        if token is not None and token.end > pos:
            tokens.append(token)
            pos = token.end
        elif skip := _SKIP.match(text, pos):
            pos = skip.end()
        else:
            piece = _UNKNOWN.match(text, pos)
            unknown.append((pos, piece.end()))
            pos = piece.end()
    return tokens, unknown


def _fragments(text: str, spans: list[tuple[int, int]]) -> str:
    """The text of these spans; touching spans join up, others are separated by a space."""
    parts: list[str] = []
    last_end = -1
    for start, end in sorted(spans):
        if parts and start == last_end:
            parts[-1] += text[start:end]
        else:
            parts.append(text[start:end])
        last_end = end
    return " ".join(parts)


def _understood(text: str, tokens: list[_Token]) -> tuple[tuple[str, str], ...]:
    """(role, fragment) for what was read, neighbours of one role merged: 每月 + 最后一个周五 is one repeat."""
    merged: list[tuple[str, int, int]] = []
    for token in sorted(tokens, key=lambda token: token.start):
        role = "time" if token.role == "period" else token.role
        if merged and merged[-1][0] == role:
            merged[-1] = (role, merged[-1][1], token.end)
        else:
            merged.append((role, token.start, token.end))
    return tuple((role, text[start:end].strip()) for role, start, end in merged)


def moment_of(text: str, *, now: datetime, zone: ZoneInfo, within: timedelta, errors: str) -> datetime:
    """A one-off phrase ("明天下午3点", "12月5日 19:30") as a moment after ``now`` and within ``within``.
    Refusals are ``DomainError``s keyed ``<errors>.recurring_time`` / ``.time_past`` / ``.time_too_far``,
    so that each feature says them in its own words."""
    rule = parse(text, now=now, zone=zone)
    if rule.recurring:
        raise DomainError(f"{errors}.recurring_time")
    moment = rule.next_after(now - within, zone)
    if moment is None or moment <= now:
        raise DomainError(f"{errors}.time_past", value=text.strip()[:40])
    if moment - now > within:
        raise DomainError(f"{errors}.time_too_far")
    return moment


def parse(text: str, *, now: datetime, zone: ZoneInfo) -> Rule:
    """The rule a time phrase means. One-offs are resolved against ``now`` in ``zone``; a one-off in the
    past is still returned (callers decide what is too early). Raises PhraseError."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    clean = " ".join(unicodedata.normalize("NFKC", text or "").split())
    if not clean:
        raise PhraseError("timephrase.empty")
    if len(clean) > _MAX_LENGTH:
        raise PhraseError("timephrase.not_understood", value=clean[:_VALUE_LENGTH], leftover=clean[:_VALUE_LENGTH])
    if _BARE_CRON.fullmatch(clean):
        tokens, unknown = [_cron_token(clean, 0, len(clean))], []
    else:
        tokens, unknown = _scan(clean)
    return _build(clean, tokens, unknown, now.astimezone(zone), zone)


def _build(text: str, tokens: list[_Token], unknown: list[tuple[int, int]], now: datetime, zone: ZoneInfo) -> Rule:
    slots: dict[str, _Token] = {}
    rejected = list(unknown)  # spans not used: unknown text, and a second date, time or repeat
    problems: list[_Token] = []  # recognised but impossible: 2月30日, 25点
    for token in tokens:
        exclusive = {"date": "repeat", "repeat": "date"}.get(token.role)  # a one-off date or a repeat, not both
        if token.error:
            problems.append(token)
        elif token.role in slots or exclusive in slots:
            rejected.append((token.start, token.end))
        else:
            slots[token.role] = token
    repeat = slots.get("repeat")
    if repeat is not None and repeat.value and repeat.value["kind"] == "cron":
        # A cron expression says everything itself.
        rejected += [(token.start, token.end) for role, token in slots.items() if role != "repeat"]
        slots = {"repeat": repeat}
    day, clock, period = slots.get("date"), slots.get("time"), slots.get("period")
    hour_minute: tuple[int, int] | str = ""
    if clock is not None:
        implied = (period.value if period else "") or (day.period if day else "") or (repeat.period if repeat else "")
        hour_minute = _clock(clock.value, implied)
        if isinstance(hour_minute, str):  # 上午15点, 晚上12点: read, but not usable
            clock.error = hour_minute
            problems.append(slots.pop("time"))

    understood = _understood(text, list(slots.values()))
    leftover = _fragments(text, rejected + [(token.start, token.end) for token in problems])
    incomplete = any(token.incomplete for token in slots.values())

    def fail(key: str, value: str = text) -> PhraseError:
        return PhraseError(key, value=value[:_VALUE_LENGTH], understood=understood, leftover=leftover)

    if problems and not rejected and not incomplete:  # the one trouble is a part we cannot use: say why
        raise fail(problems[0].error, text[problems[0].start : problems[0].end])
    if rejected or problems or incomplete or not slots:
        raise fail("timephrase.not_understood")
    if repeat is not None and repeat.value["kind"] == "cron":
        return Rule(kind="cron", cron=repeat.value["cron"])
    if not isinstance(hour_minute, tuple):
        raise fail("timephrase.no_time")
    hour, minute = hour_minute
    if repeat is not None:
        return Rule(**repeat.value, hour=hour, minute=minute)
    when = _resolve_date(day.value if day else ("next_time",), hour, minute, now, zone)
    return Rule(kind="once", date=when, hour=hour, minute=minute)


def _resolve_date(spec: tuple, hour: int, minute: int, now: datetime, zone: ZoneInfo) -> date:
    """The local date a one-off means, seen from ``now`` (local). "Ahead" is strictly after now."""
    today = now.date()

    def ahead(day: date) -> bool:
        return _at(day, hour, minute, zone) > now

    kind = spec[0]
    if kind == "absolute":
        return spec[1]
    if kind == "relative":
        return today + timedelta(days=spec[1])
    if kind == "next_time":  # a time alone: today if still to come, else tomorrow
        return today if ahead(today) else today + timedelta(days=1)
    if kind == "weekday":
        weekday, mode = spec[1], spec[2]
        monday = today - timedelta(days=today.weekday())
        if mode == "next_week":
            return monday + timedelta(days=7 + weekday)
        if mode == "this_week":
            return monday + timedelta(days=weekday)
        days = (weekday - today.weekday()) % 7
        candidate = today + timedelta(days=days)
        return candidate if ahead(candidate) else candidate + timedelta(days=7)
    if kind == "month_day":  # this year if still to come, else the next year that has the day (2月29日)
        month, day = spec[1], spec[2]
        for year in range(today.year, today.year + 9):
            try:
                candidate = date(year, month, day)
            except ValueError:
                continue
            if ahead(candidate):
                return candidate
    if kind == "day_of_month":  # this month if still to come, else the next month that has the day
        day = spec[1]
        year, month = today.year, today.month
        for _ in range(14):
            try:
                candidate = date(year, month, day)
            except ValueError:
                candidate = None
            if candidate is not None and ahead(candidate):
                return candidate
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise ValueError(f"cannot resolve {spec!r}")  # unreachable: the specs above always find a date
