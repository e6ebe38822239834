"""Time phrases as people read them: a rule described in the reader's language, and a refused phrase
explained — what was understood, what was not, and how one could be written."""

from __future__ import annotations

from datetime import datetime

from bot.i18n import Translator
from bot.services.chats import GroupSettings
from bot.services.timephrase import PhraseError, Rule
from handlers.common import quote, sentence_of

# Catalog keys chosen by value are listed literally, so the catalog check can see every one of them.
_WEEKDAY_KEYS = (
    "timephrase.weekday.mon",
    "timephrase.weekday.tue",
    "timephrase.weekday.wed",
    "timephrase.weekday.thu",
    "timephrase.weekday.fri",
    "timephrase.weekday.sat",
    "timephrase.weekday.sun",
)
_NTH_KEYS = {
    1: "timephrase.nth.first",
    2: "timephrase.nth.second",
    3: "timephrase.nth.third",
    4: "timephrase.nth.fourth",
    -1: "timephrase.nth.last",
}
_ROLE_KEYS = {"repeat": "timephrase.role.repeat", "date": "timephrase.role.date", "time": "timephrase.role.time"}
_MON_TO_FRI = (0, 1, 2, 3, 4)


def describe(rule: Rule, t: Translator, *, time: bool = True) -> str:
    """A short description: 每周三 19:30 / every Wednesday 19:30. ``time=False`` leaves out the time of day
    (for choosing a rhythm before its time). Plain text; it holds nothing the user typed."""
    rhythm = _rhythm(rule, t)
    if not time or rule.kind == "cron":
        return rhythm
    return t("timephrase.describe.with_time", rule=rhythm, time=f"{rule.hour:02d}:{rule.minute:02d}")


def _rhythm(rule: Rule, t: Translator) -> str:
    if rule.kind == "once":
        return rule.date.isoformat()
    if rule.kind == "daily":
        return t("timephrase.describe.daily")
    if rule.kind == "workdays":
        return t("timephrase.describe.workdays")
    if rule.kind == "weekly":
        if rule.weekdays == _MON_TO_FRI:
            return t("timephrase.describe.mon_to_fri")
        days = t("timephrase.separator").join(t(_WEEKDAY_KEYS[day]) for day in rule.weekdays)
        return t("timephrase.describe.weekly", days=days)
    if rule.kind == "monthly_day":
        if rule.day == -1:
            return t("timephrase.describe.monthly_last_day")
        return t("timephrase.describe.monthly_day", day=rule.day)
    if rule.kind == "monthly_nth":
        weekday = t(_WEEKDAY_KEYS[rule.weekdays[0]])
        return t("timephrase.describe.monthly_nth", nth=t(_NTH_KEYS[rule.nth]), weekday=weekday)
    return t("timephrase.describe.cron", expr=rule.cron)


def explain_failure(error: PhraseError, t: Translator) -> str:
    """Why a phrase was refused, what of it was understood and what was not, and a few examples.
    HTML: the user's text is escaped."""
    lines = [sentence_of(t, error)]
    if error.understood:
        parts = t("timephrase.separator").join(
            t("timephrase.fragment", role=t(_ROLE_KEYS.get(role, "timephrase.role.time")), text=quote(fragment))
            for role, fragment in error.understood
        )
        lines.append(t("timephrase.understood", parts=parts))
    if error.leftover:
        lines.append(t("timephrase.leftover", text=quote(error.leftover)))
    lines.append(t("timephrase.examples"))
    return "\n".join(lines)


def when_text(t: Translator, moment: datetime, settings: GroupSettings) -> str:
    """A moment as the group reads it: "2026-11-25 周三 19:30" in its time zone."""
    local = moment.astimezone(settings.zone)
    return f"{local:%Y-%m-%d} {t(f'timephrase.weekday_short_{local.weekday()}')} {local:%H:%M}"
